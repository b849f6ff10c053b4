//! ICE-TCP (issue 5, RFC 6544 / RFC 4571): with `media.tcp_port` set, the SFU's
//! answer carries a passive TCP host candidate, and a webrtc-rs client that has no
//! UDP socket at all and accepts only TCP candidates (network type tcp4) exchanges
//! audio and video with a UDP participant through it, byte-identical.

mod common;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use fengqiao_bench::client::{client_engine, local_track, opus, vp8};
use fengqiao_sfu::tap::RtcpTap;
use futures_util::{SinkExt, StreamExt};
use rtc::ice::network_type::NetworkType;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

const AUDIO: RtpCodecKind = RtpCodecKind::Audio;
const VIDEO: RtpCodecKind = RtpCodecKind::Video;

type Got = Arc<Mutex<HashMap<(String, RtpCodecKind), Vec<Bytes>>>>;

struct Handler {
    got: Got,
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
        let got = self.got.clone();
        let (owner, kind) = (track.stream_id().await.to_string(), track.kind().await);
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => got.lock().unwrap().entry((owner.clone(), kind)).or_default().push(p.payload),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// The `a=candidate:` lines of an SDP with `typ host tcptype passive`.
fn passive_tcp_candidates(sdp: &str) -> Vec<String> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:") && l.contains(" tcp ") && l.contains("tcptype passive"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_only_client_exchanges_media_through_ice_tcp() {
    let (srv, _dir) = start_server_with(|c| c.media.tcp_port = Some(0)).await;
    let room = "tcp-room";
    let alice = Client::join(&srv, "alice", token(&srv, room, "alice", "甲")).await;

