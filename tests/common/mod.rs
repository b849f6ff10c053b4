//! A test participant: a real WebRTC client on the `webrtc` 0.21 async API that
//! speaks our signaling over a real WebSocket and our media over loopback UDP.
//!
//! It publishes a synthetic VP8 video track (one packet per frame at 30 fps, a
//! keyframe only when asked with PLI/FIR, so a late joiner depends on the SFU's
//! keyframe request) and an Opus-sized audio track (every 20 ms, with an RFC 6464
//! audio level). Every payload is unique (`sender tag | kind | counter`), so a
//! receiver can prove it got exactly the bytes that were sent.

#![allow(dead_code)]

pub mod media;

use async_trait::async_trait;
use fengqiao::server::{self, Running};
use fengqiao_bench::client::{client_engine, local_track, opus, vp8};
use fengqiao_sfu::tap::RtcpTap;
use futures_util::{SinkExt, StreamExt};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
    RTCPeerConnectionState,
};

/// Runs the `fengqiao` binary with `args` to completion, in `dir`, with a clean
/// `FENGQIAO_*` environment and `data_dir` = `dir/data`.
pub fn run_fengqiao(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_fengqiao"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FENGQIAO_") {
            c.env_remove(k);
        }
    }
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("FENGQIAO_DATA_DIR", dir.join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run fengqiao")
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts a real server on loopback with free ports and a temp data folder.
pub async fn start_server(max_participants: usize) -> (Running, tempfile::TempDir) {
    start_server_with(|cfg| cfg.media.max_participants = max_participants).await
}

/// Like [`start_server`], with the config adjusted by `tweak` first.
pub async fn start_server_with(tweak: impl FnOnce(&mut fengqiao::config::Config)) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = fengqiao::config::Config::default();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse().unwrap();
    cfg.media.udp_port = 0;
    // Review videos are rendered only where a test asks (they cost seconds of CPU).
    cfg.recorder.render_after_stop = false;
    tweak(&mut cfg);
    let _ = tracing_subscriber_init();
    (server::start(cfg).await.expect("server starts"), dir)
}

fn tracing_subscriber_init() -> Result<(), ()> {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let filter = std::env::var("FQ_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    });
    Ok(())
}

pub fn ws_url(s: &Running) -> String {
    format!("ws://{}/ws", s.http_addr)
}

/// An applicant's invite that skips the waiting room (`admitted: true`).
pub fn token(s: &Running, room: &str, pid: &str, name: &str) -> String {
    use fengqiao_signaling::invite::Role;
    let mut c = server::claims(room, pid, name, Role::Applicant, 3600);
    c.admitted = true;
    s.key.mint(&c)
}

/// An invite for `role` that goes through the waiting room (unless `role` is mediator).
pub fn token_as(s: &Running, room: &str, pid: &str, role: fengqiao_signaling::invite::Role) -> String {
    s.key.mint(&server::claims(room, pid, pid, role, 3600))
}

pub async fn ws_connect(s: &Running) -> Ws {
    tokio_tungstenite::connect_async(ws_url(s)).await.expect("ws connects").0
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("ws send");
}

/// Next JSON message, skipping the ones `skip` names (e.g. active_speaker).
pub async fn recv_json(ws: &mut Ws, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next()).await.expect("message in time");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).expect("server sends JSON");
                if v["type"] == "active_speaker" || v["type"] == "pong" {
                    continue;
                }
                return v;
            }
            Some(Ok(Message::Close(_))) | None => return json!({"type": "__closed"}),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("ws error {e}"),
        }
    }
}

/// What one client has received, per publishing participant.
#[derive(Default)]
pub struct Received {
    /// (participant id, kind) → payloads received.
    pub payloads: HashMap<(String, RtpCodecKind), Vec<bytes::Bytes>>,
    /// (participant id, kind) → time of the first keyframe received.
    pub first_keyframe: HashMap<String, Instant>,
    /// (participant id, kind) → the track ended.
    pub ended: HashSet<(String, RtpCodecKind)>,
    /// Signaling events seen (type, id).
    pub events: Vec<(String, String)>,
    /// Every server message after `joined`, in order (active_speaker and pong skipped).
    pub msgs: Vec<Value>,
    /// (participant id, kind) → RTP sequence numbers in arrival order.
    pub seqs: HashMap<(String, RtpCodecKind), Vec<u16>>,
    /// (participant id, kind) → RTP timestamps in arrival order.
    pub timestamps: HashMap<(String, RtpCodecKind), Vec<u32>>,
}

