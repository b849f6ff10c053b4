//! `fengqiao-bench`: a load generator of real webrtc-rs (0.21 async) clients that
//! measures an SFU's forwarding cost, throughput, added latency and loss.
//!
//! - [`media`]: the synthetic streams (720p-VP8-shaped video, Opus-sized audio) and
//!   the bench header every payload carries (publisher, stream, sequence, send time).
//! - [`client`]: peer connections, publishing, and the receive-side measurement.
//! - [`adapter`]: how a client joins a room on a given server. [`adapter::Fengqiao`]
//!   speaks our WebSocket JSON signaling; [`janus::Janus`] the Janus videoroom API.
//! - [`janus`]: starts Janus 1.1.2 (Debian) with a temp config, and its adapter.
//! - [`netns`]: the private network namespace (veth `fqb0`, 10.99.0.1) Janus needs.
//! - [`target`]: the server under test (a spawned `fengqiao serve` process, or any
//!   address + invite key), its /proc CPU and its /metrics counters.
//! - [`scenario`]: R rooms × P participants (+ receive-only subscribers), the
//!   measurement window and the [`scenario::Report`].

pub mod adapter;
pub mod client;
pub mod janus;
pub mod media;
pub mod netns;
pub mod scenario;
pub mod target;
