//! A tiny scenario against each server: 1 room × 2 participants, a 3 s window.
//! Ours runs in this process on 127.0.0.1; Janus 1.1.2 (Debian package `janus`)
//! is started by the `loadgen` binary inside its own private network namespace
//! (`--netns`, root). Fails when no packet is forwarded, when the receivers
//! measured no latency, or when loss is gross.

use fengqiao_bench::adapter::Fengqiao;
use fengqiao_bench::scenario::{self, Scenario};
use fengqiao_bench::target::Target;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_room_of_two_forwards_and_measures() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fengqiao::config::Config::default();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse().unwrap();
    cfg.media.udp_port = 0;
    let running = fengqiao::server::start(cfg).await.expect("server starts");
    let target = Target::existing(running.http_addr, running.key.clone(), None);
    let adapter = Fengqiao { ws_url: target.ws_url(), key: target.key.clone(), label: fengqiao_bench::adapter::OURS };
    let mut sc = Scenario::grid(1, 2, 3);
    sc.settle_max = Duration::from_secs(15);
    let r = scenario::run(&sc, &adapter, &target, "127.0.0.1").await.expect("scenario runs");
    eprintln!("{}", scenario::table(std::slice::from_ref(&r)));
    assert_eq!(r.streams_flowing, r.streams_expected, "every stream flows: {r:?}");
    // Two publishers at ~185 packets/s each, forwarded to one subscriber each.
    assert!(r.pkts_out_per_s > 200.0, "forwarded packets/s: {r:?}");
    assert!(r.bits_out_per_s > 1.5e6, "forwarded bits/s: {r:?}");
    assert!(r.pkts_received > 600, "received: {r:?}");
    let p50 = r.latency_p50_ms.expect("latency measured");
    assert!(p50 > 0.0 && p50 < 1000.0, "p50 {p50} ms");
    assert!(r.loss_pct.expect("loss measured") < 5.0, "loss: {r:?}");
    running.shutdown().await;
}

#[test]
fn loadgen_measures_janus_in_a_namespace() {
    let out = tempfile::tempdir().unwrap();
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--netns", "--server", "janus", "--scenario", "1x2", "--seconds", "3", "--out"])
        .arg(out.path())
        .status()
        .expect("loadgen runs");
    assert!(st.success(), "loadgen against janus: {st}");
    let text = std::fs::read_to_string(out.path().join("1x2-janus-run1.json")).expect("result written");
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(r["streams_flowing"], r["streams_expected"], "every stream flows: {r}");
    assert!(r["pkts_out_per_s"].as_f64().unwrap() > 200.0, "forwarded packets/s: {r}");
    assert!(r["server_cpu_us_per_pkt"].as_f64().unwrap() > 0.0, "server CPU measured: {r}");
    assert!(r["latency_p50_ms"].as_f64().is_some_and(|p| p > 0.0 && p < 1000.0), "latency: {r}");
    assert!(r["loss_pct"].as_f64().unwrap() < 5.0, "loss: {r}");
    assert!(r["server_udp_sockets"].as_u64().unwrap() > 0, "janus media sockets seen: {r}");
    assert_eq!(r["server_udp_sockets_elsewhere"], 0, "no janus socket outside 10.99.0.1: {r}");
    assert!(r["join_p50_ms"].as_f64().is_some(), "join time measured: {r}");
}
