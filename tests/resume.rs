//! Resume after a dropped signaling connection (issue 5, "Resilience"): a
//! participant whose WebSocket dies comes back within `media.resume_window_ms`
//! with the resume token of its `joined`, on a new peer connection bound to a new
//! local UDP port, and keeps its participant id, side room and Producers; the
//! others see `participant_reconnecting` / `participant_resumed`, never a leave.
//! After the window the participant is gone (`participant_left`, logged) and a
//! resume fails with `resume_expired`. Real webrtc-rs clients, real server, real
//! WebSocket signaling, loopback UDP.

mod common;

use common::*;
use fengqiao::server::{self, Running};
use fengqiao_sfu::SfuStats;
use fengqiao_signaling::invite::Role;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

const AUDIO: RtpCodecKind = RtpCodecKind::Audio;
const VIDEO: RtpCodecKind = RtpCodecKind::Video;
const T: Duration = Duration::from_secs(10);
const WINDOW_MS: u64 = 4_000;

fn tok(s: &Running, room: &str, pid: &str, role: Role) -> String {
    let mut c = server::claims(room, pid, pid, role, 3600);
    c.admitted = true;
    c.session_id = Some("sess-resume".into());
    s.key.mint(&c)
}

fn events(dir: &Path) -> Vec<Value> {
    let p = dir.join("sessions").join("sess-resume").join("events.jsonl");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn of(ev: &[Value], actor: &str, action: &str) -> Vec<Value> {
    ev.iter().filter(|e| e["actor"] == actor && e["action"] == action).cloned().collect()
}

/// Payloads `rx` received from `from` of `kind` that `sender` sent (its own unique tag).
fn got_from(rx: &Client, from: &str, kind: RtpCodecKind, sender: &Client) -> usize {
    let sent: HashSet<bytes::Bytes> = sender.sent.lock().unwrap().get(&kind).cloned().unwrap_or_default();
    let r = rx.received.lock().unwrap();
    r.payloads.get(&(from.to_owned(), kind)).map_or(0, |v| v.iter().filter(|p| sent.contains(*p)).count())
}

async fn resume_error(srv: &Running, token: &str, resume_token: &str) -> Value {
    let mut ws = ws_connect(srv).await;
    send_json(&mut ws, json!({"type": "resume", "v": 1, "token": token, "resume_token": resume_token})).await;
    recv_json(&mut ws, T).await
}

/// Whether a server message after the first `from` satisfies `pred`.
fn saw_after(c: &Client, from: usize, pred: impl Fn(&Value) -> bool) -> bool {
    c.received.lock().unwrap().msgs.iter().skip(from).any(pred)
}

fn left(c: &Client, id: &str) -> bool {
    c.saw(|v| v["type"] == "participant_left" && v["id"] == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_keeps_identity_side_room_and_producers_then_expires() {
    let (srv, dir) = start_server_with(|c| c.media.resume_window_ms = WINDOW_MS).await;
    let stats = srv.sfu.stats().clone();
    let room = "resume-room";
    let a_tok = tok(&srv, room, "a1", Role::Applicant);
    let r_tok = tok(&srv, room, "r1", Role::Respondent);
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator)).await;
    let mut a = Client::join(&srv, "a1", a_tok.clone()).await;
    let r = Client::join(&srv, "r1", r_tok.clone()).await;
    let resume_token = a.joined["resume_token"].as_str().expect("joined carries a resume token").to_owned();
    assert_eq!(resume_token.len(), 32, "128 random bits in hex: {resume_token}");
    assert_ne!(m.joined["resume_token"], a.joined["resume_token"]);

    // Caucus: the mediator and a1 in a side room, r1 alone in the main room.
    m.send(json!({"type": "move", "id": "a1", "to": "申请人室"})).await;
    m.send(json!({"type": "move", "id": "m1", "to": "申请人室"})).await;
    wait_for("a1 and m1 exchange media in the side room", T, || {
        got_from(&m, "a1", VIDEO, &a) > 5 && got_from(&m, "a1", AUDIO, &a) > 5 && a.count("m1", VIDEO) > 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r_from_a = (r.count("a1", AUDIO), r.count("a1", VIDEO));

    // a1's WebSocket dies; its media path is still up for a moment.
    let mark: Vec<usize> = [&m, &r].iter().map(|c| c.received.lock().unwrap().msgs.len()).collect();
    a.drop_signaling();
    wait_for("m1 and r1 to see a1 reconnecting", T, || {
        [&m, &r].iter().all(|c| c.saw(|v| v["type"] == "participant_reconnecting" && v["id"] == "a1"))
    })
    .await;
    let during = got_from(&m, "a1", AUDIO, &a);
    wait_for("a1's media to keep flowing while its signaling is down", T, || got_from(&m, "a1", AUDIO, &a) > during + 10)
        .await;

    // Someone else's invite with a1's resume token, and a wrong token: refused,
    // and nothing changes.
    let e = resume_error(&srv, &r_tok, &resume_token).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str(), e["re"].as_str()), (Some("error"), Some("resume_expired"), Some("resume")), "{e}");
    let e = resume_error(&srv, &a_tok, &"0".repeat(32)).await;
    assert_eq!(e["code"], "resume_expired", "{e}");
    assert!(r.saw(|v| v["type"] == "participant_reconnecting"), "r1 is still connected");

    // The network changes: a1's old peer connection goes; a new one on a new local
    // UDP port resumes.
    let old_sent_video = got_from(&m, "a1", VIDEO, &a);
    a.vanish().await;
    let a2 = Client::resume(&srv, "a1", a_tok.clone(), &resume_token).await;
    assert_eq!(a2.joined["resumed"], true, "{}", a2.joined);
    assert_eq!(a2.joined["me"]["id"], "a1", "same participant id: {}", a2.joined);
    assert_eq!(a2.joined["me"]["side_room"], "申请人室", "still in the side room: {}", a2.joined);
    let ids: Vec<&str> = a2.joined["participants"].as_array().unwrap().iter().filter_map(|p| p["id"].as_str()).collect();
    assert!(ids.contains(&"m1") && ids.contains(&"r1"), "{}", a2.joined);
    let token2 = a2.joined["resume_token"].as_str().unwrap().to_owned();
    assert!(token2.len() == 32 && token2 != resume_token, "a new resume token on each resume");

    wait_for("m1 to get the resumed a1's new media, and a1 m1's", T, || {
        got_from(&m, "a1", VIDEO, &a2) > 5 && got_from(&m, "a1", AUDIO, &a2) > 5 && a2.count("m1", VIDEO) > 5
    })
    .await;
    assert!(old_sent_video > 0);
    assert!(m.saw(|v| v["type"] == "participant_resumed" && v["id"] == "a1"));
    // Nobody saw a1 leave or join again; the side room still isolates r1.
    for (c, from) in [&m, &r].into_iter().zip(mark) {
        assert!(!left(c, "a1"), "{} saw a1 leave", c.pid);
        assert!(
            !saw_after(c, from, |v| v["type"] == "participant_joined" && v["participant"]["id"] == "a1"),
            "{} saw a1 join again",
            c.pid
        );
    }
    assert_eq!((r.count("a1", AUDIO), r.count("a1", VIDEO)), r_from_a, "r1 gets nothing from the side room");
    // The Producers were kept (continued by the new connection), not re-created.
    assert_eq!(SfuStats::get(&stats.participants), 3);
    assert_eq!(SfuStats::get(&stats.producers), 6);
    assert_eq!(SfuStats::get(&stats.consumers), 4, "m1↔a1 only");
    assert!(m.received.lock().unwrap().ended.iter().all(|(p, _)| p != "a1"), "a1's tracks never ended at m1");
    // One continuous stream at m1 across the new source: sequence numbers step by one
    // and RTP timestamps never jump back or far ahead (a browser drops video frames
    // whose timestamp runs backwards), although the new connection starts both afresh.
    {
        let r = m.received.lock().unwrap();
        for (kind, clock) in [(VIDEO, 90_000i64), (AUDIO, 48_000)] {
            let key = ("a1".to_owned(), kind);
            let seqs = &r.seqs[&key];
            assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)), "{kind}: a gap or jump in {seqs:?}");
            let ts = &r.timestamps[&key];
            let worst = ts.windows(2).map(|w| i64::from(w[1].wrapping_sub(w[0]) as i32)).fold((0, 0), |(lo, hi), d| (lo.min(d), hi.max(d)));
            assert!(worst.0 >= 0 && worst.1 < 10 * clock, "{kind}: timestamps step from {} to {} ticks", worst.0, worst.1);
        }
    }

    // Second drop, and no resume: after the window a1 is gone.
    let mut a2 = a2;
    a2.drop_signaling();
    a2.vanish().await;
    wait_for("m1 to see a1 reconnecting again", T, || {
        m.msgs_of("participant_reconnecting").iter().filter(|v| v["id"] == "a1").count() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(WINDOW_MS / 4)).await;
    assert!(!left(&m, "a1"), "not gone before the window ends");
    wait_for("m1 and r1 to see a1 leave after the window", T, || left(&m, "a1") && left(&r, "a1")).await;
    let e = resume_error(&srv, &a_tok, &token2).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("resume_expired")), "{e}");
    assert_eq!(SfuStats::get(&stats.participants), 2);
    assert_eq!(SfuStats::get(&stats.producers), 4);

    // The event log: two drops, one resume, then the leave for resume_expired.
    wait_for("the event log", T, || !of(&events(dir.path()), "a1", "leave").is_empty()).await;
    let ev = events(dir.path());
    assert_eq!(of(&ev, "a1", "reconnecting").len(), 2, "{ev:?}");
    assert_eq!(of(&ev, "a1", "resume").len(), 1, "{ev:?}");
    let leaves = of(&ev, "a1", "leave");
    assert_eq!(leaves.len(), 1, "{ev:?}");
    assert_eq!(leaves[0]["reason"], "resume_expired");
    m.leave().await;
    r.leave().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_window_a_drop_is_a_leave() {
    let (srv, _dir) = start_server_with(|c| c.media.resume_window_ms = 0).await;
    let room = "no-resume";
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator)).await;
    let mut a = Client::join(&srv, "a1", tok(&srv, room, "a1", Role::Applicant)).await;
    assert!(a.joined.get("resume_token").is_none(), "{}", a.joined);
    a.drop_signaling();
    wait_for("m1 to see a1 leave at once", T, || left(&m, "a1")).await;
    assert!(!m.saw(|v| v["type"] == "participant_reconnecting"));
    a.vanish().await;
    m.leave().await;
    srv.shutdown().await;
}

