//! Identity checks and the sham-mediation (虚假调解) warning over signaling (issue 5,
//! "Identity check"): the mediator records a check (method, result) with an optional
//! still frame, which the server stores under `sessions/<id>/stills/` with its SHA-256
//! in the event log; the mediator gives the warning, each party acknowledges it, every
//! step is logged and the mediator sees who acknowledged. Non-mediators get
//! `forbidden`. Real server, real WebSockets; the still is a real JPEG from GStreamer.

mod common;

use base64::Engine as _;
use common::*;
use fengqiao::server::{self, Running};
use fengqiao_signaling::invite::Role;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const SESSION: &str = "sess-identity";

fn tok(s: &Running, pid: &str, role: Role, admitted: bool) -> String {
    let mut c = server::claims("id-room", pid, pid, role, 3600);
    c.admitted = admitted;
    c.session_id = Some(SESSION.into());
    s.key.mint(&c)
}

async fn join(s: &Running, pid: &str, role: Role, admitted: bool) -> Ws {
    let mut ws = ws_connect(s).await;
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": tok(s, pid, role, admitted)})).await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!(j["type"], "joined", "{j}");
    ws
}

/// The next message satisfying `pred` (others are skipped).
async fn expect(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let m = recv_json(ws, left).await;
        assert_ne!(m["type"], "__closed", "closed while waiting for {what}");
        if pred(&m) {
            return m;
        }
    }
}

async fn expect_error(ws: &mut Ws, code: &str, re: &str) {
    let e = expect(ws, &format!("error {code}"), |m| m["type"] == "error").await;
    assert_eq!((e["code"].as_str(), e["re"].as_str()), (Some(code), Some(re)), "{e}");
}

/// No message of type `ty` arrives within a short while (pings answered meanwhile).
async fn quiet(ws: &mut Ws, ty: &str) {
    send_json(ws, json!({"type": "ping"})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) =
        tokio::time::timeout_at(deadline, futures_util::StreamExt::next(ws)).await
    {
        let v: Value = serde_json::from_str(&t).unwrap();
        assert_ne!(v["type"], ty, "unexpected {v}");
    }
}

fn events(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("sessions").join(SESSION).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn of<'a>(ev: &'a [Value], action: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["action"] == action).collect()
}

fn sha256_hex(b: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, b).as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

