//! `fengqiao-floor`: criterion micro-benchmarks of the work no SFU can skip per
//! forwarded packet (SRTP protect of a 1,100-byte packet, a batched `sendmmsg` on
//! loopback). It has no code of its own: see `benches/floor.rs` and
//! `bench/README.md`. A crate apart from `fengqiao-bench` so that `cargo bench`
//! builds only `rtc` and criterion, not the whole server.