/// `resume` without `restart` while the old WebSocket is still open (a half-open
/// connection the server has not noticed): the old one gets `closed {reason:"resumed"}`,
/// the peer connection carries on untouched, and the others see no leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_without_restart_takes_over_the_signaling_only() {
    let (srv, dir) = start_server_with(|c| c.media.resume_window_ms = WINDOW_MS).await;
    let room = "takeover";
    let a_tok = tok(&srv, room, "a1", Role::Applicant);
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator)).await;
    let a = Client::join(&srv, "a1", a_tok.clone()).await;
    wait_for("media both ways", T, || got_from(&m, "a1", VIDEO, &a) > 5 && a.count("m1", VIDEO) > 5).await;
    let resume_token = a.joined["resume_token"].as_str().unwrap().to_owned();

    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "resume", "v": 1, "token": a_tok, "resume_token": resume_token, "restart": false}))
        .await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!((j["type"].as_str(), j["resumed"].as_bool(), j["me"]["id"].as_str()), (Some("joined"), Some(true), Some("a1")), "{j}");
    wait_for("the old connection to be told and closed", T, || {
        a.saw(|v| v["type"] == "closed" && v["reason"] == "resumed") && a.ws_closed.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // Same peer connection: a1's media keeps reaching m1, and m1's a1.
    let (to_m, to_a) = (got_from(&m, "a1", AUDIO, &a), a.count("m1", AUDIO));
    wait_for("media to go on over the old peer connection", T, || {
        got_from(&m, "a1", AUDIO, &a) > to_m + 10 && a.count("m1", AUDIO) > to_a + 10
    })
    .await;
    // The new signaling connection works (ping, mute) and the others never saw a leave.
    send_json(&mut ws, json!({"type": "mute", "audio": true, "video": false})).await;
    wait_for("m1 to get a1's mute over the new connection", T, || {
        m.saw(|v| v["type"] == "mute" && v["id"] == "a1" && v["audio"] == true)
    })
    .await;
    assert!(!left(&m, "a1"));
    assert!(!m.saw(|v| v["type"] == "participant_reconnecting"), "the server never saw a drop");
    let ev = events(dir.path());
    assert_eq!(of(&ev, "a1", "resume").len(), 1, "{ev:?}");
    assert!(of(&ev, "a1", "leave").is_empty(), "{ev:?}");
    send_json(&mut ws, json!({"type": "leave"})).await;
    wait_for("m1 to see a1 leave", T, || left(&m, "a1")).await;
    m.leave().await;
    srv.shutdown().await;
}

/// A renegotiation while a participant's signaling is down (someone else leaves, so
/// the server re-offers without that one's tracks) keeps the participant for its
/// resume window: the offer waits and comes on the resumed connection. It used to
/// end the participant at once as `slow_signaling` (found by a newcomer run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_offer_during_the_drop_waits_for_the_resume() {
    let (srv, dir) = start_server_with(|c| c.media.resume_window_ms = WINDOW_MS * 3).await;
    let room = "offer-while-down";
    let a_tok = tok(&srv, room, "a1", Role::Applicant);
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator)).await;
    let mut a = Client::join(&srv, "a1", a_tok.clone()).await;
    let r = Client::join(&srv, "r1", tok(&srv, room, "r1", Role::Respondent)).await;
    // Every Consumer of a1 forwards only once a1 answered the offer that carried it:
    // with all four flowing, no offer is outstanding.
    wait_for("a1 to get r1's and m1's audio and video", T, || {
        [("r1", VIDEO), ("r1", AUDIO), ("m1", VIDEO), ("m1", AUDIO)].iter().all(|(p, k)| a.count(p, *k) > 5)
    })
    .await;
    let resume_token = a.joined["resume_token"].as_str().unwrap().to_owned();

    a.drop_signaling();
    wait_for("m1 to see a1 reconnecting", T, || m.saw(|v| v["type"] == "participant_reconnecting" && v["id"] == "a1")).await;
    // r1 leaves: a1's Transport loses two Consumers, so the server offers again.
    r.leave().await;
    wait_for("m1 to see r1 leave", T, || left(&m, "r1")).await;
    let resumed_before = m.msgs_of("participant_resumed").len();

    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "resume", "v": 1, "token": a_tok, "resume_token": resume_token, "restart": false}))
        .await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!((j["type"].as_str(), j["resumed"].as_bool()), (Some("joined"), Some(true)), "{j}");
    // The offer made while a1 was away reaches the new connection, without r1's tracks.
    let offer = loop {
        let v = recv_json(&mut ws, T).await;
        if v["type"] == "offer" {
            break v;
        }
    };
    let sdp = offer["sdp"].as_str().unwrap();
    assert!(!sdp.contains("a=msid:r1 "), "r1's tracks are gone from the offer:\n{sdp}");
    wait_for("m1 to see a1 resumed", T, || m.msgs_of("participant_resumed").len() > resumed_before).await;
    assert!(!left(&m, "a1"), "a1 was never gone");
    let ev = events(dir.path());
    assert!(of(&ev, "a1", "leave").is_empty(), "{ev:?}");
    send_json(&mut ws, json!({"type": "leave"})).await;
    wait_for("m1 to see a1 leave", T, || left(&m, "a1")).await;
    a.vanish().await;
    m.leave().await;
    srv.shutdown().await;
}

