//! Join negotiation (issue 6, join time): a late joiner is subscribed to everyone
//! already in the room with **one** server offer carrying every track. One offer per
//! track made a browser renegotiate once per track, and its video Consumer's first
//! keyframe was sent before the browser knew that track (and dropped there), so the
//! first picture waited for a second keyframe. Real webrtc-rs clients, the real
//! server, loopback UDP.

mod common;

use common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::HashSet;
use std::time::Duration;

const AUDIO: RtpCodecKind = RtpCodecKind::Audio;
const VIDEO: RtpCodecKind = RtpCodecKind::Video;

/// (stream id, kind) of every `m=` section of `sdp` with an `a=msid:` line.
fn offered_tracks(sdp: &str) -> HashSet<(String, String)> {
    let mut out = HashSet::new();
    for section in sdp.split("\nm=").skip(1) {
        let kind = section.split_whitespace().next().unwrap_or("").to_owned();
        for line in section.lines() {
            if let Some(rest) = line.trim().strip_prefix("a=msid:") {
                let stream = rest.split_whitespace().next().unwrap_or("").to_owned();
                out.insert((stream, kind.clone()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_every_track_in_one_offer() {
    let (server, _dir) = start_server(8).await;
    let room = "room-join-offer";
    let a = Client::join(&server, "alice", token(&server, room, "alice", "甲")).await;
    let b = Client::join(&server, "bob", token(&server, room, "bob", "乙")).await;
    wait_for("alice and bob to receive each other's audio and video", Duration::from_secs(15), || {
        a.count("bob", VIDEO) > 0 && a.count("bob", AUDIO) > 0 && b.count("alice", VIDEO) > 0 && b.count("alice", AUDIO) > 0
    })
    .await;

    let c = Client::join(&server, "carol", token(&server, room, "carol", "丙")).await;
    wait_for("carol to receive audio and video from alice and bob", Duration::from_secs(15), || {
        ["alice", "bob"].iter().all(|p| c.count(p, VIDEO) > 0 && c.count(p, AUDIO) > 0)
    })
    .await;
    let offers = c.msgs_of("offer");
    assert_eq!(offers.len(), 1, "carol got {} server offers, expected one for all four tracks", offers.len());
    let tracks = offered_tracks(offers[0]["sdp"].as_str().expect("offer sdp"));
    for p in ["alice", "bob"] {
        for kind in ["audio", "video"] {
            assert!(tracks.contains(&(p.to_owned(), kind.to_owned())), "{p}'s {kind} is not in the first offer: {tracks:?}");
        }
    }
    // The first video packet carol got from each is a keyframe (none was lost before
    // her answer).
    {
        let r = c.received.lock().unwrap();
        for p in ["alice", "bob"] {
            let first = &r.payloads[&(p.to_owned(), VIDEO)][0];
            assert!(fengqiao_sfu::keyframe::is_keyframe_start(fengqiao_sfu::keyframe::VideoCodec::Vp8, first));
        }
    }
    c.leave().await;
    a.leave().await;
    b.leave().await;
    server.shutdown().await;
}