/// One real JPEG frame (GStreamer test picture, 320×240), as a page's canvas makes.
fn jpeg_frame() -> Vec<u8> {
    gst::init().expect("gstreamer");
    let p = gst::parse::launch(
        "videotestsrc num-buffers=1 pattern=smpte ! video/x-raw,width=320,height=240 ! jpegenc quality=70 ! \
         appsink name=out sync=false",
    )
    .expect("jpeg pipeline")
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).expect("plays");
    let sample = sink.pull_sample().expect("a frame");
    let data = sample.buffer().unwrap().map_readable().unwrap().to_vec();
    p.set_state(gst::State::Null).unwrap();
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_checks_stills_and_sham_warning() {
    let (srv, dir) = start_server(16).await;
    let mut m = join(&srv, "m1", Role::Mediator, true).await;
    let mut a = join(&srv, "a1", Role::Applicant, false).await; // waits
    let mut r = join(&srv, "r1", Role::Respondent, true).await;
    expect(&mut m, "a1 waiting", |v| v["type"] == "participant_waiting" && v["participant"]["id"] == "a1").await;

    // Only the mediator records identity checks or gives the warning.
    send_json(&mut r, json!({"type": "identity", "id": "a1", "method": "known_person", "result": "verified"})).await;
    expect_error(&mut r, "forbidden", "identity").await;
    send_json(&mut a, json!({"type": "identity", "id": "r1", "method": "known_person", "result": "verified"})).await;
    expect_error(&mut a, "forbidden", "identity").await;
    send_json(&mut r, json!({"type": "warn_sham"})).await;
    expect_error(&mut r, "forbidden", "warn_sham").await;
    // Nothing to acknowledge yet.
    send_json(&mut r, json!({"type": "ack_warning"})).await;
    expect_error(&mut r, "wrong_state", "ack_warning").await;

    // The mediator checks the waiting applicant's ID document on camera, with a still.
    let jpeg = jpeg_frame();
    assert!(jpeg.starts_with(&[0xff, 0xd8, 0xff]) && jpeg.len() > 1000, "a JPEG of {} bytes", jpeg.len());
    let b64 = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    assert!(b64.len() < 60 * 1024, "fits one signaling message");
    send_json(
        &mut m,
        json!({"type": "identity", "id": "a1", "method": "id_document", "result": "verified",
               "still": format!("data:image/jpeg;base64,{b64}")}),
    )
    .await;
    let c = expect(&mut m, "identity_checked", |v| v["type"] == "identity_checked").await;
    assert_eq!(
        (c["id"].as_str(), c["method"].as_str(), c["result"].as_str(), c["by"].as_str()),
        (Some("a1"), Some("id_document"), Some("verified"), Some("m1")),
        "{c}"
    );
    assert_eq!(c["still_sha256"], sha256_hex(&jpeg));
    // A second check, without a still; bad ones change nothing.
    send_json(&mut m, json!({"type": "identity", "id": "a1", "method": "known_person", "result": "failed"})).await;
    let c2 = expect(&mut m, "second identity_checked", |v| v["type"] == "identity_checked").await;
    assert!(c2.get("still_sha256").is_none() && c2["result"] == "failed", "{c2}");
    send_json(&mut m, json!({"type": "identity", "id": "nobody", "method": "known_person", "result": "failed"})).await;
    expect_error(&mut m, "not_found", "identity").await;
    send_json(&mut m, json!({"type": "identity", "id": "a1", "method": "fingerprint", "result": "failed"})).await;
    expect_error(&mut m, "bad_field", "identity").await;
    send_json(&mut m, json!({"type": "identity", "id": "a1", "method": "id_document", "result": "verified", "still": "aGVsbG8="}))
        .await;
    expect_error(&mut m, "bad_field", "identity").await;
    quiet(&mut r, "identity_checked").await; // parties are not told

    // The still is on disk, byte for byte, and the log names it with its hash.
    wait_for("the identity lines in the event log", T, || of(&events(dir.path()), "identity").len() == 2).await;
    let ev = events(dir.path());
    let ids = of(&ev, "identity");
    assert_eq!(
        (ids[0]["actor"].as_str(), ids[0]["target"].as_str(), ids[0]["method"].as_str(), ids[0]["result"].as_str()),
        (Some("m1"), Some("a1"), Some("id_document"), Some("verified")),
        "{}",
        ids[0]
    );
    assert_eq!(ids[0]["still"], "stills/a1-1.jpg");
    assert_eq!(ids[0]["still_sha256"], sha256_hex(&jpeg));
    assert!(ids[0]["t"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(ids[1].get("still").is_none() && ids[1]["method"] == "known_person" && ids[1]["result"] == "failed");
    let stored = std::fs::read(dir.path().join("sessions").join(SESSION).join("stills/a1-1.jpg")).expect("still stored");
    assert_eq!(stored, jpeg);

    // The sham-mediation warning: every admitted party gets it, the mediator does not.
    send_json(&mut m, json!({"type": "admit", "id": "a1"})).await;
    expect(&mut a, "admitted", |v| v["type"] == "admitted").await;
    send_json(&mut m, json!({"type": "warn_sham"})).await;
    for ws in [&mut a, &mut r] {
        let w = expect(ws, "sham_warning", |v| v["type"] == "sham_warning").await;
        assert_eq!(w["by"], "m1");
    }
    send_json(&mut r, json!({"type": "ack_warning"})).await;
    let k = expect(&mut m, "r1's acknowledgement", |v| v["type"] == "warning_acknowledged").await;
    assert_eq!(k["id"], "r1");
    send_json(&mut r, json!({"type": "ack_warning"})).await; // a repeat changes nothing
    send_json(&mut a, json!({"type": "ack_warning"})).await;
    let k = expect(&mut m, "a1's acknowledgement", |v| v["type"] == "warning_acknowledged").await;
    assert_eq!(k["id"], "a1", "r1's repeat is not announced again");
    // A party admitted later gets the warning too.
    let mut g = join(&srv, "g1", Role::Agent, true).await;
    expect(&mut g, "the late party's sham_warning", |v| v["type"] == "sham_warning").await;
    quiet(&mut m, "sham_warning").await;

    wait_for("the warning lines in the event log", T, || of(&events(dir.path()), "ack_warning").len() == 2).await;
    let ev = events(dir.path());
    let w = of(&ev, "warn_sham");
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["actor"], "m1");
    let acks: Vec<&str> = of(&ev, "ack_warning").iter().filter_map(|e| e["actor"].as_str()).collect();
    assert_eq!(acks, ["r1", "a1"], "each acknowledgement once, in order");
    for ws in [&mut g, &mut a, &mut r, &mut m] {
        send_json(ws, json!({"type": "leave"})).await;
    }
    srv.shutdown().await;
}