pub struct Client {
    pub pid: String,
    pub pc: Arc<dyn PeerConnection>,
    pub received: Arc<Mutex<Received>>,
    /// Every payload this client sent, per kind.
    pub sent: Arc<Mutex<HashMap<RtpCodecKind, HashSet<bytes::Bytes>>>>,
    /// Keyframe requests (PLI/FIR) that reached this client's video sender.
    pub keyframe_requests: Arc<AtomicU64>,
    /// Receiver reports (RFC 3550 §6.4.2) about this client's video that reached it.
    pub receiver_reports: Arc<AtomicU64>,
    out: mpsc::Sender<Value>,
    stop: Arc<AtomicBool>,
    pub connected: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// When the last server offer was answered.
    pub last_renegotiation: Arc<Mutex<Option<Instant>>>,
    /// The `joined` message.
    pub joined: Value,
    /// The signaling WebSocket has ended (closed by the server or by `leave`).
    pub ws_closed: Arc<AtomicBool>,
    /// Real-media publishers: switches and counters.
    pub media: Option<media::Ctl>,
}

struct Handler {
    pid: String,
    received: Arc<Mutex<Received>>,
    gathered: mpsc::Sender<()>,
    connected: Arc<AtomicBool>,
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            self.connected.store(true, Ordering::SeqCst);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        let owner = track.stream_id().await;
        let kind = track.kind().await;
        let _me = self.pid.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        let mut r = received.lock().unwrap();
                        if kind == RtpCodecKind::Video
                            && fengqiao_sfu::keyframe::is_keyframe_start(fengqiao_sfu::keyframe::VideoCodec::Vp8, &p.payload)
                        {
                            r.first_keyframe.entry(owner.clone()).or_insert_with(Instant::now);
                        }
                        r.seqs.entry((owner.clone(), kind)).or_default().push(p.header.sequence_number);
                        r.timestamps.entry((owner.clone(), kind)).or_default().push(p.header.timestamp);
                        r.payloads.entry((owner.clone(), kind)).or_default().push(p.payload);
                    }
                    TrackRemoteEvent::OnEnded => {
                        received.lock().unwrap().ended.insert((owner.clone(), kind));
                        break;
                    }
                    _ => {}
                }
            }
            received.lock().unwrap().ended.insert((owner.clone(), kind));
        });
    }
}

impl Client {
    /// Joins with `token` over a new WebSocket, publishes audio + video, and keeps
    /// answering the server's renegotiation offers.
    pub async fn join(server: &Running, pid: &str, token: String) -> Client {
        Self::join_ws(&ws_url(server), pid, token, None).await
    }

    /// Like [`Client::join`], publishing real VP8 and an Opus sine tone from GStreamer
    /// (see [`media`]).
    pub async fn join_real(server: &Running, pid: &str, token: String, m: media::RealMedia) -> Client {
        Self::join_ws(&ws_url(server), pid, token, Some(m)).await
    }

    /// Joins through the signaling WebSocket at `url` (`ws://host:port/ws`).
    pub async fn join_ws(url: &str, pid: &str, token: String, real: Option<media::RealMedia>) -> Client {
        Self::join_with(url, pid, json!({"type": "join", "v": 1, "token": token}), real).await
    }

    /// Resumes a dropped participant with a new peer connection (new UDP port):
    /// `resume {token, resume_token, restart: true}`, then a fresh offer.
    pub async fn resume(server: &Running, pid: &str, token: String, resume_token: &str) -> Client {
        let first = json!({"type": "resume", "v": 1, "token": token, "resume_token": resume_token, "restart": true});
        Self::join_with(&ws_url(server), pid, first, None).await
    }

