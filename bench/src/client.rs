//! webrtc-rs peer connections for the bench: a [`PcFactory`] that builds client
//! peer connections bound to 127.0.0.1 whose received tracks feed a [`Rx`], and
//! [`Publisher`] tracks driven by a bounded send loop.

use crate::media::{self, KIND_AUDIO, KIND_VIDEO};
use async_trait::async_trait;
use fengqiao_sfu::tap::{RtcpTap, TAP_SLOT};
use rtc::interceptor::{Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability,
    RtpCodecKind,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

/// Whether packets are counted now (the measurement window), shared by all clients.
#[derive(Default)]
pub struct Window {
    pub measuring: AtomicBool,
}

#[derive(Default, Clone, Copy)]
pub struct StreamRx {
    pub first: u64,
    pub last: u64,
    pub count: u64,
}

/// What one client received.
#[derive(Default)]
pub struct RxInner {
    /// Added latency (µs) of every packet received in the window.
    pub lat_us: Vec<u32>,
    /// (publisher, kind) → sequence range and count within the window.
    pub streams: HashMap<(u32, u8), StreamRx>,
    /// Publishers (index) seen at all, window or not.
    pub seen: HashMap<(u32, u8), u64>,
    pub foreign: u64,
    /// RTP packets and bytes (payload + 12-byte header) received in the window,
    /// bench or not: the server-neutral count of forwarded packets.
    pub win_pkts: u64,
    pub win_bytes: u64,
    /// When the first remote RTP packet arrived ([`media::now_us`]), if any.
    pub first_us: Option<u64>,
}

#[derive(Default)]
pub struct Rx {
    pub inner: Mutex<RxInner>,
}

impl Rx {
    fn on_packet(&self, payload: &[u8], window: &Window) {
        let now = media::now_us();
        let mut r = self.inner.lock().unwrap();
        r.first_us.get_or_insert(now);
        let measuring = window.measuring.load(Ordering::Relaxed);
        if measuring {
            r.win_pkts += 1;
            r.win_bytes += payload.len() as u64 + 12;
        }
        let Some(h) = media::parse_header(payload) else {
            r.foreign += 1;
            return;
        };
        *r.seen.entry((h.publisher, h.kind)).or_default() += 1;
        if !measuring {
            return;
        }
        r.lat_us.push(now.saturating_sub(h.sent_us).min(u32::MAX as u64) as u32);
        let s = r.streams.entry((h.publisher, h.kind)).or_insert(StreamRx { first: h.seq, last: h.seq, count: 0 });
        s.first = s.first.min(h.seq);
        s.last = s.last.max(h.seq);
        s.count += 1;
    }
}

struct Handler {
    rx: Arc<Rx>,
    window: Arc<Window>,
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
        let rx = self.rx.clone();
        let window = self.window.clone();
        tokio::spawn(async move {
            while let Some(ev) = track.poll().await {
                match ev {
                    TrackRemoteEvent::OnRtpPacket(p) => rx.on_packet(&p.payload, &window),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

pub fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.into(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![
            RTCPFeedback { typ: "nack".into(), parameter: String::new() },
            RTCPFeedback { typ: "nack".into(), parameter: "pli".into() },
            RTCPFeedback { typ: "ccm".into(), parameter: "fir".into() },
        ],
    }
}

pub fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

/// One built peer connection and the signals a signaling adapter needs.
pub struct Pc {
    pub pc: Arc<dyn PeerConnection>,
    pub gathered: mpsc::Receiver<()>,
    pub connected: Arc<AtomicBool>,
}

/// Builds client peer connections (VP8 PT 96, Opus PT 111, default interceptors),
/// bound to `bind` only (an IP: 127.0.0.1, or the namespace address), whose
/// received tracks feed `rx`.
#[derive(Clone)]
pub struct PcFactory {
    pub rx: Arc<Rx>,
    pub window: Arc<Window>,
    pub bind: String,
}

/// The media side of a webrtc-rs client of our SFU: VP8 on PT 96 (nack, pli, fir),
/// Opus on PT 111, the RFC 6464 audio-level extension, `rtc`'s default
/// interceptors, and `tap` at the application end of the chain to choose which
/// inbound RTCP the client sees. Shared by `loadgen` and the end-to-end tests.
///
/// # Errors
/// Whatever `rtc` reports for the registration (a bug, not input).
pub fn client_engine(tap: RtcpTap) -> Result<(MediaEngine, Registry), rtc::shared::error::Error> {
    let mut me = MediaEngine::default();
    me.register_codec(RTCRtpCodecParameters { rtp_codec: opus(), payload_type: 111 }, RtpCodecKind::Audio)?;
    me.register_codec(RTCRtpCodecParameters { rtp_codec: vp8(), payload_type: 96 }, RtpCodecKind::Video)?;
    me.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: fengqiao_sfu::sdp::AUDIO_LEVEL_URI.into() },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut me)?.with(Slot::from(TAP_SLOT), tap);
    Ok((me, registry))
}

impl PcFactory {
    pub async fn make(&self) -> anyhow::Result<Pc> {
        let (me, registry) = client_engine(RtcpTap::default())?;
        let (gtx, grx) = mpsc::channel(1);
        let connected = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(Handler {
            rx: self.rx.clone(),
            window: self.window.clone(),
            gathered: gtx,
            connected: connected.clone(),
        });
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_media_engine(me)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(vec![format!("{}:0", self.bind)])
                .build()
                .await?,
        );
        Ok(Pc { pc, gathered: grx, connected })
    }
}

/// A local track of `kind` with one encoding (`codec`, `ssrc`), in the MediaStream
/// named `pid` (the SFU names remote streams by participant id the same way).
pub fn local_track(pid: &str, kind: RtpCodecKind, codec: RTCRtpCodec, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        pid.to_owned(),
        format!("{pid}-{kind}"),
        format!("{pid}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    )))
}

/// A participant's two local tracks. Receive-only participants add them too (our
/// signaling expects a sendrecv offer) but never start [`Publisher::run`].
pub struct Publisher {
    pub index: u32,
    pub video: Arc<TrackLocalStaticRTP>,
    pub audio: Arc<TrackLocalStaticRTP>,
    video_ssrc: u32,
    audio_ssrc: u32,
    /// Packets written (video + audio), all time.
    pub sent: Arc<AtomicU64>,
    pub keyframe_requests: Arc<AtomicU64>,
}

impl Publisher {
    pub fn new(pid: &str, index: u32) -> Self {
        let (video_ssrc, audio_ssrc) = (rand::random::<u32>() | 1, rand::random::<u32>() | 1);
        Self {
            index,
            video: local_track(pid, RtpCodecKind::Video, vp8(), video_ssrc),
            audio: local_track(pid, RtpCodecKind::Audio, opus(), audio_ssrc),
            video_ssrc,
            audio_ssrc,
            sent: Arc::new(AtomicU64::new(0)),
            keyframe_requests: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn attach(&self, pc: &Arc<dyn PeerConnection>) -> anyhow::Result<()> {
        pc.add_track(self.video.clone() as Arc<dyn TrackLocal>).await?;
        pc.add_track(self.audio.clone() as Arc<dyn TrackLocal>).await?;
        Ok(())
    }

    /// Sends media until `stop` or until `max` has passed (whichever first): a
    /// frame every 33.3 ms (keyframe every 2 s, or at the next frame after a
    /// PLI/FIR, at most one extra per 500 ms), audio every 20 ms.
    pub fn run(&self, stop: Arc<AtomicBool>, max: Duration) -> Vec<tokio::task::JoinHandle<()>> {
        let want_key = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        {
            let video = self.video.clone();
            let (kr, wk) = (self.keyframe_requests.clone(), want_key.clone());
            tasks.push(tokio::spawn(async move {
                while let Some(ev) = video.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(pkts) = ev {
                        if fengqiao_sfu::tap::asks_for_keyframe(&pkts) {
                            kr.fetch_add(1, Ordering::Relaxed);
                            wk.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }));
        }
        let (video, audio, vssrc, assrc, idx, sent) =
            (self.video.clone(), self.audio.clone(), self.video_ssrc, self.audio_ssrc, self.index, self.sent.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let deadline = start + max;
            let frame_dt = Duration::from_secs(1) / media::FPS;
            let (mut next_v, mut next_a) = (start, start);
            let (mut frame, mut vseq, mut aseq) = (0u32, 0u64, 0u64);
            let (mut rtp_v, mut rtp_a): (u16, u16) = (rand::random(), rand::random());
            let mut last_forced = start;
            let delta = media::delta_frame_bytes();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let next = next_v.min(next_a);
                tokio::time::sleep_until(next.into()).await;
                let now = Instant::now();
                if now >= next_a {
                    next_a += media::AUDIO_PTIME;
                    let mut p = media::audio_packet();
                    media::stamp(&mut p, idx, KIND_AUDIO, aseq);
                    aseq += 1;
                    rtp_a = rtp_a.wrapping_add(1);
                    let pkt = rtc::rtp::Packet {
                        header: rtc::rtp::header::Header {
                            version: 2,
                            sequence_number: rtp_a,
                            timestamp: (aseq as u32).wrapping_mul(960),
                            payload_type: 111,
                            ssrc: assrc,
                            ..Default::default()
                        },
                        payload: p.into(),
                    };
                    if audio.write_rtp(pkt).await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if now >= next_v {
                    next_v += frame_dt;
                    let forced = want_key.swap(false, Ordering::Relaxed) && now - last_forced > Duration::from_millis(500);
                    if forced {
                        last_forced = now;
                    }
                    let key = frame % media::KEYFRAME_EVERY == 0 || forced;
                    let pkts = media::video_frame(if key { media::KEYFRAME_BYTES } else { delta }, key);
                    let n = pkts.len();
                    for (i, mut p) in pkts.into_iter().enumerate() {
                        media::stamp(&mut p, idx, KIND_VIDEO, vseq);
                        vseq += 1;
                        rtp_v = rtp_v.wrapping_add(1);
                        let pkt = rtc::rtp::Packet {
                            header: rtc::rtp::header::Header {
                                version: 2,
                                marker: i + 1 == n,
                                sequence_number: rtp_v,
                                timestamp: frame.wrapping_mul(3000),
                                payload_type: 96,
                                ssrc: vssrc,
                                ..Default::default()
                            },
                            payload: p.into(),
                        };
                        if video.write_rtp(pkt).await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    frame = frame.wrapping_add(1);
                }
            }
        }));
        tasks
    }
}
