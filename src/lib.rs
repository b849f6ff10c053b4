//! The `fengqiao` server: wires config, the SFU, signaling and the web pages
//! together. `main.rs` is the command line on top of [`server::start`].

pub mod config;
pub mod evidence_api;
pub mod export_api;
pub mod ops;
pub mod recording;
pub mod server;
pub mod tls;
