//! `fengqiao-bench`: a load generator of real webrtc-rs (0.21 async) clients that
//! measures an SFU's forwarding cost, throughput, added latency and loss.
//!
//! - [`media`]: the synthetic streams (720p-VP8-shaped video, Opus-sized audio) and
//!   the bench header every payload carries (publisher, stream, sequence, send time).
//! - [`client`]: peer connections, publishing, and the receive-side measurement.
//! - [`adapter`]: how a client joins a room on a given server. [`adapter::Fengqiao`]
//!   speaks our WebSocket JSON signaling; a Janus videoroom adapter implements the
//!   same [`adapter::Adapter`] trait later.
//! - [`target`]: the server under test (a spawned `fengqiao serve` process, or any
//!   address + invite key), its /proc CPU and its /metrics counters.
//! - [`scenario`]: R rooms × P participants (+ receive-only subscribers), the
//!   measurement window and the [`scenario::Report`].

pub mod adapter;
pub mod client;
pub mod media;
pub mod scenario;
pub mod target;
