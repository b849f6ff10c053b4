//! Bad signaling input: every case gets its typed error code, the offending
//! connection stays usable where that makes sense, and two well-behaved
//! participants in the room keep their media and notice nothing.

mod common;

use common::*;
use fengqiao::server;
use fengqiao_signaling::invite::{unix_now, Role};
use futures_util::SinkExt;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

async fn expect_error(ws: &mut Ws, code: &str) -> Value {
    let v = recv_json(ws, T).await;
    assert_eq!(v["type"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "got {v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
    v
}

async fn still_open(ws: &mut Ws) {
    send_json(ws, json!({"type": "ping"})).await;
    // recv_json skips pongs, so ask for something with a visible answer instead.
    ws.send(Message::Text(r#"{"type":"nope"}"#.into())).await.unwrap();
    expect_error(ws, "unknown_type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_code_and_the_room_lives_on() {
    let (srv, _dir) = start_server(2).await;
    let room = "room-x";
    let a = Client::join(&srv, "alice", token(&srv, room, "alice", "甲")).await;
    let b = Client::join(&srv, "bob", token(&srv, room, "bob", "乙")).await;
    wait_for("media both ways", Duration::from_secs(15), || {
        a.count("bob", RtpCodecKind::Video) > 10 && b.count("alice", RtpCodecKind::Video) > 10
    })
    .await;
    let before = (a.count("bob", RtpCodecKind::Video), b.count("alice", RtpCodecKind::Audio));
    let seen = [a.received.lock().unwrap().events.len(), b.received.lock().unwrap().events.len()];

    let mut ws = ws_connect(&srv).await;
    // Malformed JSON, non-object, missing type, unknown type, bad field.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    ws.send(Message::Text("[1,2]".into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    ws.send(Message::Text(r#"{"sdp":"x"}"#.into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    ws.send(Message::Text(r#"{"type":"teleport"}"#.into())).await.unwrap();
    let e = expect_error(&mut ws, "unknown_type").await;
    assert_eq!(e["re"], "teleport");
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": 42})).await;
    let e = expect_error(&mut ws, "bad_field").await;
    assert!(e["message"].as_str().unwrap().contains("token"));
    ws.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    expect_error(&mut ws, "bad_json").await;
    // Oversized (> 64 KiB): refused, connection stays.
    let big = json!({"type": "offer", "sdp": "v=0\r\n".repeat(20_000)});
    send_json(&mut ws, big).await;
    expect_error(&mut ws, "too_large").await;
    // Wrong state: media messages before join.
    send_json(&mut ws, json!({"type": "offer", "sdp": "v=0"})).await;
    expect_error(&mut ws, "not_joined").await;
    send_json(&mut ws, json!({"type": "candidate", "candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host"})).await;
    expect_error(&mut ws, "not_joined").await;
    // Tokens: garbage, wrongly signed, expired, wrong protocol version.
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": "garbage"})).await;
    expect_error(&mut ws, "bad_token").await;
    let good = token(&srv, "room-y", "mallory", "M");
    let forged = format!("{}x", &good[..good.len() - 1]);
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": forged})).await;
    expect_error(&mut ws, "bad_token").await;
    let mut c = server::claims("room-y", "mallory", "M", Role::Applicant, 10);
    c.exp = unix_now() - 1;
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": srv.key.mint(&c)})).await;
    expect_error(&mut ws, "token_expired").await;
    send_json(&mut ws, json!({"type": "join", "v": 99, "token": good})).await;
    expect_error(&mut ws, "bad_version").await;
    // A full room (cap 2 here): room-x already holds alice and bob.
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": token(&srv, room, "carol", "丙")})).await;
    expect_error(&mut ws, "room_full").await;
    still_open(&mut ws).await;
    // Joined elsewhere: join twice, answer with no offer outstanding, bad SDP.
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": good})).await;
    assert_eq!(recv_json(&mut ws, T).await["type"], "joined");
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": good})).await;
    expect_error(&mut ws, "already_joined").await;
    send_json(&mut ws, json!({"type": "answer", "sdp": "v=0\r\n"})).await;
    expect_error(&mut ws, "wrong_state").await;
    send_json(&mut ws, json!({"type": "offer", "sdp": "this is not SDP"})).await;
    expect_error(&mut ws, "bad_sdp").await;
    send_json(&mut ws, json!({"type": "candidate", "candidate": "hello"})).await;
    expect_error(&mut ws, "bad_candidate").await;
    still_open(&mut ws).await;
    // Too many messages per second: some are refused with rate_limited.
    for _ in 0..200 {
        ws.send(Message::Text(r#"{"type":"ping"}"#.into())).await.unwrap();
    }
    expect_error(&mut ws, "rate_limited").await;
    // Over 1 MiB the WebSocket layer gives up: a close frame with 1009 (RFC 6455 §7.4.1).
    let mut huge = ws_connect(&srv).await;
    let _ = huge.send(Message::Text("x".repeat(2 << 20).into())).await;
    let close = loop {
        match tokio::time::timeout(T, futures_util::StreamExt::next(&mut huge)).await.expect("an answer to a 2 MiB frame") {
            Some(Ok(Message::Close(c))) => break c,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame with 1009, got {other:?}"),
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1009));

    // Meanwhile alice and bob kept their media and noticed nothing.
    wait_for("media to keep flowing", Duration::from_secs(5), || {
        a.count("bob", RtpCodecKind::Video) > before.0 + 30 && b.count("alice", RtpCodecKind::Audio) > before.1 + 50
    })
    .await;
    for (x, n) in [(&a, seen[0]), (&b, seen[1])] {
        let r = x.received.lock().unwrap();
        assert!(r.events[n..].iter().all(|(t, _)| t != "error" && t != "participant_joined" && t != "participant_left"),
            "{} noticed: {:?}", x.pid, r.events);
    }
    drop(ws);
    a.leave().await;
    b.leave().await;
    srv.shutdown().await;
}

/// Glare (RFC 8829 §4.1.8): a client offer while the server's renegotiation
/// offer is outstanding gets `glare` and changes nothing: the connection stays
/// and the server's offer is still the one to answer (the browser client, the
/// polite peer, does exactly that).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_is_refused_and_negotiation_recovers() {
    let (srv, _dir) = start_server(16).await;
    let a = Client::join(&srv, "alice", token(&srv, "g-room", "alice", "甲")).await;
    wait_for("alice's producers", Duration::from_secs(10), || {
        fengqiao_sfu::SfuStats::get(&srv.sfu.stats().producers) == 2
    })
    .await;
    // A signaling-only participant whose offer is a real Chromium offer.
    let offer = include_str!("fixtures/sdp/chromium-sendrecv-offer.sdp");
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": token(&srv, "g-room", "mia", "M")})).await;
    assert_eq!(recv_json(&mut ws, T).await["type"], "joined");
    send_json(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    assert_eq!(recv_json(&mut ws, T).await["type"], "answer");
    // The server subscribes her to alice's tracks with an offer of its own...
    let server_offer = loop {
        let v = recv_json(&mut ws, T).await;
        if v["type"] == "offer" {
            break v;
        }
    };
    // ...and while it is outstanding, her own offer is glare.
    send_json(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    let e = expect_error(&mut ws, "glare").await;
    assert_eq!(e["re"], "offer");
    let sdp = server_offer["sdp"].as_str().unwrap();
    assert!(sdp.contains("a=msid:alice "), "the server offer carries alice's tracks");
    still_open(&mut ws).await;
    // Glare did not disturb the outstanding offer: a second glare attempt is refused the same way.
    send_json(&mut ws, json!({"type": "offer", "sdp": offer})).await;
    expect_error(&mut ws, "glare").await;
    drop(ws);
    a.leave().await;
    srv.shutdown().await;
}
