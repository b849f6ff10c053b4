//! H.264 end to end (issue 2): a webrtc-rs client publishes real H.264 (the
//! x264-encoded fixture `tests/fixtures/h264/ball-160x120-30fps.h264`, Annex B,
//! Constrained Baseline, one IDR then P-frames, two slices per frame), packetised
//! by `rtc`'s RFC 6184 payloader (STAP-A for SPS+PPS, single NAL units, FU-A).
//! The SFU negotiates H.264 because the client offers it first; subscribers get
//! byte-identical payloads; a late joiner's first video packet starts an IDR that
//! the publisher sent because the SFU asked for a keyframe. The publisher never
//! sends an IDR unasked: it restarts the fixture at its IDR on PLI/FIR only.
//!
//! Fixture made with (GStreamer 1.22, x264):
//! `gst-launch-1.0 videotestsrc pattern=ball num-buffers=180 ! video/x-raw,width=160,height=120,framerate=30/1
//!  ! x264enc key-int-max=100000 bframes=0 speed-preset=ultrafast tune=zerolatency bitrate=64 byte-stream=true aud=true
//!  ! video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au ! filesink location=…`

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use fengqiao::server::Running;
use fengqiao_bench::client::{local_track, opus};
use fengqiao_sfu::keyframe::{is_keyframe_start, VideoCodec};
use fengqiao_sfu::tap::{RtcpTap, TAP_SLOT};
use futures_util::{SinkExt, StreamExt};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_H264, MIME_TYPE_VP8};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

const FIXTURE: &[u8] = include_bytes!("fixtures/h264/ball-160x120-30fps.h264");
const H264_PT: u8 = 102;
/// Small enough that the fixture's IDR slices are sent as FU-A fragments.
const MTU: usize = 400;

fn feedback() -> Vec<RTCPFeedback> {
    [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
        .iter()
        .map(|(t, p)| RTCPFeedback { typ: (*t).into(), parameter: (*p).into() })
        .collect()
}

/// H.264 Constrained Baseline, packetization-mode 1, as browsers offer it.
fn h264() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f".into(),
        rtcp_feedback: feedback(),
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec { mime_type: MIME_TYPE_VP8.into(), clock_rate: 90000, channels: 0, sdp_fmtp_line: String::new(), rtcp_feedback: feedback() }
}

/// H.264 first (preferred), VP8 second, Opus; every inbound RTCP reaches the client.
fn engine() -> (MediaEngine, Registry) {
    let mut me = MediaEngine::default();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio).unwrap();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: h264(), payload_type: H264_PT }, RtpCodecKind::Video).unwrap();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: 96 }, RtpCodecKind::Video).unwrap();
    let reg = register_default_interceptors(Registry::new(), &mut me)
        .unwrap()
        .with(Slot::from(TAP_SLOT), RtcpTap::new(|_| true));
    (me, reg)
}

/// The fixture's access units (Annex B, split at access unit delimiters).
fn access_units() -> Vec<Bytes> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 4 <= FIXTURE.len() {
        if FIXTURE[i..i + 3] == [0, 0, 1] && FIXTURE[i + 3] & 0x1f == 9 {
            // Include a fourth leading zero of a 4-byte start code.
            starts.push(if i > 0 && FIXTURE[i - 1] == 0 { i - 1 } else { i });
            i += 4;
        } else {
            i += 1;
        }
    }
    starts.push(FIXTURE.len());
    starts.windows(2).map(|w| Bytes::copy_from_slice(&FIXTURE[w[0]..w[1]])).collect()
}

#[derive(Default)]
struct Rx {
    /// Video payloads from each publisher, in arrival order, with arrival time.
    video: Vec<(String, Instant, Bytes)>,
    /// Video codec MIME type each remote video track was negotiated with.
    codecs: Vec<String>,
}

