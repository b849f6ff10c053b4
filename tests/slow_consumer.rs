//! The slow-consumer policy (issue 2): when the socket refuses a send to one
//! subscriber, that subscriber's video Consumers drop everything up to the next
//! keyframe and a keyframe request goes upstream; nobody else notices.
//!
//! Loopback never refuses a UDP send, so the server is started with the test hook
//! `MediaConfig::test_refuse_sends` (docs/interfaces.md, "Test hooks"): every
//! datagram to bob is treated as refused for `WINDOW`, starting `AFTER` his
//! Transport connected. Three real webrtc-rs clients, real signaling, real UDP.

mod common;

use common::*;
use fengqiao_sfu::keyframe::{is_keyframe_start, VideoCodec};
use fengqiao_sfu::{RefuseSends, SfuStats};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const VIDEO: RtpCodecKind = RtpCodecKind::Video;
const AFTER: Duration = Duration::from_secs(4);
const WINDOW: Duration = Duration::from_millis(1500);

/// Index of the first packet (arrival order) whose sequence number jumps forward
/// past a gap, i.e. the first packet after the refused window.
fn first_after_gap(seqs: &[u16]) -> Option<usize> {
    (1..seqs.len()).find(|&i| {
        let d = seqs[i].wrapping_sub(seqs[i - 1]) as i16;
        d > 1
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_sends_make_only_that_subscriber_skip_to_a_keyframe() {
    let (srv, _dir) = start_server_with(|c| {
        c.media.test_refuse_sends = Some(RefuseSends { participant: "bob".into(), after: AFTER, duration: WINDOW })
    })
    .await;
    let stats = srv.sfu.stats().clone();
    let room = "slow-room";
    // Bob joins last: his window is timed from his own connection, so everyone else
    // is already receiving when it opens.
    let alice = Client::join(&srv, "alice", token(&srv, room, "alice", "甲")).await;
    let carol = Client::join(&srv, "carol", token(&srv, room, "carol", "丙")).await;
    let bob = Client::join(&srv, "bob", token(&srv, room, "bob", "乙")).await;

    wait_for("bob and carol to receive alice's video", Duration::from_secs(10), || {
        bob.count("alice", VIDEO) > 10 && carol.count("alice", VIDEO) > 10
    })
    .await;
    assert_eq!(SfuStats::get(&stats.dropped_send), 0, "the window opened before everyone received video");

    // The window opens: the socket "refuses" bob's datagrams.
    wait_for("the refusal window to open", AFTER + Duration::from_secs(5), || {
        SfuStats::get(&stats.dropped_send) > 0
    })
    .await;
    let opened = Instant::now();
    let pli_before = alice.keyframe_requests.load(Ordering::SeqCst);
    let held_before = SfuStats::get(&stats.dropped_waiting_keyframe);
    let carol_before = carol.count("alice", VIDEO);
    let bob_at_open = bob.count("alice", VIDEO);

    // Carol keeps receiving throughout the window.
    let mut carol_samples = Vec::new();
    while opened.elapsed() < WINDOW - Duration::from_millis(250) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        carol_samples.push(carol.count("alice", VIDEO));
    }
    // During the window nothing reaches bob (allow what was already in flight).
    let bob_late_in_window = bob.count("alice", VIDEO);
    assert!(
        bob_late_in_window <= bob_at_open + 2,
        "bob received {} video packets inside the refused window",
        bob_late_in_window - bob_at_open
    );

    wait_for("bob's video to resume after the window", Duration::from_secs(10), || {
        bob.count("alice", VIDEO) > bob_late_in_window + 10
    })
    .await;
    let resumed_after = opened.elapsed();

    // Bob: the first video packet after the gap starts a keyframe.
    {
        let r = bob.received.lock().unwrap();
        let key = ("alice".to_owned(), VIDEO);
        let seqs = &r.seqs[&key];
        let i = first_after_gap(seqs).expect("bob's sequence numbers show the refused packets missing");
        assert!(i >= bob_at_open.saturating_sub(2), "the gap is where the window was (index {i}, {bob_at_open} at open)");
        let p = &r.payloads[&key][i];
        assert!(
            is_keyframe_start(VideoCodec::Vp8, p),
            "bob's first video packet after the window is a delta (VP8 header {:02x?}); the Consumer should have waited for a keyframe",
            &p[..p.len().min(2)]
        );
        eprintln!(
            "bob: {} packets missing across the window, first packet after it (#{i}) is a keyframe; resumed {resumed_after:?} after the window opened",
            seqs[i].wrapping_sub(seqs[i - 1]) - 1
        );
    }
    // The SFU held deltas back and asked alice for a keyframe.
    let held = SfuStats::get(&stats.dropped_waiting_keyframe) - held_before;
    assert!(held > 0, "no video was held back waiting for a keyframe");
    let plis = alice.keyframe_requests.load(Ordering::SeqCst) - pli_before;
    assert!(plis >= 1, "alice saw no keyframe request after bob's sends were refused");

    // Carol was never interrupted: her count grew at every sample and her sequence
    // numbers from alice are continuous from first to last.
    let mut prev = carol_before;
    for (k, n) in carol_samples.iter().enumerate() {
        assert!(*n > prev, "carol's video from alice stalled during bob's window (sample {k}: {n})");
        prev = *n;
    }
    {
        let r = carol.received.lock().unwrap();
        let seqs = &r.seqs[&("alice".to_owned(), VIDEO)];
        for w in seqs.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1), "carol's video sequence numbers jump: {} → {}", w[0], w[1]);
        }
        eprintln!("carol: {} video packets from alice, continuous", seqs.len());
    }
    eprintln!(
        "dropped_send {}, held back waiting for a keyframe {held}, keyframe requests at alice during/after the window {plis}",
        SfuStats::get(&stats.dropped_send)
    );
    alice.leave().await;
    bob.leave().await;
    carol.leave().await;
    srv.shutdown().await;
}
