//! `/metrics` during a synthetic session: gauges and packet counters move as
//! the session does (two webrtc-rs clients through the real server).

mod common;

use common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Duration;

/// The value of the sample line that starts with `name` (exact metric + labels).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_session() {
    let (srv, _dir) = start_server(16).await;
    let url = format!("http://{}/metrics", srv.http_addr);
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    let m0 = scrape().await;
    assert_eq!(sample(&m0, "fengqiao_participants"), Some(0.0));
    assert_eq!(sample(&m0, "fengqiao_rtp_packets_out_total"), Some(0.0));

    let a = Client::join(&srv, "alice", token(&srv, "m-room", "alice", "甲")).await;
    let b = Client::join(&srv, "bob", token(&srv, "m-room", "bob", "乙")).await;
    wait_for("media both ways", Duration::from_secs(15), || {
        a.count("bob", RtpCodecKind::Video) > 10 && b.count("alice", RtpCodecKind::Audio) > 20
    })
    .await;
    let m1 = scrape().await;
    assert_eq!(sample(&m1, "fengqiao_rooms"), Some(1.0), "{m1}");
    assert_eq!(sample(&m1, "fengqiao_participants"), Some(2.0));
    assert_eq!(sample(&m1, "fengqiao_producers"), Some(4.0));
    assert_eq!(sample(&m1, "fengqiao_consumers"), Some(4.0));
    let in1 = sample(&m1, "fengqiao_rtp_packets_in_total").unwrap();
    let out1 = sample(&m1, "fengqiao_rtp_packets_out_total").unwrap();
    assert!(in1 > 30.0 && out1 > 30.0, "in {in1} out {out1}");
    assert!(sample(&m1, "fengqiao_keyframe_requests_out_total").unwrap() >= 1.0);
    assert!(sample(&m1, "fengqiao_media_bytes_in_total").unwrap() > 10_000.0);
    // The signaling upgrade is counted by route template, never by a concrete path.
    assert!(m1.contains(r#"fengqiao_http_requests_total{route="/ws",method="GET",status="101"} 2"#), "{m1}");
    assert!(!m1.contains("alice") && !m1.contains("m-room"), "labels never carry names or room ids");

    // Counters keep growing while the session runs.
    let before = b.count("alice", RtpCodecKind::Audio);
    wait_for("more audio", Duration::from_secs(5), || b.count("alice", RtpCodecKind::Audio) > before + 25).await;
    let m2 = scrape().await;
    assert!(sample(&m2, "fengqiao_rtp_packets_out_total").unwrap() > out1);

    a.leave().await;
    b.leave().await;
    wait_for("the room to close", Duration::from_secs(5), || {
        fengqiao_sfu::SfuStats::get(&srv.sfu.stats().rooms) == 0
    })
    .await;
    let m3 = scrape().await;
    assert_eq!(sample(&m3, "fengqiao_participants"), Some(0.0));
    assert_eq!(sample(&m3, "fengqiao_consumers"), Some(0.0));
    srv.shutdown().await;
}