/// m1 (mediator) and a1 (applicant) in `room`, then a1's WebSocket drops (its peer
/// connection stays): returns once m1 sees a1 reconnecting, with a1's invite and
/// the resume token of its `joined`.
struct Away {
    srv: Running,
    dir: tempfile::TempDir,
    m: Client,
    a: Client,
    a_tok: String,
    m_tok: String,
    t0: String,
}

async fn a1_away(room: &str) -> Away {
    let (srv, dir) = start_server_with(|c| c.media.resume_window_ms = WINDOW_MS * 3).await;
    let a_tok = tok(&srv, room, "a1", Role::Applicant);
    let m_tok = tok(&srv, room, "m1", Role::Mediator);
    let m = Client::join(&srv, "m1", m_tok.clone()).await;
    let mut a = Client::join(&srv, "a1", a_tok.clone()).await;
    let t0 = a.joined["resume_token"].as_str().unwrap().to_owned();
    a.drop_signaling();
    wait_for("m1 to see a1 reconnecting", T, || m.saw(|v| v["type"] == "participant_reconnecting" && v["id"] == "a1")).await;
    Away { srv, dir, m, a, a_tok, m_tok, t0 }
}

/// The `joined` answering a resume can be lost with its connection: the client then
/// still holds only the token it presented, and that token keeps working until a
/// resume shows the client has the newer one (a session-breaking run was locked out
/// a second into a 30 s window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_answer_was_lost_can_be_repeated() {
    let Away { srv, dir, m, a, a_tok, t0, .. } = a1_away("lost-answer").await;
    let resume = |token: &str| json!({"type": "resume", "v": 1, "token": a_tok, "resume_token": token, "restart": false});
    let reconnecting = |n: usize| m.msgs_of("participant_reconnecting").iter().filter(|v| v["id"] == "a1").count() >= n;

    // The first resume succeeds, and its connection dies before the client reads it.
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, resume(&t0)).await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!(j["resumed"], true, "{j}");
    let t1 = j["resume_token"].as_str().unwrap().to_owned();
    drop(ws);
    wait_for("a1 reconnecting again", T, || reconnecting(2)).await;
    // The client retries with the only token it knows.
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, resume(&t0)).await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!((j["type"].as_str(), j["resumed"].as_bool()), (Some("joined"), Some(true)), "{j}");
    let t2 = j["resume_token"].as_str().unwrap().to_owned();
    assert!(t2 != t0 && t2 != t1);
    drop(ws);
    wait_for("a1 reconnecting a third time", T, || reconnecting(3)).await;
    // A resume with the newest token shows the client has it: older ones stop working.
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, resume(&t2)).await;
    let j = recv_json(&mut ws, T).await;
    assert_eq!(j["resumed"], true, "{j}");
    for stale in [&t0, &t1] {
        let e = resume_error(&srv, &a_tok, stale).await;
        assert_eq!(e["code"], "resume_expired", "{e}");
    }
    assert!(!left(&m, "a1"), "a1 was never gone");
    assert!(of(&events(dir.path()), "a1", "leave").is_empty());
    send_json(&mut ws, json!({"type": "leave"})).await;
    wait_for("m1 to see a1 leave", T, || left(&m, "a1")).await;
    a.vanish().await;
    m.leave().await;
    srv.shutdown().await;
}