    // Tina: TCP only. No UDP socket, and only tcp4 candidates count.
    let mut ws = ws_connect(&srv).await;
    send_json(&mut ws, json!({"type": "join", "v": 1, "token": token(&srv, room, "tina", "丁")})).await;
    let joined = recv_json(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    let (me, registry) = client_engine(RtcpTap::new(|_| true)).unwrap();
    let got: Got = Default::default();
    let (gtx, mut grx) = mpsc::channel(1);
    let pc: Arc<dyn PeerConnection> = Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(me)
            .with_interceptor_registry(registry)
            .with_setting_engine(SettingEngineBuilder::new().with_network_types(vec![NetworkType::Tcp4]).build())
            .with_handler(Arc::new(Handler { got: got.clone(), gathered: gtx }))
            .with_tcp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("TCP-only client"),
    );
    let (vssrc, assrc) = (rand::random::<u32>() | 1, rand::random::<u32>() | 1);
    let video = local_track("tina", VIDEO, vp8(), vssrc);
    let audio = local_track("tina", AUDIO, opus(), assrc);
    pc.add_track(video.clone() as Arc<dyn TrackLocal>).await.unwrap();
    pc.add_track(audio.clone() as Arc<dyn TrackLocal>).await.unwrap();
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), grx.recv()).await;
    let offer_sdp = pc.local_description().await.unwrap().sdp;
    assert!(
        !offer_sdp.lines().any(|l| l.starts_with("a=candidate:") && l.contains(" udp ")),
        "the TCP-only client offered a UDP candidate:\n{offer_sdp}"
    );
    send_json(&mut ws, json!({"type": "offer", "sdp": offer_sdp})).await;
    let answer = loop {
        let m = recv_json(&mut ws, Duration::from_secs(5)).await;
        if m["type"] == "answer" {
            break m;
        }
        assert_ne!(m["type"], "error", "{m}");
    };
    let answer_sdp = answer["sdp"].as_str().unwrap().to_owned();
    let tcp_cands = passive_tcp_candidates(&answer_sdp);
    assert!(!tcp_cands.is_empty(), "the SFU's answer has no passive TCP candidate:\n{answer_sdp}");
    eprintln!("SFU candidates: {tcp_cands:?}");
    pc.set_remote_description(RTCSessionDescription::answer(answer_sdp).unwrap()).await.unwrap();
    // webrtc-rs dials a remote passive TCP candidate when it is added as a candidate.
    for c in &tcp_cands {
        pc.add_ice_candidate(RTCIceCandidateInit {
            candidate: c.clone(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            ..Default::default()
        })
        .await
        .expect("add the SFU's TCP candidate");
    }

    // Signaling: answer the server's renegotiation offers.
    let sig = {
        let pc = pc.clone();
        tokio::spawn(async move {
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
            }
        })
    };
    // Media: VP8 (a keyframe when asked) and Opus-sized audio, every payload unique.
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<HashSet<Bytes>>> = Default::default();
    let want_key = Arc::new(AtomicBool::new(true));
    let fb = {
        let (video, wk) = (video.clone(), want_key.clone());
        tokio::spawn(async move {
            while let Some(ev) = video.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(p) = ev {
                    if fengqiao_sfu::tap::asks_for_keyframe(&p) {
                        wk.store(true, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let media = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let (mut n, mut sv, mut sa): (u32, u16, u16) = (0, rand::random(), rand::random());
            while !stop.load(Ordering::SeqCst) {
                tick.tick().await;
                n += 1;
                for (kind, track, ssrc, pt) in [(AUDIO, &audio, assrc, 111u8), (VIDEO, &video, vssrc, 96u8)] {
                    let mut p = if kind == VIDEO {
                        vec![0x10, if want_key.swap(false, Ordering::SeqCst) { 0x00 } else { 0x01 }]
                    } else {
                        vec![0xfc]
                    };
                    p.extend_from_slice(b"tina");
                    p.extend_from_slice(&n.to_be_bytes());
                    p.extend_from_slice(&[0x5a; 200]);
                    let payload = Bytes::from(p);
                    let seq = if kind == VIDEO { &mut sv } else { &mut sa };
                    *seq = seq.wrapping_add(1);
                    let pkt = rtc::rtp::Packet {
                        header: rtc::rtp::header::Header {
                            version: 2,
                            marker: kind == VIDEO,
                            sequence_number: *seq,
                            timestamp: n.wrapping_mul(if kind == VIDEO { 1800 } else { 960 }),
                            payload_type: pt,
                            ssrc,
                            ..Default::default()
                        },
                        payload: payload.clone(),
                    };
                    if track.write_rtp(pkt).await.is_ok() {
                        sent.lock().unwrap().insert(payload);
                    }
                }
            }
        })
    };

    let count = |from: &str, kind| got.lock().unwrap().get(&(from.to_owned(), kind)).map_or(0, Vec::len);
    wait_for("media both ways between the TCP-only client and the UDP client", Duration::from_secs(20), || {
        count("alice", VIDEO) > 20 && count("alice", AUDIO) > 20 && alice.count("tina", VIDEO) > 20 && alice.count("tina", AUDIO) > 20
    })
    .await;
    // Byte-identical both ways.
    {
        let g = got.lock().unwrap();
        let alice_sent = alice.sent.lock().unwrap();
        for kind in [AUDIO, VIDEO] {
            for p in &g[&("alice".to_owned(), kind)] {
                assert!(alice_sent[&kind].contains(p), "tina got a {kind} payload alice never sent");
            }
        }
        let tina_sent = sent.lock().unwrap();
        let r = alice.received.lock().unwrap();
        for kind in [AUDIO, VIDEO] {
            for p in &r.payloads[&("tina".to_owned(), kind)] {
                assert!(tina_sent.contains(p), "alice got a {kind} payload tina never sent");
            }
        }
        eprintln!(
            "over ICE-TCP: tina received {} video / {} audio from alice; alice received {} video / {} audio from tina",
            g[&("alice".to_owned(), VIDEO)].len(),
            g[&("alice".to_owned(), AUDIO)].len(),
            r.payloads[&("tina".to_owned(), VIDEO)].len(),
            r.payloads[&("tina".to_owned(), AUDIO)].len()
        );
    }
    stop.store(true, Ordering::SeqCst);
    let _ = media.await;
    let _ = pc.close().await;
    sig.abort();
    fb.abort();
    alice.leave().await;
    srv.shutdown().await;
}
