//! Mediation session controls end to end: waiting room and admit/reject, the
//! mediator's moderation (server-side mute, remove, end session), separate caucus
//! rooms (背靠背) proven by per-client packet counters, and the session event log.
//! Real webrtc-rs clients, real server, real WebSocket signaling, loopback UDP.

mod common;

use common::*;
use fengqiao::server::{self, Running};
use fengqiao_sfu::SfuStats;
use fengqiao_signaling::invite::Role;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const AUDIO: RtpCodecKind = RtpCodecKind::Audio;
const VIDEO: RtpCodecKind = RtpCodecKind::Video;
const T: Duration = Duration::from_secs(10);

fn tok(s: &Running, room: &str, pid: &str, role: Role, admitted: bool, session: Option<&str>) -> String {
    let mut c = server::claims(room, pid, pid, role, 3600);
    c.admitted = admitted;
    c.session_id = session.map(str::to_owned);
    s.key.mint(&c)
}

fn has_error(c: &Client, code: &str) -> bool {
    c.saw(|m| m["type"] == "error" && m["code"] == code)
}

/// `rx` receives audio and video from `tx` (more than what it had in `base`).
fn gets(rx: &Client, tx: &Client, base: (usize, usize)) -> bool {
    rx.count(&tx.pid, AUDIO) > base.0 + 5 && rx.count(&tx.pid, VIDEO) > base.1 + 3
}

fn counts(rx: &Client, from: &str) -> (usize, usize) {
    (rx.count(from, AUDIO), rx.count(from, VIDEO))
}