/// The mediator's mutes reach a participant who was away when they changed (resume)
/// and a page opened afresh (a new join): a party muted meanwhile learns it, and a
/// mediator's new tab shows who is muted (found by a session-breaking run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutes_changed_while_away_reach_the_resumed_and_the_new_page() {
    let Away { srv, m, a, a_tok, m_tok, t0, .. } = a1_away("mute-away").await;
    m.send(json!({"type": "mute", "id": "a1", "audio": true, "video": false})).await;
    wait_for("m1 to see its mute", T, || m.saw(|v| v["type"] == "muted_by_mediator" && v["id"] == "a1" && v["audio"] == true)).await;

    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "resume", "v": 1, "token": a_tok, "resume_token": t0, "restart": false})).await;
    assert_eq!(recv_json(&mut ws, T).await["resumed"], true);
    let muted = loop {
        let v = recv_json(&mut ws, T).await;
        if v["type"] == "muted_by_mediator" && v["id"] == "a1" {
            break v;
        }
    };
    assert_eq!((muted["audio"].as_bool(), muted["video"].as_bool()), (Some(true), Some(false)), "{muted}");

    // The mediator opens a new tab: it learns a1 is muted without asking.
    let m2 = Client::join(&srv, "m1", m_tok).await;
    wait_for("the mediator's new page to learn a1's mute", T, || {
        m2.saw(|v| v["type"] == "muted_by_mediator" && v["id"] == "a1" && v["audio"] == true)
    })
    .await;
    send_json(&mut ws, json!({"type": "leave"})).await;
    a.vanish().await;
    drop(m);
    m2.leave().await;
    srv.shutdown().await;
}

/// The mediator ends the session while a party is away: the party's resume is told
/// the session ended, not that it came too late (a session-breaking run saw the page
/// say "connection lost for too long").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_the_session_ended_is_told_so() {
    let Away { srv, m, a, a_tok, t0, .. } = a1_away("ended-away").await;
    m.send(json!({"type": "end_session"})).await;
    wait_for("m1 to be closed with ended", T, || m.saw(|v| v["type"] == "closed" && v["reason"] == "ended")).await;
    let e = resume_error(&srv, &a_tok, &t0).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str(), e["re"].as_str()), (Some("error"), Some("session_ended"), Some("resume")), "{e}");
    a.vanish().await;
    srv.shutdown().await;
}
