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
    assert_eq!(sample(&m0, "fengqiao_deadlines_overdue"), Some(0.0), "an empty case store");
    // The demo district: the gauge follows the case store's own count.
    fengqiao_cases::load_demo_data(&srv.cases).await.unwrap();
    let overdue = srv.cases.pending_deadlines(fengqiao_cases::Scope::All, true).await.unwrap().len();
    assert_eq!(sample(&scrape().await, "fengqiao_deadlines_overdue"), Some(overdue as f64));

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
/// dropped on an idle machine; stopping brings `recordings_active` back to 0, and
/// the review render that follows is counted as a `render` job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_recording() {
    use common::media::RealMedia;
    let (srv, _dir) = start_server_with(|c| {
        c.recorder.segment_secs = 10;
        c.recorder.render_after_stop = true;
    })
    .await;
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
    wait_until("the recorder's packet count to grow", Duration::from_secs(15), || async {
        sample(&scrape().await, "fengqiao_recorder_packets_total").unwrap() > p1
    })
    .await;

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
    // The review video is rendered in the background and counted as a job.
    let rendered = r#"fengqiao_jobs_total{kind="render",outcome="done"}"#;
    let t = std::time::Instant::now();
    let m4 = loop {
        let m = scrape().await;
        if sample(&m, rendered).is_some() || t.elapsed() > Duration::from_secs(120) {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(sample(&m4, rendered), Some(1.0), "{m4}");
    assert_eq!(sample(&m4, r#"fengqiao_job_duration_seconds_count{kind="render",outcome="done"}"#), Some(1.0));
    assert!(sample(&m4, r#"fengqiao_job_duration_seconds_sum{kind="render",outcome="done"}"#).unwrap() > 0.0);
    m.leave().await;
    a.leave().await;
    srv.shutdown().await;
}

/// A server disc-export job (`POST /api/disputes/{id}/disc-exports`) is counted
/// by outcome with its duration. The case's recording is registered but its
/// session folder has no signed manifest, so the job runs and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_export_jobs() {
    use serde_json::Value;
    use std::collections::HashMap;
    let (srv, _dir) = start_server(16).await;
    let base = format!("http://{}", srv.http_addr);
    let http = reqwest::Client::new();
    let logins = fengqiao_cases::load_demo_data(&srv.cases).await.unwrap();
    let mut cookie = HashMap::new();
    for l in &logins {
        let r = http.post(format!("{base}/api/auth/login")).json(&json!({"username": l.username, "password": l.password})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let c = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        cookie.insert(l.role.as_str().to_owned(), c);
    }
    let call = |role: &str, post: bool, path: String, body: Option<Value>| {
        let mut rq = if post { http.post(format!("{base}{path}")) } else { http.get(format!("{base}{path}")) };
        rq = rq.header("cookie", cookie[role].clone());
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        async move {
            let r = rq.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (st, d) = call("triage", true, "/api/disputes".into(), Some(json!({"category": "neighbour", "description": "漏水",
        "parties": [{"kind": "applicant", "name": "张三"}, {"kind": "respondent", "name": "李四"}]}))).await;
    assert_eq!(st, 201, "{d}");
    let id = d["dispute"]["id"].as_i64().unwrap();
    let (_, orgs) = call("admin", false, "/api/orgs".into(), None).await;
    let org = orgs[0]["id"].as_i64().unwrap();
    assert_eq!(call("triage", true, format!("/api/disputes/{id}/triage"), Some(json!({"org_id": org}))).await.0, 200);
    let (_, meds) = call("org_admin", false, format!("/api/mediators?org_id={org}"), None).await;
    let med = meds.as_array().unwrap().iter().find(|m| m["user_id"].is_i64()).unwrap()["id"].as_i64().unwrap();
    assert_eq!(call("org_admin", true, format!("/api/disputes/{id}/accept"), Some(json!({"mediator_id": med}))).await.0, 200);
    let (st, s) = call("mediator", true, format!("/api/disputes/{id}/sessions"),
        Some(json!({"scheduled_at": "2026-12-01T09:00:00+08:00", "duration_minutes": 60}))).await;
    assert!(st == 200 || st == 201, "{st} {s}");
    let sid = s["session"]["id"].as_i64().unwrap();
    let row = srv.cases.get_dispute(id).await.unwrap().unwrap();
    let rec = fengqiao_cases::service::NewRecording {
        file_path: format!("{sid}/audio/p1.wav"),
        manifest_path: format!("{sid}/manifest.jsonl"),
        integrity_sha256: "0".repeat(64),
        media_type: "audio/wav".into(),
        started_at: "2026-12-01T01:00:00Z".into(),
        ended_at: "2026-12-01T01:30:00Z".into(),
    };
    // The file exists (the store checks) but the session has no signed manifest.
    let wav = srv.cases.recordings_dir().join(&rec.file_path);
    std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
    std::fs::write(&wav, vec![0u8; 4096]).unwrap();
    srv.cases.add_recording(&fengqiao_cases::Actor::system(), &row, sid, &rec).await.unwrap();

    let scrape = || async { reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap() };
    let failed = r#"fengqiao_jobs_total{kind="export",outcome="failed"}"#;
    assert_eq!(sample(&scrape().await, failed), None, "no job yet");
    let (st, job) = call("clerk", true, format!("/api/disputes/{id}/disc-exports"), Some(json!({"media": "cd"}))).await;
    assert_eq!(st, 202, "{job}");
    let eid = job["export_id"].as_str().unwrap().to_owned();
    let t = std::time::Instant::now();
    loop {
        let (_, j) = call("clerk", false, format!("/api/disc-exports/{eid}"), None).await;
        if j["state"] != "running" {
            assert_eq!(j["state"], "failed", "{j}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "the export never finished: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The job's state is set after it is counted.
    let m = scrape().await;
    assert_eq!(sample(&m, failed), Some(1.0), "{m}");
    assert_eq!(sample(&m, r#"fengqiao_job_duration_seconds_count{kind="export",outcome="failed"}"#), Some(1.0));
    assert_eq!(sample(&m, r#"fengqiao_jobs_total{kind="export",outcome="done"}"#), None);
    srv.shutdown().await;
}