/// Reads the session's event log lines.
fn events(dir: &Path, session: &str) -> Vec<Value> {
    let p = dir.join("sessions").join(session).join("events.jsonl");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn count_action(ev: &[Value], action: &str) -> usize {
    ev.iter().filter(|e| e["action"] == action).count()
}

fn assert_rfc3339_utc(t: &str) {
    let b = t.as_bytes();
    assert!(
        t.len() == 24 && t.ends_with('Z') && b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':',
        "not an RFC 3339 UTC time: {t}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_room_admit_reject_and_forbidden() {
    let (srv, dir) = start_server(16).await;
    let stats = srv.sfu.stats().clone();
    let room = "wait-room";
    let session = Some("sess-wait");
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator, false, session)).await;
    assert!(m.joined.get("waiting").is_none(), "the mediator joins directly: {}", m.joined);
    let a = Client::join(&srv, "a1", tok(&srv, room, "a1", Role::Applicant, false, session)).await;
    assert_eq!(a.joined["waiting"], true, "{}", a.joined);
    assert_eq!(a.joined["participants"], json!([]), "a waiting party sees nobody");

    // The mediator sees the waiting list live.
    wait_for("the mediator to see a1 waiting", T, || {
        m.saw(|v| v["type"] == "participant_waiting" && v["participant"]["id"] == "a1")
            && m.saw(|v| v["type"] == "waiting" && v["participants"][0]["id"] == "a1")
    })
    .await;
    // a1's Transport connects and its media reaches the SFU, but goes nowhere.
    wait_for("both transports up and both publishing", T, || {
        a.connected.load(Ordering::SeqCst) && m.connected.load(Ordering::SeqCst) && SfuStats::get(&stats.producers) == 4
    })
    .await;
    let rtp_in = SfuStats::get(&stats.rtp_in);
    wait_for("300 more packets into the SFU", T, || SfuStats::get(&stats.rtp_in) > rtp_in + 300).await;
    assert_eq!(SfuStats::get(&stats.rtp_out), 0, "nothing forwarded while a1 waits");
    assert_eq!(SfuStats::get(&stats.consumers), 0);
    assert_eq!(m.total_received(), 0, "the mediator got media from a waiting party");
    assert_eq!(a.total_received(), 0, "a waiting party got media");
    assert!(!m.saw(|v| v["type"] == "participant_joined"), "nobody is told a1 joined before admit");

    // Only a mediator may admit; unknown ids are not_found.
    a.send(json!({"type": "admit", "id": "a1"})).await;
    m.send(json!({"type": "admit", "id": "nobody"})).await;
    wait_for("forbidden and not_found", T, || has_error(&a, "forbidden") && has_error(&m, "not_found")).await;

    // Admit: media both ways within 2 s.
    let t0 = Instant::now();
    m.send(json!({"type": "admit", "id": "a1"})).await;
    wait_for("media both ways within 2 s of admit", Duration::from_secs(2), || {
        gets(&m, &a, (0, 0)) && gets(&a, &m, (0, 0))
    })
    .await;
    eprintln!("admit → media both ways in {:?}", t0.elapsed());
    assert!(a.saw(|v| v["type"] == "admitted" && v["participants"][0]["id"] == "m1"));
    assert!(m.saw(|v| v["type"] == "participant_joined" && v["participant"]["id"] == "a1"));
    assert!(m.saw(|v| v["type"] == "waiting" && v["participants"] == json!([])), "the list empties");
    // Admitting twice is a wrong state.
    m.send(json!({"type": "admit", "id": "a1"})).await;
    wait_for("wrong_state", T, || has_error(&m, "wrong_state")).await;

    // A rejected party is disconnected; it never got anything.
    let r = Client::join(&srv, "r1", tok(&srv, room, "r1", Role::Respondent, false, session)).await;
    wait_for("r1 waiting", T, || m.saw(|v| v["type"] == "participant_waiting" && v["participant"]["id"] == "r1")).await;
    m.send(json!({"type": "reject", "id": "r1"})).await;
    wait_for("r1 closed as rejected", T, || {
        r.saw(|v| v["type"] == "closed" && v["reason"] == "rejected") && r.ws_closed.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(r.total_received(), 0);
    assert_eq!(m.count("r1", AUDIO) + a.count("r1", AUDIO), 0);
    assert!(!a.saw(|v| v["id"] == "r1" || v["participant"]["id"] == "r1"), "a party never hears of a waiting one");

    // The event log has each action once, with actor and server time.
    wait_for("admit and reject in the event log", T, || {
        let ev = events(dir.path(), "sess-wait");
        count_action(&ev, "admit") == 1 && count_action(&ev, "reject") == 1
    })
    .await;
    let ev = events(dir.path(), "sess-wait");
    for e in &ev {
        assert_rfc3339_utc(e["t"].as_str().expect("t"));
        assert!(e["actor"].is_string());
    }
    let admit = ev.iter().find(|e| e["action"] == "admit").unwrap();
    assert_eq!((admit["actor"].as_str(), admit["target"].as_str()), (Some("m1"), Some("a1")));
    let reject = ev.iter().find(|e| e["action"] == "reject").unwrap();
    assert_eq!((reject["actor"].as_str(), reject["target"].as_str()), (Some("m1"), Some("r1")));
    assert_eq!(count_action(&ev, "join"), 3, "{ev:?}");
    a.leave().await;
    m.leave().await;
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caucus_isolation_mute_remove_and_end() {
    let (srv, dir) = start_server(16).await;
    let stats = srv.sfu.stats().clone();
    let room = "caucus-room"; // no session_id: the log goes to sessions/<room>/
    let m = Client::join(&srv, "m1", tok(&srv, room, "m1", Role::Mediator, false, None)).await;
    let a = Client::join(&srv, "a1", tok(&srv, room, "a1", Role::Applicant, true, None)).await;
    let r_token = tok(&srv, room, "r1", Role::Respondent, true, None);
    let r = Client::join(&srv, "r1", r_token.clone()).await;
    let all = [&m, &a, &r];
    let full_mesh = |base: &dyn Fn(&Client, &Client) -> (usize, usize)| {
        all.iter().all(|rx| all.iter().filter(|tx| tx.pid != rx.pid).all(|tx| gets(rx, tx, base(rx, tx))))
    };
    wait_for("full mesh in the main room", Duration::from_secs(15), || full_mesh(&|_, _| (0, 0))).await;

    // Non-mediators may not move or end.
    a.send(json!({"type": "move", "id": "r1", "to": "x"})).await;
    r.send(json!({"type": "end_session"})).await;
    m.send(json!({"type": "move", "id": "a1", "to": ""})).await;
    wait_for("forbidden, forbidden, bad_field", T, || {
        has_error(&a, "forbidden") && has_error(&r, "forbidden") && has_error(&m, "bad_field")
    })
    .await;

    // Caucus: a1 and the mediator in one side room, r1 alone in another.
    m.send(json!({"type": "move", "id": "a1", "to": "申请人室"})).await;
    m.send(json!({"type": "move", "id": "r1", "to": "respondent-room"})).await;
    m.send(json!({"type": "move", "id": "m1", "to": "申请人室"})).await;
    wait_for("everyone to hear of three moves", T, || all.iter().all(|c| c.msgs_of("moved").len() == 3)).await;
    wait_for("caucus consumers only (a1 <-> m1)", T, || SfuStats::get(&stats.consumers) == 4).await;
    // Packets already in flight may land; then the cross-room counters freeze.
    let m_a = counts(&m, "a1");
    wait_for("m1 and a1 keep their media", T, || gets(&m, &a, m_a)).await;
    let frozen = [counts(&r, "a1"), counts(&r, "m1"), counts(&a, "r1"), counts(&m, "r1")];
    let (m_a, a_m) = (counts(&m, "a1"), counts(&a, "m1"));
    wait_for("m1 and a1 to keep exchanging media in their caucus", T, || {
        m.count("a1", AUDIO) > m_a.0 + 40 && a.count("m1", AUDIO) > a_m.0 + 40
    })
    .await;
    assert_eq!(
        [counts(&r, "a1"), counts(&r, "m1"), counts(&a, "r1"), counts(&m, "r1")],
        frozen,
        "media crossed between side rooms"
    );
    assert!(r.count("a1", VIDEO) + r.count("m1", VIDEO) > 0, "r1 did get media before the caucus");

    // Back to the main room: everything is restored (a move takes effect within 1 s).
    let base: Vec<((String, String), (usize, usize))> = all
        .iter()
        .flat_map(|rx| all.iter().filter(|tx| tx.pid != rx.pid).map(|tx| ((rx.pid.clone(), tx.pid.clone()), counts(rx, &tx.pid))))
        .collect();
    let base_of = |rx: &Client, tx: &Client| {
        base.iter().find(|((x, y), _)| *x == rx.pid && *y == tx.pid).map(|(_, c)| *c).unwrap_or_default()
    };
    let t0 = Instant::now();
    for id in ["a1", "r1", "m1"] {
        m.send(json!({"type": "move", "id": id, "to": "main"})).await;
    }
    wait_for("the full mesh to return within 1 s", Duration::from_secs(1), || full_mesh(&base_of)).await;
    eprintln!("back to main → full mesh in {:?}", t0.elapsed());
    assert_eq!(SfuStats::get(&stats.consumers), 12);

    // Server-side mute: a1's audio reaches nobody; a1 is told; video continues.
    m.send(json!({"type": "mute", "id": "a1", "audio": true, "video": false})).await;
    wait_for("everyone told a1 is muted", T, || {
        all.iter().all(|c| c.saw(|v| v["type"] == "muted_by_mediator" && v["id"] == "a1" && v["audio"] == true))
    })
    .await;
    let r_a = counts(&r, "a1");
    wait_for("a1's video still flows", T, || r.count("a1", VIDEO) > r_a.1 + 5).await;
    let muted = (m.count("a1", AUDIO), r.count("a1", AUDIO));
    let (r_a, m_r) = (counts(&r, "a1"), counts(&m, "r1"));
    wait_for("a1's video and r1's audio to keep flowing", T, || {
        r.count("a1", VIDEO) > r_a.1 + 15 && m.count("r1", AUDIO) > m_r.0 + 40
    })
    .await;
    assert_eq!((m.count("a1", AUDIO), r.count("a1", AUDIO)), muted, "muted audio was forwarded");
    m.send(json!({"type": "mute", "id": "a1", "audio": false, "video": false})).await;
    wait_for("a1's audio back after unmute", T, || m.count("a1", AUDIO) > muted.0 + 5 && r.count("a1", AUDIO) > muted.1 + 5)
        .await;

    // Remove r1: closed, others told; the same token cannot rejoin.
    m.send(json!({"type": "remove", "id": "r1", "reason": "扰乱调解秩序"})).await;
    wait_for("r1 removed", T, || {
        r.saw(|v| v["type"] == "closed" && v["reason"] == "removed")
            && r.ws_closed.load(Ordering::SeqCst)
            && a.saw(|v| v["type"] == "participant_left" && v["id"] == "r1")
    })
    .await;
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": r_token})).await;
    let e = recv_json(&mut ws, T).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("removed")), "{e}");
    drop(ws);

    // End the session for everyone.
    m.send(json!({"type": "end_session"})).await;
    wait_for("everyone closed with `ended`", T, || {
        [&m, &a].iter().all(|c| c.saw(|v| v["type"] == "closed" && v["reason"] == "ended") && c.ws_closed.load(Ordering::SeqCst))
    })
    .await;
    wait_for("the room to close", T, || SfuStats::get(&stats.rooms) == 0).await;

    // The log: each action once (mute twice: on and off), by m1, with server time.
    wait_for("end_session in the log", T, || count_action(&events(dir.path(), room), "end_session") == 1).await;
    let ev = events(dir.path(), room);
    assert_eq!(count_action(&ev, "move"), 6, "{ev:?}");
    assert_eq!(count_action(&ev, "mute"), 2);
    assert_eq!(count_action(&ev, "remove"), 1);
    assert_eq!(count_action(&ev, "join"), 3);
    assert_eq!(count_action(&ev, "leave"), 3, "{ev:?}");
    for e in ev.iter().filter(|e| e["action"] != "join" && e["action"] != "leave") {
        assert_eq!(e["actor"], "m1", "{e}");
        assert_rfc3339_utc(e["t"].as_str().unwrap());
    }
    let rm = ev.iter().find(|e| e["action"] == "remove").unwrap();
    assert_eq!((rm["target"].as_str(), rm["reason"].as_str()), (Some("r1"), Some("扰乱调解秩序")));
    let mv = ev.iter().find(|e| e["action"] == "move").unwrap();
    assert_eq!((mv["target"].as_str(), mv["to"].as_str()), (Some("a1"), Some("申请人室")));
    let mute = ev.iter().find(|e| e["action"] == "mute").unwrap();
    assert_eq!((mute["audio"].as_bool(), mute["video"].as_bool()), (Some(true), Some(false)));
    for c in [m, a, r] {
        c.leave().await;
    }
    srv.shutdown().await;
}
