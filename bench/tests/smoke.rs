//! A tiny scenario through the real server (in this process): 1 room × 2
//! participants, a 3 s window. Fails when no packet is forwarded, when the
//! receivers measured no latency, or when loss is gross.

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
    let adapter = Fengqiao { ws_url: target.ws_url(), key: target.key.clone() };
    let mut sc = Scenario::grid(1, 2, 3);
    sc.settle_max = Duration::from_secs(15);
    let r = scenario::run(&sc, &adapter, &target).await.expect("scenario runs");
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
