//! `/metrics` during a synthetic session: gauges, packet counters and the
//! join-time histogram move as the session does (two webrtc-rs clients through
//! the real server), and a recorded session moves the recorder metrics.

mod common;

use common::*;
use fengqiao_signaling::invite::Role;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
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
    assert_eq!(sample(&m0, "fengqiao_join_seconds_count"), Some(0.0), "{m0}");
    assert_eq!(sample(&m0, r#"fengqiao_join_seconds_bucket{le="+Inf"}"#), Some(0.0));
    // The case store's pool: migrations ran, so at least one connection is open.
    let pool = sample(&m0, "fengqiao_db_pool_connections").unwrap();
    let idle = sample(&m0, "fengqiao_db_pool_idle_connections").unwrap();
    let busy = sample(&m0, "fengqiao_db_pool_in_use_connections").unwrap();
    assert!(pool >= 1.0 && idle + busy == pool, "pool {pool} idle {idle} in use {busy}");
    assert_eq!(sample(&m0, "fengqiao_recordings_active"), Some(0.0));
    assert_eq!(sample(&m0, "fengqiao_recorder_packets_total"), Some(0.0));
    assert_eq!(sample(&m0, "fengqiao_recorder_queue_depth"), Some(0.0));
    assert_eq!(sample(&m0, "fengqiao_nacks_in_total"), Some(0.0));

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
    // Both joins reached ICE + DTLS connected: two observations, every one in a
    // finite bucket (loopback joins take well under 30 s), a positive sum.
    assert_eq!(sample(&m1, "fengqiao_join_seconds_count"), Some(2.0), "{m1}");
    assert_eq!(sample(&m1, r#"fengqiao_join_seconds_bucket{le="+Inf"}"#), Some(2.0));
    assert_eq!(sample(&m1, r#"fengqiao_join_seconds_bucket{le="30.0"}"#), Some(2.0));
    let sum = sample(&m1, "fengqiao_join_seconds_sum").unwrap();
    assert!(sum > 0.0 && sum < 60.0, "join seconds sum {sum}");
    // Nothing recorded in this session.
    assert_eq!(sample(&m1, "fengqiao_recorder_packets_total"), Some(0.0));
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

/// A recorded session moves `recordings_active` and `recorder_packets`; nothing is
/// dropped on an idle machine; stopping brings `recordings_active` back to 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_recording() {
    use common::media::RealMedia;
    let (srv, _dir) = start_server_with(|c| c.recorder.segment_secs = 10).await;
    let url = format!("http://{}/metrics", srv.http_addr);
    let scrape = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    let room = "m-rec";
    let m = Client::join_real(&srv, "m1", token_as(&srv, room, "m1", Role::Mediator), RealMedia::tone(700.0)).await;
    let a = Client::join_real(&srv, "a1", token(&srv, room, "a1", "张三"), RealMedia::tone(440.0)).await;
    wait_for("media both ways", Duration::from_secs(15), || {
        m.count("a1", RtpCodecKind::Audio) > 20 && a.count("m1", RtpCodecKind::Audio) > 20
    })
    .await;
    let m0 = scrape().await;
    assert_eq!(sample(&m0, "fengqiao_recordings_active"), Some(0.0), "{m0}");
    assert_eq!(sample(&m0, "fengqiao_recorder_packets_total"), Some(0.0));

    m.send(json!({"type": "record", "action": "start"})).await;
    wait_for("the consent question", Duration::from_secs(10), || a.saw(|v| v["type"] == "recording")).await;
    a.send(json!({"type": "consent", "answer": "accept"})).await;
    wait_for("recording", Duration::from_secs(15), || {
        m.saw(|v| v["type"] == "recording" && v["state"] == "recording")
    })
    .await;
    let stats = srv.sfu.stats().clone();
    wait_for("packets to the recorder", Duration::from_secs(10), || {
        fengqiao_sfu::SfuStats::get(&stats.recorder_packets) > 100
    })
    .await;
    let m1 = scrape().await;
    assert_eq!(sample(&m1, "fengqiao_recordings_active"), Some(1.0), "{m1}");
    let p1 = sample(&m1, "fengqiao_recorder_packets_total").unwrap();
    assert!(p1 > 100.0, "recorder packets {p1}");
    assert_eq!(sample(&m1, "fengqiao_recorder_dropped_total"), Some(0.0), "an idle recorder keeps up");
    let depth = sample(&m1, "fengqiao_recorder_queue_depth").unwrap();
    assert!((0.0..=fengqiao_sfu::record::RECORD_QUEUE as f64).contains(&depth), "queue depth {depth}");
    assert!(!m1.contains("m-rec") && !m1.contains("张三"), "labels never carry rooms or names");

    // Still counting while it records.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let m2 = scrape().await;
    assert!(sample(&m2, "fengqiao_recorder_packets_total").unwrap() > p1);

    m.send(json!({"type": "record", "action": "stop"})).await;
    wait_for("stopped", Duration::from_secs(30), || {
        m.saw(|v| v["type"] == "recording" && v["state"] == "stopped")
    })
    .await;
    let m3 = scrape().await;
    assert_eq!(sample(&m3, "fengqiao_recordings_active"), Some(0.0), "{m3}");
    let p3 = sample(&m3, "fengqiao_recorder_packets_total").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sample(&scrape().await, "fengqiao_recorder_packets_total"), Some(p3), "nothing taps a stopped recording");
    m.leave().await;
    a.leave().await;
    srv.shutdown().await;
}