    /// Like [`Client::join_ws`], with `first` as the first message (`join` or `resume`).
    pub async fn join_with(url: &str, pid: &str, first: Value, real: Option<media::RealMedia>) -> Client {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws connect");
        send_json(&mut ws, first).await;
        let joined = recv_json(&mut ws, Duration::from_secs(5)).await;
        assert_eq!(joined["type"], "joined", "join reply: {joined}");

        // Every inbound RTCP reaches the client, so tests see what the SFU sends.
        let (me, registry) = client_engine(RtcpTap::new(|_| true)).expect("client media engine");
        let received = Arc::new(Mutex::new(Received::default()));
        let ws_closed = Arc::new(AtomicBool::new(false));
        let (gtx, mut grx) = mpsc::channel(1);
        let connected = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(Handler {
            pid: pid.to_owned(),
            received: received.clone(),
            gathered: gtx,
            connected: connected.clone(),
        });
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(me)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await
                .expect("client pc"),
        );
        let (video_ssrc, audio_ssrc) = (rand::random::<u32>(), rand::random::<u32>());
        let video = local_track(pid, RtpCodecKind::Video, vp8(), video_ssrc);
        let audio = local_track(pid, RtpCodecKind::Audio, opus(), audio_ssrc);
        pc.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
        pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await.unwrap();
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), grx.recv()).await;
        let sdp = pc.local_description().await.unwrap().sdp;
        send_json(&mut ws, json!({"type": "offer", "sdp": sdp})).await;
        // Other messages (e.g. a mediator's `waiting` list) may come before the answer.
        let mut early = Vec::new();
        let answer = loop {
            let m = recv_json(&mut ws, Duration::from_secs(5)).await;
            if m["type"] == "answer" || m["type"] == "error" || m["type"] == "__closed" {
                break m;
            }
            early.push(m);
        };
        assert_eq!(answer["type"], "answer", "offer reply: {answer}");
        pc.set_remote_description(RTCSessionDescription::answer(answer["sdp"].as_str().unwrap().to_owned()).unwrap())
            .await
            .unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let sent: Arc<Mutex<HashMap<RtpCodecKind, HashSet<bytes::Bytes>>>> = Default::default();
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        let want_key = Arc::new(AtomicBool::new(true));
        let last_renegotiation = Arc::new(Mutex::new(None));
        let (out_tx, mut out_rx) = mpsc::channel::<Value>(64);
        let mut tasks = Vec::new();

        received.lock().unwrap().msgs.extend(early);
        // Signaling loop: answer server offers, record events, send what tests ask.
        {
            let pc = pc.clone();
            let received = received.clone();
            let last = last_renegotiation.clone();
            let closed = ws_closed.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::select! {
                        m = ws.next() => {
                            let t = match m {
                                Some(Ok(Message::Text(t))) => t,
                                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                                _ => break,
                            };
                            let v: Value = serde_json::from_str(&t).unwrap();
                            let ty = v["type"].as_str().unwrap_or("").to_owned();
                            if ty != "active_speaker" && ty != "pong" {
                                received.lock().unwrap().msgs.push(v.clone());
                            }
                            match ty.as_str() {
                                "offer" => {
                                    let o = RTCSessionDescription::offer(v["sdp"].as_str().unwrap().to_owned()).unwrap();
                                    pc.set_remote_description(o).await.unwrap();
                                    let a = pc.create_answer(None).await.unwrap();
                                    pc.set_local_description(a).await.unwrap();
                                    let sdp = pc.local_description().await.unwrap().sdp;
                                    let msg = json!({"type": "answer", "sdp": sdp}).to_string();
                                    if ws.send(Message::Text(msg.into())).await.is_err() { break }
                                    *last.lock().unwrap() = Some(Instant::now());
                                }
                                "participant_left" => received.lock().unwrap().events.push((ty, v["id"].as_str().unwrap_or("").into())),
                                "participant_joined" => received.lock().unwrap().events.push((ty, v["participant"]["id"].as_str().unwrap_or("").into())),
                                "error" => received.lock().unwrap().events.push((ty, v["code"].as_str().unwrap_or("").into())),
                                "closed" => received.lock().unwrap().events.push((ty, v["reason"].as_str().unwrap_or("").into())),
                                _ => received.lock().unwrap().events.push((ty, String::new())),
                            }
                        }
                        o = out_rx.recv() => {
                            let Some(o) = o else { break };
                            let done = o["type"] == "leave";
                            if ws.send(Message::Text(o.to_string().into())).await.is_err() { break }
                            if done {
                                // Wait for `left` and the close.
                                while let Some(Ok(m)) = ws.next().await { if m.is_close() { break } }
                                break;
                            }
                        }
                    }
                }
                closed.store(true, Ordering::SeqCst);
            }));
        }
        // Feedback reaching the video sender: keyframe requests and receiver reports.
        let receiver_reports = Arc::new(AtomicU64::new(0));
        {
            let video = video.clone();
            let kr = keyframe_requests.clone();
            let rr = receiver_reports.clone();
            let wk = want_key.clone();
            tasks.push(tokio::spawn(async move {
                use rtc::rtcp::receiver_report::ReceiverReport;
                while let Some(ev) = video.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(pkts) = ev {
                        if fengqiao_sfu::tap::asks_for_keyframe(&pkts) {
                            kr.fetch_add(1, Ordering::SeqCst);
                            wk.store(true, Ordering::SeqCst);
                        }
                        if pkts.iter().any(|p| p.as_any().is::<ReceiverReport>()) {
                            rr.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        let ctl: Option<media::Ctl> = real.as_ref().map(|m| {
            let c = media::MediaCtl::default();
            c.audio_off.store(m.audio_off, Ordering::SeqCst);
            Arc::new(c)
        });
        if let (Some(m), Some(ctl)) = (real.clone(), ctl.clone()) {
            let stop = stop.clone();
            let want_key = want_key.clone();
            let video = video.clone();
            let audio = audio.clone();
            tasks.push(tokio::spawn(async move {
                use rtc::shared::marshal::Unmarshal;
                let (enc, mut rx) = media::Encoders::start(&m);
                let mut audio_skipped: u16 = 0;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await else { continue };
                    if e.video && want_key.swap(false, Ordering::SeqCst) {
                        enc.force_keyframe();
                        ctl.forced_keyframes.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut buf = &e.data[..];
                    let Ok(mut pkt) = rtc::rtp::Packet::unmarshal(&mut buf) else { continue };
                    if e.video {
                        if ctl.video_off.load(Ordering::SeqCst) {
                            continue;
                        }
                        pkt.header.ssrc = video_ssrc;
                        let marker = pkt.header.marker;
                        if video.write_rtp(pkt).await.is_ok() && marker {
                            ctl.video_frames.lock().unwrap().push(std::time::SystemTime::now());
                        }
                    } else {
                        if ctl.audio_off.load(Ordering::SeqCst) {
                            // Like Opus DTX (RFC 7587 §3.1.3): nothing is sent, the RTP clock
                            // runs on, sequence numbers stay continuous.
                            audio_skipped = audio_skipped.wrapping_add(1);
                            continue;
                        }
                        pkt.header.sequence_number = pkt.header.sequence_number.wrapping_sub(audio_skipped);
                        pkt.header.ssrc = audio_ssrc;
                        if audio.write_rtp(pkt).await.is_ok() {
                            ctl.audio_packets.fetch_add(1, Ordering::SeqCst);
                            ctl.first_audio.lock().unwrap().get_or_insert_with(std::time::SystemTime::now);
                        }
                    }
                }
            }));
        }
        // Media: 30 fps video, 50 pps audio.
        if real.is_none() {
            let stop = stop.clone();
            let sent = sent.clone();
            let tag: u64 = rand::random();
            tasks.push(tokio::spawn(async move {
                let mut frame: u32 = 0;
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                let mut seq_v: u16 = rand::random();
                let mut seq_a: u16 = rand::random();
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    frame = frame.wrapping_add(1);
                    // audio every 20 ms
                    if frame % 2 == 0 {
                        let mut p = vec![0xfcu8];
                        p.extend_from_slice(&tag.to_be_bytes());
                        p.extend_from_slice(&frame.to_be_bytes());
                        p.extend_from_slice(&[0u8; 60]);
                        let payload = bytes::Bytes::from(p);
                        seq_a = seq_a.wrapping_add(1);
                        let pkt = rtc::rtp::Packet {
                            header: rtc::rtp::header::Header {
                                version: 2,
                                sequence_number: seq_a,
                                timestamp: frame.wrapping_mul(480),
                                payload_type: 111,
                                ssrc: audio_ssrc,
                                ..Default::default()
                            },
                            payload: payload.clone(),
                        };
                        if audio.write_rtp(pkt).await.is_ok() {
                            sent.lock().unwrap().entry(RtpCodecKind::Audio).or_default().insert(payload);
                        }
                    }
                    // video every ~33 ms
                    if frame % 3 == 0 {
                        let key = want_key.swap(false, Ordering::SeqCst);
                        let mut p = vec![0x10u8, if key { 0x00 } else { 0x01 }];
                        p.extend_from_slice(&tag.to_be_bytes());
                        p.extend_from_slice(&frame.to_be_bytes());
                        p.extend_from_slice(&[0xabu8; 900]);
                        let payload = bytes::Bytes::from(p);
                        seq_v = seq_v.wrapping_add(1);
                        let pkt = rtc::rtp::Packet {
                            header: rtc::rtp::header::Header {
                                version: 2,
                                marker: true,
                                sequence_number: seq_v,
                                timestamp: frame.wrapping_mul(900),
                                payload_type: 96,
                                ssrc: video_ssrc,
                                ..Default::default()
                            },
                            payload: payload.clone(),
                        };
                        if video.write_rtp(pkt).await.is_ok() {
                            sent.lock().unwrap().entry(RtpCodecKind::Video).or_default().insert(payload);
                        }
                    }
                }
            }));
        }
        Client {
            pid: pid.to_owned(),
            pc,
            received,
            sent,
            keyframe_requests,
            receiver_reports,
            out: out_tx,
            stop,
            connected,
            tasks,
            last_renegotiation,
            joined,
            ws_closed,
            media: ctl,
        }
    }

    /// Whether any server message so far satisfies `pred`.
    pub fn saw(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.received.lock().unwrap().msgs.iter().any(pred)
    }

    /// Server messages of type `ty` so far.
    pub fn msgs_of(&self, ty: &str) -> Vec<Value> {
        self.received.lock().unwrap().msgs.iter().filter(|m| m["type"] == ty).cloned().collect()
    }

    /// Every media packet this client has received, from anyone.
    pub fn total_received(&self) -> usize {
        self.received.lock().unwrap().payloads.values().map(Vec::len).sum()
    }

    /// Packets received from `from` of `kind`.
    pub fn count(&self, from: &str, kind: RtpCodecKind) -> usize {
        self.received.lock().unwrap().payloads.get(&(from.to_owned(), kind)).map_or(0, |v| v.len())
    }

    /// Drops the signaling WebSocket without `leave` (as a lost network does); the
    /// peer connection and the media it sends keep going.
    pub fn drop_signaling(&mut self) {
        self.tasks[0].abort();
    }

    /// Stops sending media and closes the peer connection, without any signaling.
    pub async fn vanish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.pc.close().await;
    }

    pub async fn send(&self, v: Value) {
        let _ = self.out.send(v).await;
    }

    pub async fn leave(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.out.send(json!({"type": "leave"})).await;
        // The signaling task ends after the server closes.
        let sig = self.tasks.remove(0);
        let _ = tokio::time::timeout(Duration::from_secs(5), sig).await;
        let _ = self.pc.close().await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Waits for `cond`, polling every 50 ms, up to `within`.
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    wait_until(what, within, || std::future::ready(cond())).await
}

/// [`wait_for`] with a condition that has to wait itself (a scrape, a query).
pub async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut cond: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        poll.tick().await;
    }
}