struct Handler {
    rx: Arc<Mutex<Rx>>,
    gathered: mpsc::Sender<()>,
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await != RtpCodecKind::Video {
            return;
        }
        let rx = self.rx.clone();
        let owner = track.stream_id().await.to_string();
        tokio::spawn(async move {
            let mut codec_seen = false;
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => {
                        if !codec_seen {
                            codec_seen = true;
                            if let Some(c) = track.codec(p.header.ssrc).await {
                                rx.lock().unwrap().codecs.push(c.mime_type);
                            }
                        }
                        rx.lock().unwrap().video.push((owner.clone(), Instant::now(), p.payload));
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// A participant offering H.264 first. With `publish`, it sends the fixture in a
/// loop at 30 fps and restarts at the IDR whenever a PLI/FIR arrives.
struct H264Client {
    pc: Arc<dyn PeerConnection>,
    rx: Arc<Mutex<Rx>>,
    /// Every video payload sent.
    sent: Arc<Mutex<HashSet<Bytes>>>,
    keyframe_requests: Arc<AtomicU64>,
    /// When the last server offer was answered (a new subscription).
    last_renegotiation: Arc<Mutex<Option<Instant>>>,
    /// The SFU's answer to this client's offer.
    answer_sdp: String,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl H264Client {
    async fn join(server: &Running, pid: &str, room: &str) -> Self {
        let mut ws = ws_connect(server).await;
        send_json(&mut ws, json!({"type": "join", "v": 1, "token": token(server, room, pid, pid)})).await;
        let joined = recv_json(&mut ws, Duration::from_secs(5)).await;
        assert_eq!(joined["type"], "joined", "{joined}");
        let (me, registry) = engine();
        let rx = Arc::new(Mutex::new(Rx::default()));
        let (gtx, mut grx) = mpsc::channel(1);
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(me)
                .with_interceptor_registry(registry)
                .with_handler(Arc::new(Handler { rx: rx.clone(), gathered: gtx }))
                .with_udp_addrs(vec!["127.0.0.1:0"])
                .build()
                .await
                .expect("client pc"),
        );
        let video_ssrc = rand::random::<u32>() | 1;
        let video = local_track(pid, RtpCodecKind::Video, h264(), video_ssrc);
        let audio = local_track(pid, RtpCodecKind::Audio, opus(), rand::random::<u32>() | 1);
        pc.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
        pc.add_track(audio as Arc<dyn TrackLocal>).await.unwrap();
        let offer = pc.create_offer(None).await.unwrap();
        pc.set_local_description(offer).await.unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(5), grx.recv()).await;
        let sdp = pc.local_description().await.unwrap().sdp;
        send_json(&mut ws, json!({"type": "offer", "sdp": sdp})).await;
        let answer = loop {
            let m = recv_json(&mut ws, Duration::from_secs(5)).await;
            if m["type"] == "answer" {
                break m;
            }
            assert_ne!(m["type"], "error", "{m}");
        };
        let answer_sdp = answer["sdp"].as_str().unwrap().to_owned();
        pc.set_remote_description(RTCSessionDescription::answer(answer_sdp.clone()).unwrap()).await.unwrap();

        let stop = Arc::new(AtomicBool::new(false));
        let last_renegotiation = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        {
            // Signaling: answer every server offer.
            let (pc, last) = (pc.clone(), last_renegotiation.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    let Message::Text(t) = m else { continue };
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["type"] != "offer" {
                        continue;
                    }
                    let o = RTCSessionDescription::offer(v["sdp"].as_str().unwrap().to_owned()).unwrap();
                    pc.set_remote_description(o).await.unwrap();
                    let a = pc.create_answer(None).await.unwrap();
                    pc.set_local_description(a).await.unwrap();
                    let sdp = pc.local_description().await.unwrap().sdp;
                    if ws.send(Message::Text(json!({"type": "answer", "sdp": sdp}).to_string().into())).await.is_err() {
                        break;
                    }
                    *last.lock().unwrap() = Some(Instant::now());
                }
            }));
        }
        let keyframe_requests = Arc::new(AtomicU64::new(0));
        let restart = Arc::new(AtomicBool::new(true));
        {
            let (video, kr, restart) = (video.clone(), keyframe_requests.clone(), restart.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = video.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(pkts) = ev {
                        if fengqiao_sfu::tap::asks_for_keyframe(&pkts) {
                            kr.fetch_add(1, Ordering::SeqCst);
                            restart.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        let sent = Arc::new(Mutex::new(HashSet::new()));
        {
            let (stop, sent) = (stop.clone(), sent.clone());
            tasks.push(tokio::spawn(async move {
                let aus = access_units();
                assert!(aus.len() >= 100, "fixture has {} access units", aus.len());
                let mut payloader = rtc::rtp::codec::h264::H264Payloader::default();
                let mut tick = tokio::time::interval(Duration::from_millis(33));
                let (mut seq, mut frame, mut next): (u16, u32, usize) = (rand::random(), 0, 0);
                while !stop.load(Ordering::SeqCst) {
                    tick.tick().await;
                    // Restart at the IDR only when asked (or at the end of the fixture).
                    if restart.swap(false, Ordering::SeqCst) || next == aus.len() {
                        next = 0;
                        payloader = Default::default();
                    }
                    let payloads = payloader.payload(MTU, &aus[next]).expect("payloader");
                    next += 1;
                    frame = frame.wrapping_add(1);
                    let n = payloads.len();
                    for (i, p) in payloads.into_iter().enumerate() {
                        seq = seq.wrapping_add(1);
                        let pkt = rtc::rtp::Packet {
                            header: rtc::rtp::header::Header {
                                version: 2,
                                marker: i + 1 == n,
                                sequence_number: seq,
                                timestamp: frame.wrapping_mul(3000),
                                payload_type: H264_PT,
                                ssrc: video_ssrc,
                                ..Default::default()
                            },
                            payload: p.clone(),
                        };
                        if video.write_rtp(pkt).await.is_ok() {
                            sent.lock().unwrap().insert(p);
                        }
                    }
                }
            }));
        }
        Self { pc, rx, sent, keyframe_requests, last_renegotiation, answer_sdp, stop, tasks }
    }

    fn video_from(&self, pid: &str) -> Vec<(Instant, Bytes)> {
        self.rx.lock().unwrap().video.iter().filter(|(o, _, _)| o == pid).map(|(_, t, p)| (*t, p.clone())).collect()
    }

    async fn close(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.pc.close().await;
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The first payload type of the answer's video m-line, and its rtpmap.
fn first_video_codec(sdp: &str) -> String {
    let mline = sdp.lines().find(|l| l.starts_with("m=video")).expect("an m=video line");
    let pt = mline.split_whitespace().nth(3).expect("a payload type");
    let prefix = format!("a=rtpmap:{pt} ");
    sdp.lines().find_map(|l| l.strip_prefix(&prefix)).expect("its rtpmap").to_owned()
}

/// H.264 keyframe start as the SFU sees it: STAP-A with SPS, SPS, IDR, or an FU-A
/// start of an IDR.
fn h264_key(p: &[u8]) -> bool {
    is_keyframe_start(VideoCodec::H264, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_negotiated_forwarded_identically_and_late_joiners_get_an_idr() {
    let (srv, _dir) = start_server(16).await;
    let room = "h264-room";
    let hana = H264Client::join(&srv, "hana", room).await;
    let ivan = H264Client::join(&srv, "ivan", room).await;

    // Negotiated H.264: first in the SFU's answer to the publisher.
    let first = first_video_codec(&hana.answer_sdp);
    assert!(first.to_ascii_uppercase().starts_with("H264/90000"), "the SFU's answer prefers {first}, not H264");

    wait_for("ivan to receive 150 H.264 packets from hana", Duration::from_secs(20), || {
        ivan.video_from("hana").len() > 150
    })
    .await;
    {
        let got = ivan.video_from("hana");
        let sent = hana.sent.lock().unwrap();
        for (k, (_, p)) in got.iter().enumerate() {
            assert!(sent.contains(p), "ivan's packet #{k} from hana ({} bytes) was never sent byte-identical", p.len());
        }
        assert!(h264_key(&got[0].1), "ivan's first H.264 packet is not a keyframe start: {:02x?}", &got[0].1[..2]);
        // Every NAL unit kind the payloader makes went through: STAP-A, single NAL, FU-A.
        let types: HashSet<u8> = got.iter().map(|(_, p)| p[0] & 0x1f).collect();
        assert!(types.contains(&24) && types.contains(&1) && types.contains(&28), "NAL types seen: {types:?}");
        eprintln!("ivan: {} H.264 packets from hana, byte-identical; NAL types {types:?}", got.len());
        let codecs = ivan.rx.lock().unwrap().codecs.clone();
        assert!(codecs.iter().all(|c| c.eq_ignore_ascii_case(MIME_TYPE_H264)), "ivan's video track codecs: {codecs:?}");
    }
    // Let the publisher move well past its IDR (P-frames only from here on).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // A late joiner: its first video packet starts an IDR sent on the SFU's request.
    let pli_before = hana.keyframe_requests.load(Ordering::SeqCst);
    let jun = H264Client::join(&srv, "jun", room).await;
    wait_for("jun to receive H.264 from hana and ivan", Duration::from_secs(15), || {
        jun.video_from("hana").len() > 20 && jun.video_from("ivan").len() > 20
    })
    .await;
    assert!(
        hana.keyframe_requests.load(Ordering::SeqCst) > pli_before,
        "hana got no keyframe request for the late joiner"
    );
    let subscribed = jun.last_renegotiation.lock().unwrap().expect("jun answered a server offer");
    for from in ["hana", "ivan"] {
        let got = jun.video_from(from);
        let (t, first) = &got[0];
        assert!(h264_key(first), "jun's first H.264 packet from {from} is not a keyframe start: {:02x?}", &first[..2]);
        let lag = t.saturating_duration_since(subscribed);
        eprintln!("late joiner: first H.264 keyframe from {from} {lag:?} after subscribing");
        assert!(lag < Duration::from_secs(1), "the keyframe from {from} took {lag:?}");
        let publisher = if from == "hana" { &hana } else { &ivan };
        let sent = publisher.sent.lock().unwrap();
        assert!(got.iter().all(|(_, p)| sent.contains(p)), "jun got a payload from {from} that was never sent");
    }
    jun.close().await;
    ivan.close().await;
    hana.close().await;
    srv.shutdown().await;
}
