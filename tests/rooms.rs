//! Rooms end to end: three real WebRTC clients (webrtc-rs async API) and the real
//! server, over real WebSocket signaling and loopback UDP on one media port.

mod common;

use common::*;
use fengqiao_sfu::SfuStats;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::{Duration, Instant};

const AUDIO: RtpCodecKind = RtpCodecKind::Audio;
const VIDEO: RtpCodecKind = RtpCodecKind::Video;

/// Every payload `rx` got from `tx` is byte-identical to one `tx` sent.
fn assert_identical(rx: &Client, tx: &Client, kind: RtpCodecKind) {
    let r = rx.received.lock().unwrap();
    let got = r.payloads.get(&(tx.pid.clone(), kind)).expect("received something");
    let sent = tx.sent.lock().unwrap();
    let sent = sent.get(&kind).expect("sent something");
    for p in got {
        assert!(sent.contains(p), "{} got a {kind} payload from {} that was never sent", rx.pid, tx.pid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_participants_forward_leave_and_late_join() {
    let (server, _dir) = start_server(16).await;
    let room = "room-e2e";
    let a = Client::join(&server, "alice", token(&server, room, "alice", "甲")).await;
    let b = Client::join(&server, "bob", token(&server, room, "bob", "乙")).await;
    let c = Client::join(&server, "carol", token(&server, room, "carol", "丙")).await;
    let all = [&a, &b, &c];

    // Each receives the other two's audio and video.
    wait_for("every client to receive both others' audio and video", Duration::from_secs(15), || {
        all.iter().all(|rx| {
            all.iter()
                .filter(|tx| tx.pid != rx.pid)
                .all(|tx| rx.count(&tx.pid, AUDIO) > 20 && rx.count(&tx.pid, VIDEO) > 10)
        })
    })
    .await;
    for rx in all {
        for tx in all {
            if tx.pid != rx.pid {
                assert_identical(rx, tx, AUDIO);
                assert_identical(rx, tx, VIDEO);
            }
        }
    }
    // Keyframe requests really reached the SFU logic and the publishers.
    let stats = server.sfu.stats().clone();
    assert!(SfuStats::get(&stats.keyframe_requests_out) >= 1);
    assert!(all.iter().all(|c| c.keyframe_requests.load(std::sync::atomic::Ordering::SeqCst) >= 1));
    assert_eq!(SfuStats::get(&stats.rooms), 1);
    assert_eq!(SfuStats::get(&stats.participants), 3);
    assert_eq!(SfuStats::get(&stats.producers), 6);
    assert_eq!(SfuStats::get(&stats.consumers), 12);

    // Carol leaves: her tracks end for Alice and Bob.
    c.leave().await;
    wait_for("alice and bob to see carol leave", Duration::from_secs(5), || {
        [&a, &b].iter().all(|x| {
            x.received.lock().unwrap().events.iter().any(|(t, id)| t == "participant_left" && id == "carol")
        })
    })
    .await;
    wait_for("carol's producers and consumers to be gone", Duration::from_secs(5), || {
        SfuStats::get(&stats.producers) == 4 && SfuStats::get(&stats.consumers) == 4
    })
    .await;
    let before = (a.count("carol", VIDEO), a.count("carol", AUDIO));
    // Media from Alice ↔ Bob continues.
    let ab = b.count("alice", VIDEO);
    wait_for("bob to keep receiving alice", Duration::from_secs(5), || b.count("alice", VIDEO) > ab + 10).await;
    assert_eq!((a.count("carol", VIDEO), a.count("carol", AUDIO)), before, "no media from carol after she left");

    // A late joiner gets a keyframe within 1 s of its subscription, although the
    // publishers send keyframes only when asked.
    let d = Client::join(&server, "dave", token(&server, room, "dave", "丁")).await;
    wait_for("dave to receive video from alice and bob", Duration::from_secs(15), || {
        d.count("alice", VIDEO) > 0 && d.count("bob", VIDEO) > 0
    })
    .await;
    let subscribed = d.last_renegotiation.lock().unwrap().expect("dave answered a server offer");
    let r = d.received.lock().unwrap();
    for from in ["alice", "bob"] {
        let first = r.first_keyframe.get(from).expect("a keyframe arrived");
        let lag = first.saturating_duration_since(subscribed);
        eprintln!("late joiner: first keyframe from {from} {lag:?} after subscribing");
        assert!(lag < Duration::from_secs(1), "keyframe from {from} took {lag:?}");
        // The first video packet a late joiner gets is a keyframe.
        let first_payload = &r.payloads[&(from.to_owned(), VIDEO)][0];
        assert!(fengqiao_sfu::keyframe::is_keyframe_start(fengqiao_sfu::keyframe::VideoCodec::Vp8, first_payload));
    }
    drop(r);
    let t0 = Instant::now();
    d.leave().await;
    a.leave().await;
    b.leave().await;
    wait_for("the empty room to close", Duration::from_secs(5), || SfuStats::get(&stats.rooms) == 0).await;
    eprintln!("teardown took {:?}", t0.elapsed());
    server.shutdown().await;
}
