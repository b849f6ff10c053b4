//! A participant whose media transport goes away (DTLS close or ICE consent
//! expiry, RFC 7675) leaves the room even though its WebSocket stays open:
//! its Producers end for the others and it is told why.

mod common;

use common::*;
use fengqiao_sfu::SfuStats;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_media_transport_means_leaving() {
    let (srv, _dir) = start_server_with(|c| {
        c.media.ice_disconnected_timeout_ms = 1_000;
        c.media.ice_failed_timeout_ms = 2_000;
    })
    .await;
    let a = Client::join(&srv, "alice", token(&srv, "t-room", "alice", "甲")).await;
    let b = Client::join(&srv, "bob", token(&srv, "t-room", "bob", "乙")).await;
    wait_for("media both ways", Duration::from_secs(15), || {
        a.count("bob", RtpCodecKind::Video) > 5 && b.count("alice", RtpCodecKind::Video) > 5
    })
    .await;
    // Bob's peer connection goes away; his signaling connection does not.
    b.pc.close().await.unwrap();
    wait_for("alice to see bob leave", Duration::from_secs(10), || {
        a.received.lock().unwrap().events.iter().any(|(t, id)| t == "participant_left" && id == "bob")
    })
    .await;
    wait_for("bob to be told", Duration::from_secs(5), || {
        b.received.lock().unwrap().events.iter().any(|(t, _)| t == "closed")
    })
    .await;
    let stats = srv.sfu.stats();
    assert_eq!(SfuStats::get(&stats.participants), 1);
    assert_eq!(SfuStats::get(&stats.producers), 2, "only alice's tracks remain");
    assert_eq!(SfuStats::get(&stats.consumers), 0);
    a.leave().await;
    srv.shutdown().await;
}
