//! The media task: one UDP socket, every Transport, every Room.
//!
//! Single owner, no locks: the task owns all peer connections (`rtc`'s sans-IO
//! `RTCPeerConnection`), feeds them datagrams from the shared socket, drains what
//! they want to send, and moves RTP from Producers to Consumers in between.
//!
//! One RTP packet's path:
//! 1. `recv_from` on the shared socket → [`demux`](crate::demux) picks the Transport
//!    (STUN by ufrag, the rest by the remote address bound after a binding success);
//! 2. `handle_read` → `rtc` decrypts SRTP, runs interceptors (NACK generator,
//!    receiver reports) and hands back `RTCMessage::RtpPacket(track, pkt)`;
//! 3. the Producer for that track notes keyframes and audio level;
//! 4. for each Consumer: a new header (the Consumer's SSRC, payload type and
//!    sequence numbers; extensions stripped) around the *same* `Bytes` payload
//!    (no copy), `write_rtp` on the subscriber's Transport;
//! 5. each touched Transport is drained: SRTP-encrypted datagrams go out with
//!    `try_send_to`, which never blocks the task.

use crate::demux::{self, DatagramKind};
use crate::keyframe::{is_keyframe_start, VideoCodec};
use crate::sdp;
use crate::stats::SfuStats;
use crate::{
    Command, ConsumerId, Control, EventSink, JoinReply, JoinRequest, MediaConfig, ParticipantEvent,
    ParticipantId, ParticipantInfo, ProducerId, RemoteCandidate, RoomId, SessionEvent, SfuError, TransportId,
};
use bytes::BytesMut;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::{RTCIceConnectionState, RTCPeerConnectionState, RTCSignalingState};
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCIceCandidate, RTCIceCandidateInit,
};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtcp::payload_feedbacks::full_intra_request::{FirEntry, FullIntraRequest};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, warn};

/// Keyframe requests to one Producer are at least this far apart.
const KEYFRAME_DEBOUNCE: Duration = Duration::from_millis(500);
/// Room housekeeping period: keyframe retries, active speaker.
const TICK: Duration = Duration::from_millis(100);
/// Active speaker is re-evaluated this often.
const SPEAKER_PERIOD: Duration = Duration::from_millis(500);
/// Audio quieter than this (−dBov, RFC 6464) counts as silence.
const SPEAKING_THRESHOLD: f32 = 60.0;
/// Datagrams read per wake-up before other work gets a turn.
const RECV_BATCH: usize = 64;
/// Largest datagram accepted.
const MAX_DATAGRAM: usize = 1500;
/// How long our own STUN checks are remembered for routing their responses.
const STUN_TRANSACTION_TTL: Duration = Duration::from_secs(40);
/// Socket buffer sizes asked of the OS, bytes.
const SOCKET_BUFFER: usize = 4 << 20;
/// Longest side room name, characters.
const MAX_SIDE_ROOM: usize = 64;
/// Longest removal reason kept, characters.
const MAX_REASON: usize = 500;
/// The role that may use session controls and skips the waiting room.
const MEDIATOR: &str = "mediator";

struct Consumer {
    id: ConsumerId,
    transport: TransportId,
    sender: RTCRtpSenderId,
    track_id: String,
    ssrc: u32,
    /// Negotiated outgoing payload type; `None` until the subscriber's answer is in,
    /// or when the subscriber cannot take the codec.
    pt: Option<u8>,
    /// Video only: hold back packets until a keyframe starts.
    needs_keyframe: bool,
    /// Sequence number rewriting: out = in - delta.
    seq_delta: u16,
    last_out_seq: Option<u16>,
    /// Packets older than this (in sequence order) are not forwarded after a resume.
    resume_seq: Option<u16>,
}

struct Producer {
    /// `participant{..}` › `track{producer, kind}`.
    span: tracing::Span,
    id: ProducerId,
    room: RoomId,
    owner: TransportId,
    participant: ParticipantId,
    receiver: RTCRtpReceiverId,
    track_id: String,
    kind: RtpCodecKind,
    media_ssrc: u32,
    codec: Option<RTCRtpCodec>,
    video: Option<VideoCodec>,
    audio_level_ext: Option<u8>,
    /// Smoothed audio level in −dBov (127 = silence).
    level: f32,
    last_keyframe_request: Option<Instant>,
    keyframe_request_deferred: bool,
    /// The mediator stopped forwarding this track (server-side mute).
    muted: bool,
    consumers: Vec<Consumer>,
}

struct Transport {
    /// `room{id}` › `participant{id}`: entered whenever this Transport is worked on.
    span: tracing::Span,
    room: RoomId,
    participant: ParticipantId,
    pc: RTCPeerConnection,
    ufrag: String,
    events: mpsc::Sender<ParticipantEvent>,
    addrs: Vec<SocketAddr>,
    /// Incoming track id → Producer.
    producers: HashMap<String, ProducerId>,
    /// Outgoing track id → (Producer, Consumer).
    consumers: HashMap<String, (ProducerId, ConsumerId)>,
    connected: bool,
    /// The client's first offer has been answered.
    negotiated_once: bool,
    signaling: RTCSignalingState,
    /// Consumers changed since the last server offer.
    needs_offer: bool,
    deadline: Option<Instant>,
    dirty: bool,
}

struct Member {
    info: ParticipantInfo,
    transport: TransportId,
    /// The invite token's id (`tid`).
    token_id: String,
}

/// What the mediator decided about one participant; kept per participant id for the
/// room's lifetime in the engine, so a reconnect keeps it.
#[derive(Debug, Default, Clone)]
struct Standing {
    admitted: bool,
    /// Side room (caucus); `None` = the main room.
    side: Option<String>,
    mute_audio: bool,
    mute_video: bool,
}

/// Session state of a room that outlives its Transports (and the room itself when it
/// empties): the waiting-room decisions, side rooms, mutes, removed tokens.
#[derive(Debug, Default)]
struct Session {
    /// Event log folder name: the token's `session_id`, else the room id.
    id: String,
    removed_tokens: HashSet<String>,
    people: HashMap<ParticipantId, Standing>,
}

struct Room {
    id: RoomId,
    members: Vec<Member>,
    producers: Vec<ProducerId>,
    speaker: Option<ParticipantId>,
}

pub(crate) struct Engine {
    socket: UdpSocket,
    local_addr: SocketAddr,
    advertised: SocketAddr,
    max_participants: usize,
    /// ICE consent timeouts: (disconnected, failed).
    ice_timeouts: (Duration, Duration),
    stats: Arc<SfuStats>,
    rx: mpsc::Receiver<Command>,
    transports: HashMap<TransportId, Transport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<SocketAddr, TransportId>,
    /// Our own outstanding STUN checks: transaction id → Transport, time sent.
    by_txid: HashMap<[u8; 12], (TransportId, Instant)>,
    rooms: HashMap<RoomId, Room>,
    sessions: HashMap<RoomId, Session>,
    event_log: Option<EventSink>,
    producers: HashMap<ProducerId, Producer>,
    timers: BinaryHeap<Reverse<(Instant, TransportId)>>,
    dirty: Vec<TransportId>,
    next_id: u64,
    last_speaker_eval: Instant,
    scratch_rtp: Vec<(ProducerId, rtp::Packet)>,
    scratch_pending: Vec<(String, rtp::Packet)>,
    scratch_kf: Vec<String>,
    scratch_events: Vec<RTCPeerConnectionEvent>,
}

fn rtc_err(e: impl std::fmt::Display) -> SfuError {
    SfuError::Rtc(e.to_string())
}

impl Engine {
    pub(crate) fn bind(
        config: &MediaConfig,
        stats: Arc<SfuStats>,
        rx: mpsc::Receiver<Command>,
        event_log: Option<EventSink>,
    ) -> Result<Self, SfuError> {
        let addr = SocketAddr::new(config.bind_ip, config.udp_port);
        let bind_err = |source| SfuError::Bind { addr, source };
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(bind_err)?;
        // Larger buffers ride out bursts (keyframes to many Consumers); failure is harmless.
        let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
        sock.set_nonblocking(true).map_err(bind_err)?;
        sock.bind(&addr.into()).map_err(bind_err)?;
        let std_sock: StdUdpSocket = sock.into();
        let socket = UdpSocket::from_std(std_sock).map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let advertised = SocketAddr::new(config.public_ip.unwrap_or(local_addr.ip()), local_addr.port());
        info!(%local_addr, %advertised, "media socket bound (one UDP port for all peers)");
        Ok(Self {
            socket,
            local_addr,
            advertised,
            max_participants: config.max_participants,
            ice_timeouts: (
                Duration::from_millis(config.ice_disconnected_timeout_ms),
                Duration::from_millis(config.ice_failed_timeout_ms),
            ),
            stats,
            rx,
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_txid: HashMap::new(),
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            event_log,
            producers: HashMap::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            next_id: 1,
            last_speaker_eval: Instant::now(),
            scratch_rtp: Vec::new(),
            scratch_pending: Vec::new(),
            scratch_kf: Vec::new(),
            scratch_events: Vec::new(),
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) async fn run(mut self) {
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((t, _))| *t);
            let sleep = async {
                match next_timer {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                cmd = self.rx.recv() => {
                    match cmd {
                        Some(Command::Shutdown) | None => {
                            self.shutdown();
                            return;
                        }
                        Some(cmd) => self.handle_command(cmd),
                    }
                }
                r = self.socket.recv_from(&mut buf) => {
                    if let Ok((n, from)) = r {
                        self.handle_datagram(&buf[..n], from);
                        // Drain what else is queued, bounded, before anything else.
                        for _ in 1..RECV_BATCH {
                            match self.socket.try_recv_from(&mut buf) {
                                Ok((n, from)) => self.handle_datagram(&buf[..n], from),
                                Err(_) => break,
                            }
                        }
                    }
                }
                _ = sleep => self.handle_timers(),
                _ = tick.tick() => self.housekeeping(Instant::now()),
            }
            self.flush();
        }
    }

    fn shutdown(&mut self) {
        let ids: Vec<TransportId> = self.transports.keys().copied().collect();
        for id in ids {
            self.remove_transport(id, Some("server_shutdown"));
        }
        self.flush();
    }

    // ---------------------------------------------------------------- commands

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Join(req, reply) => {
                let r = self.join(req);
                let _ = reply.send(r);
            }
            Command::Offer(t, sdp, reply) => {
                let r = self.client_offer(t, sdp);
                let _ = reply.send(r);
            }
            Command::Answer(t, sdp, reply) => {
                let r = self.client_answer(t, sdp);
                let _ = reply.send(r);
            }
            Command::Candidate(t, c, reply) => {
                let r = self.client_candidate(t, c);
                let _ = reply.send(r);
            }
            Command::Mute(t, audio, video) => self.mute(t, audio, video),
            Command::Control(t, c, reply) => {
                let r = self.control(t, c);
                let _ = reply.send(r);
            }
            Command::Leave(t) => self.remove_transport(t, None),
            Command::Shutdown => {}
        }
    }

    fn join(&mut self, req: JoinRequest) -> Result<JoinReply, SfuError> {
        let session = self.sessions.entry(req.room.clone()).or_insert_with(|| Session {
            id: req.session_id.clone().unwrap_or_else(|| req.room.to_string()),
            ..Default::default()
        });
        if !req.token_id.is_empty() && session.removed_tokens.contains(&req.token_id) {
            return Err(SfuError::Removed);
        }
        // A second join with the same participant id replaces the first (reconnect).
        if let Some(old) = self
            .rooms
            .get(&req.room)
            .and_then(|r| r.members.iter().find(|m| m.info.id == req.participant))
            .map(|m| m.transport)
        {
            self.remove_transport(old, Some("replaced"));
        }
        let count = self.rooms.get(&req.room).map_or(0, |r| r.members.len());
        if count >= self.max_participants {
            return Err(SfuError::RoomFull { max: self.max_participants });
        }
        let id = TransportId(self.next_id());
        let ufrag = format!("fq{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let pwd = format!("{:032x}", rand::random::<u128>());
        let pc = sdp::peer_connection_with_timeouts(&ufrag, &pwd, self.ice_timeouts.0, self.ice_timeouts.1)?;
        let session = self.sessions.entry(req.room.clone()).or_default();
        let standing = session.people.entry(req.participant.clone()).or_default();
        if req.admitted {
            standing.admitted = true;
        }
        let admitted = standing.admitted;
        let info = ParticipantInfo {
            id: req.participant.clone(),
            name: req.name,
            role: req.role,
            audio_muted: false,
            video_muted: false,
            side_room: if admitted { standing.side.clone() } else { None },
        };
        let is_mediator = admitted && info.role == MEDIATOR;
        let room = self.rooms.entry(req.room.clone()).or_insert_with(|| Room {
            id: req.room.clone(),
            members: Vec::new(),
            producers: Vec::new(),
            speaker: None,
        });
        let session = self.sessions.get(&req.room);
        let admitted_of = |m: &Member| {
            session.and_then(|s| s.people.get(&m.info.id)).is_some_and(|st| st.admitted)
        };
        let mut others = Vec::new();
        let mut waiting_list = Vec::new();
        for m in &room.members {
            let m_admitted = admitted_of(m);
            if m_admitted {
                others.push(m.info.clone());
            } else {
                waiting_list.push(m.info.clone());
            }
            let Some(t) = self.transports.get(&m.transport) else { continue };
            if admitted && m_admitted {
                let _ = t.events.try_send(ParticipantEvent::Joined(info.clone()));
            } else if !admitted && m_admitted && m.info.role == MEDIATOR {
                let _ = t.events.try_send(ParticipantEvent::ParticipantWaiting(info.clone()));
            }
        }
        let me = info.clone();
        room.members.push(Member { info, transport: id, token_id: req.token_id });
        if !admitted {
            waiting_list.push(me.clone());
            for m in &room.members {
                if m.info.role == MEDIATOR && admitted_of(m) {
                    if let Some(t) = self.transports.get(&m.transport) {
                        let _ = t.events.try_send(ParticipantEvent::Waiting { participants: waiting_list.clone() });
                    }
                }
            }
            others.clear();
        }
        if !is_mediator {
            waiting_list.clear();
        }
        info!(room = %req.room, participant = %req.participant, transport = %id, admitted, "participant joined");
        self.log(&req.room, &req.participant, "join", |e| {
            e.role = Some(me.role.clone());
            e.admitted = Some(admitted);
        });
        self.by_ufrag.insert(ufrag.clone(), id);
        self.transports.insert(
            id,
            Transport {
                span: tracing::info_span!(parent: None, "participant", room = %req.room, id = %req.participant, transport = %id),
                room: req.room,
                participant: req.participant,
                pc,
                ufrag,
                events: req.events,
                addrs: Vec::new(),
                producers: HashMap::new(),
                consumers: HashMap::new(),
                connected: false,
                negotiated_once: false,
                signaling: RTCSignalingState::Stable,
                needs_offer: false,
                deadline: None,
                dirty: false,
            },
        );
        self.update_gauges();
        Ok(JoinReply { transport: id, participants: others, me, waiting: !admitted, waiting_list })
    }

    fn client_offer(&mut self, tid: TransportId, sdp_text: String) -> Result<String, SfuError> {
        let advertised = self.advertised;
        let t = self.transports.get_mut(&tid).ok_or(SfuError::NotJoined)?;
        if t.signaling == RTCSignalingState::HaveLocalOffer {
            return Err(SfuError::Glare);
        }
        let offer = RTCSessionDescription::offer(sdp_text).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        t.pc
            .set_remote_description(Instant::now(), offer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        if !t.negotiated_once {
            let cand = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: "udp".to_owned(),
                    address: advertised.ip().to_string(),
                    port: advertised.port(),
                    component: 1,
                    ..Default::default()
                },
                ..Default::default()
            }
            .new_candidate_host()
            .map_err(rtc_err)?;
            let init = RTCIceCandidate::from(&cand).to_json().map_err(rtc_err)?;
            t.pc.add_local_candidate(init).map_err(rtc_err)?;
        }
        let answer = t.pc.create_answer(None).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        t.pc
            .set_local_description(Instant::now(), answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let sdp_out = t
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or_else(|| SfuError::Rtc("no local description".into()))?;
        t.signaling = RTCSignalingState::Stable;
        let first = !t.negotiated_once;
        t.negotiated_once = true;
        let room = t.room.clone();
        self.mark_dirty(tid);
        if first {
            // Subscribe the newcomer to every Producer already in the room.
            let producers: Vec<ProducerId> =
                self.rooms.get(&room).map(|r| r.producers.clone()).unwrap_or_default();
            for p in producers {
                self.add_consumer(p, tid);
            }
        }
        self.resolve_consumers(tid);
        self.maybe_offer(tid);
        Ok(sdp_out)
    }

    fn client_answer(&mut self, tid: TransportId, sdp_text: String) -> Result<(), SfuError> {
        let t = self.transports.get_mut(&tid).ok_or(SfuError::NotJoined)?;
        if t.signaling != RTCSignalingState::HaveLocalOffer {
            return Err(SfuError::WrongState("no offer from the server is outstanding"));
        }
        let answer =
            RTCSessionDescription::answer(sdp_text).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        t.pc
            .set_remote_description(Instant::now(), answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        t.signaling = RTCSignalingState::Stable;
        self.mark_dirty(tid);
        self.resolve_consumers(tid);
        self.maybe_offer(tid);
        Ok(())
    }

    fn client_candidate(&mut self, tid: TransportId, c: RemoteCandidate) -> Result<(), SfuError> {
        let t = self.transports.get_mut(&tid).ok_or(SfuError::NotJoined)?;
        let text = c.candidate.trim();
        if text.is_empty() {
            return Ok(()); // end-of-candidates
        }
        if !text.starts_with("candidate:") && !text.starts_with("a=candidate:") {
            return Err(SfuError::BadCandidate("must start with candidate:".into()));
        }
        // ICE-lite learns peer-reflexive addresses from the client's checks, so an
        // mDNS name (Firefox, Chrome) needs no resolving; it is accepted and skipped.
        if text.split_whitespace().nth(4).is_some_and(|a| a.ends_with(".local")) {
            return Ok(());
        }
        let init = RTCIceCandidateInit {
            candidate: text.trim_start_matches("a=").to_owned(),
            sdp_mid: c.sdp_mid,
            sdp_mline_index: c.sdp_mline_index,
            ..Default::default()
        };
        t.pc
            .add_remote_candidate(init)
            .map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        self.mark_dirty(tid);
        Ok(())
    }

    fn mute(&mut self, tid: TransportId, audio: bool, video: bool) {
        let Some(t) = self.transports.get(&tid) else { return };
        let (room_id, pid) = (t.room.clone(), t.participant.clone());
        let Some(room) = self.rooms.get_mut(&room_id) else { return };
        for m in room.members.iter_mut() {
            if m.info.id == pid {
                m.info.audio_muted = audio;
                m.info.video_muted = video;
            }
        }
        // A waiting participant is seen by nobody; its state is kept for later.
        if self.is_admitted(&room_id, &pid) {
            let ev = ParticipantEvent::Muted { id: pid.clone(), audio, video };
            self.broadcast(&room_id, Some(&pid), ev);
        }
    }

    // -------------------------------------------------------- session controls

    fn is_admitted(&self, room: &RoomId, pid: &ParticipantId) -> bool {
        self.sessions.get(room).and_then(|s| s.people.get(pid)).is_some_and(|st| st.admitted)
    }

    /// Hands an event-log line to the writer; never blocks (a full queue drops it).
    fn log(&self, room: &RoomId, actor: &ParticipantId, action: &'static str, fill: impl FnOnce(&mut SessionEvent)) {
        let Some(sink) = &self.event_log else { return };
        let session = self.sessions.get(room).map_or_else(|| room.to_string(), |s| s.id.clone());
        let mut ev = SessionEvent {
            time: SystemTime::now(),
            session,
            room: room.to_string(),
            actor: actor.to_string(),
            action,
            target: None,
            role: None,
            admitted: None,
            reason: None,
            to: None,
            audio: None,
            video: None,
        };
        fill(&mut ev);
        if sink.try_send(ev).is_err() {
            warn!(room = %room, action, "session event log queue full or closed; event dropped");
        }
    }

    fn send_to(&mut self, tid: TransportId, ev: ParticipantEvent) {
        let Some(t) = self.transports.get(&tid) else { return };
        if let Err(mpsc::error::TrySendError::Full(_)) = t.events.try_send(ev) {
            self.remove_transport(tid, Some("slow_signaling"));
        }
    }

    /// Sends the current waiting list to every admitted mediator of the room.
    fn notify_waiting(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let session = self.sessions.get(room_id);
        let admitted = |m: &Member| session.and_then(|s| s.people.get(&m.info.id)).is_some_and(|st| st.admitted);
        let list: Vec<ParticipantInfo> = room.members.iter().filter(|m| !admitted(m)).map(|m| m.info.clone()).collect();
        let mediators: Vec<TransportId> = room
            .members
            .iter()
            .filter(|m| m.info.role == MEDIATOR && admitted(m))
            .map(|m| m.transport)
            .collect();
        for t in mediators {
            self.send_to(t, ParticipantEvent::Waiting { participants: list.clone() });
        }
    }

    /// May the Transport `sub` receive Producer `pid`? Both admitted, same room, same
    /// side room.
    fn visible(&self, pid: ProducerId, sub: TransportId) -> bool {
        let Some(p) = self.producers.get(&pid) else { return false };
        let Some(t) = self.transports.get(&sub) else { return false };
        if p.owner == sub || t.room != p.room {
            return false;
        }
        let Some(s) = self.sessions.get(&p.room) else { return false };
        match (s.people.get(&p.participant), s.people.get(&t.participant)) {
            (Some(a), Some(b)) => a.admitted && b.admitted && a.side == b.side,
            _ => false,
        }
    }

    /// Makes every Consumer of the room match who may see whom: adds the missing ones,
    /// removes the others (each subscriber then gets a server offer).
    fn reconcile(&mut self, room_id: &RoomId) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let producers = room.producers.clone();
        let members: Vec<TransportId> = room.members.iter().map(|m| m.transport).collect();
        for p in producers {
            for &m in &members {
                let want = self.visible(p, m);
                let has = self.producers.get(&p).is_some_and(|x| x.consumers.iter().any(|c| c.transport == m));
                if want && !has {
                    self.add_consumer(p, m);
                } else if !want && has {
                    self.remove_consumer(p, m);
                }
            }
        }
    }

    fn remove_consumer(&mut self, pid: ProducerId, tid: TransportId) {
        let Some(prod) = self.producers.get_mut(&pid) else { return };
        let Some(i) = prod.consumers.iter().position(|c| c.transport == tid) else { return };
        let c = prod.consumers.remove(i);
        if let Some(t) = self.transports.get_mut(&tid) {
            t.consumers.remove(&c.track_id);
            if let Err(e) = t.pc.remove_track(c.sender) {
                debug!(transport = %tid, "remove_track: {e}");
            }
            t.needs_offer = true;
        }
        debug!(producer = %pid, consumer = %c.id, subscriber = %tid, "consumer removed");
        self.update_gauges();
        self.maybe_offer(tid);
    }

    /// A mediator's control. Checks the actor's role and the target, applies it, logs it.
    fn control(&mut self, tid: TransportId, c: Control) -> Result<(), SfuError> {
        let t = self.transports.get(&tid).ok_or(SfuError::NotJoined)?;
        let (room_id, actor) = (t.room.clone(), t.participant.clone());
        let room = self.rooms.get(&room_id).ok_or(SfuError::NotJoined)?;
        let me = room.members.iter().find(|m| m.transport == tid).ok_or(SfuError::NotJoined)?;
        if me.info.role != MEDIATOR || !self.is_admitted(&room_id, &actor) {
            return Err(SfuError::Forbidden("only the mediator may do this"));
        }
        let find = |id: &ParticipantId| {
            room.members
                .iter()
                .find(|m| m.info.id == *id)
                .map(|m| (m.transport, m.token_id.clone(), m.info.clone()))
                .ok_or_else(|| SfuError::NotFound(id.as_str().chars().take(64).collect()))
        };
        match c {
            Control::Admit(id) => {
                let (target, _, info) = find(&id)?;
                if self.is_admitted(&room_id, &id) {
                    return Err(SfuError::WrongState("already admitted"));
                }
                let st = self.standing_mut(&room_id, &id);
                st.admitted = true;
                let side = st.side.clone();
                let mut others = Vec::new();
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    for m in room.members.iter_mut() {
                        if m.info.id == id {
                            m.info.side_room = side.clone();
                        }
                    }
                }
                if let Some(room) = self.rooms.get(&room_id) {
                    for m in &room.members {
                        if m.info.id != id && self.is_admitted(&room_id, &m.info.id) {
                            others.push(m.info.clone());
                        }
                    }
                }
                info!(room = %room_id, participant = %id, by = %actor, "admitted");
                self.log(&room_id, &actor, "admit", |e| e.target = Some(id.to_string()));
                self.send_to(target, ParticipantEvent::Admitted { participants: others });
                let info = ParticipantInfo { side_room: side, ..info };
                self.broadcast(&room_id, Some(&id), ParticipantEvent::Joined(info));
                self.notify_waiting(&room_id);
                self.reconcile(&room_id);
            }
            Control::Reject(id) => {
                let (target, _, _) = find(&id)?;
                if self.is_admitted(&room_id, &id) {
                    return Err(SfuError::WrongState("not in the waiting room"));
                }
                info!(room = %room_id, participant = %id, by = %actor, "rejected");
                self.log(&room_id, &actor, "reject", |e| e.target = Some(id.to_string()));
                self.remove_transport(target, Some("rejected"));
            }
            Control::Mute { id, audio, video } => {
                let (target, _, _) = find(&id)?;
                let st = self.standing_mut(&room_id, &id);
                st.mute_audio = audio;
                st.mute_video = video;
                for p in self.producers.values_mut() {
                    if p.room != room_id || p.participant != id {
                        continue;
                    }
                    let m = if p.kind == RtpCodecKind::Audio { audio } else { video };
                    if m && !p.muted {
                        p.level = 127.0;
                        // Resuming later starts at a keyframe.
                        for c in p.consumers.iter_mut() {
                            c.needs_keyframe = p.video.is_some();
                        }
                    }
                    p.muted = m;
                }
                info!(room = %room_id, participant = %id, audio, video, by = %actor, "muted by mediator");
                self.log(&room_id, &actor, "mute", |e| {
                    e.target = Some(id.to_string());
                    e.audio = Some(audio);
                    e.video = Some(video);
                });
                let ev = ParticipantEvent::MutedByMediator { id: id.clone(), audio, video };
                if !self.is_admitted(&room_id, &id) {
                    self.send_to(target, ev.clone());
                }
                self.broadcast(&room_id, None, ev);
            }
            Control::Remove { id, reason } => {
                let (target, token_id, _) = find(&id)?;
                let reason: String = reason.chars().filter(|c| !c.is_control()).take(MAX_REASON).collect();
                if let Some(s) = self.sessions.get_mut(&room_id) {
                    if !token_id.is_empty() {
                        s.removed_tokens.insert(token_id);
                    }
                }
                info!(room = %room_id, participant = %id, by = %actor, %reason, "removed");
                self.log(&room_id, &actor, "remove", |e| {
                    e.target = Some(id.to_string());
                    e.reason = Some(reason);
                });
                self.remove_transport(target, Some("removed"));
            }
            Control::Move { id, to } => {
                let to = match to {
                    None => None,
                    Some(name) => {
                        let name = name.trim();
                        if name == "main" {
                            None
                        } else if name.is_empty()
                            || name.chars().count() > MAX_SIDE_ROOM
                            || name.chars().any(char::is_control)
                        {
                            return Err(SfuError::BadField("`to` must be \"main\" or a side room name of 1-64 characters"));
                        } else {
                            Some(name.to_owned())
                        }
                    }
                };
                find(&id)?;
                if !self.is_admitted(&room_id, &id) {
                    return Err(SfuError::WrongState("admit the participant first"));
                }
                self.standing_mut(&room_id, &id).side = to.clone();
                if let Some(room) = self.rooms.get_mut(&room_id) {
                    for m in room.members.iter_mut() {
                        if m.info.id == id {
                            m.info.side_room = to.clone();
                        }
                    }
                }
                let to_name = to.clone().unwrap_or_else(|| "main".to_owned());
                info!(room = %room_id, participant = %id, to = %to_name, by = %actor, "moved");
                self.log(&room_id, &actor, "move", |e| {
                    e.target = Some(id.to_string());
                    e.to = Some(to_name);
                });
                // Consumers first: the moved participant's media stops at once.
                self.reconcile(&room_id);
                self.broadcast(&room_id, None, ParticipantEvent::Moved { id, to });
            }
            Control::EndSession => {
                info!(room = %room_id, by = %actor, "session ended by the mediator");
                self.log(&room_id, &actor, "end_session", |_| {});
                let all: Vec<TransportId> =
                    self.rooms.get(&room_id).map(|r| r.members.iter().map(|m| m.transport).collect()).unwrap_or_default();
                for t in all {
                    self.remove_transport(t, Some("ended"));
                }
                // Whoever comes back later waits again; removed invites stay removed.
                if let Some(s) = self.sessions.get_mut(&room_id) {
                    s.people.clear();
                }
            }
        }
        Ok(())
    }

    fn standing_mut(&mut self, room: &RoomId, pid: &ParticipantId) -> &mut Standing {
        self.sessions.entry(room.clone()).or_default().people.entry(pid.clone()).or_default()
    }

    // ------------------------------------------------------------- negotiation

    /// Sends a server offer when Consumers changed and no offer is outstanding.
    fn maybe_offer(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if !t.needs_offer || !t.negotiated_once || t.signaling != RTCSignalingState::Stable {
            return;
        }
        let offer = match t.pc.create_offer(None) {
            Ok(o) => o,
            Err(e) => {
                warn!(transport = %tid, "create_offer failed: {e}");
                return;
            }
        };
        if let Err(e) = t.pc.set_local_description(Instant::now(), offer) {
            warn!(transport = %tid, "set_local_description(offer) failed: {e}");
            return;
        }
        let Some(sdp) = t.pc.local_description().map(|d| d.sdp) else { return };
        t.needs_offer = false;
        t.signaling = RTCSignalingState::HaveLocalOffer;
        if t.events.try_send(ParticipantEvent::Offer { sdp }).is_err() {
            warn!(transport = %tid, "signaling queue full; closing");
            self.remove_transport(tid, Some("slow_signaling"));
            return;
        }
        self.mark_dirty(tid);
    }

    /// After a negotiation, learn each Consumer's outgoing payload type.
    fn resolve_consumers(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get_mut(&tid) else { return };
        for (pid, cid) in t.consumers.values() {
            let Some(prod) = self.producers.get_mut(pid) else { continue };
            let Some(codec) = prod.codec.clone() else { continue };
            let Some(c) = prod.consumers.iter_mut().find(|c| c.id == *cid) else { continue };
            if c.pt.is_some() {
                continue;
            }
            let Some(mut sender) = t.pc.rtp_sender(c.sender) else { continue };
            let params = sender.get_parameters();
            c.pt = params
                .rtp_parameters
                .codecs
                .iter()
                .find(|k| sdp::codec_compatible(&codec, &k.rtp_codec))
                .map(|k| k.payload_type);
            if c.pt.is_none() && !params.rtp_parameters.codecs.is_empty() {
                warn!(transport = %tid, consumer = %c.id, codec = %codec.mime_type,
                    "subscriber cannot receive this codec; Consumer stays paused");
            }
        }
    }

    // ------------------------------------------------------ producers/consumers

    fn add_consumer(&mut self, pid: ProducerId, tid: TransportId) {
        if !self.visible(pid, tid) {
            return; // waiting room, another side room
        }
        let cid = ConsumerId(self.next_id());
        let Some(prod) = self.producers.get_mut(&pid) else { return };
        let Some(codec) = prod.codec.clone() else { return };
        if prod.owner == tid || prod.consumers.iter().any(|c| c.transport == tid) {
            return;
        }
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if !t.negotiated_once {
            return; // subscribed after its first offer/answer
        }
        let ssrc = rand::random::<u32>();
        // Unique per Consumer: a track removed by a move and added back is a new track.
        let track_id = format!("{}-{}-{}", prod.participant, prod.id, cid);
        let track = MediaStreamTrack::new(
            prod.participant.to_string(),
            track_id.clone(),
            format!("{} {}", prod.participant, prod.kind),
            prod.kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
                codec,
                ..Default::default()
            }],
        );
        let sender = match t.pc.add_track(track) {
            Ok(s) => s,
            Err(e) => {
                warn!(transport = %tid, producer = %pid, "add_track failed: {e}");
                return;
            }
        };
        t.consumers.insert(track_id.clone(), (pid, cid));
        t.needs_offer = true;
        let video = prod.kind == RtpCodecKind::Video;
        prod.consumers.push(Consumer {
            id: cid,
            transport: tid,
            sender,
            track_id,
            ssrc,
            pt: None,
            needs_keyframe: video,
            seq_delta: 0,
            last_out_seq: None,
            resume_seq: None,
        });
        debug!(producer = %pid, consumer = %cid, subscriber = %tid, "consumer created");
        self.update_gauges();
        self.maybe_offer(tid);
    }

    fn open_producer(&mut self, tid: TransportId, receiver: RTCRtpReceiverId, track_id: String, ssrc: u32) {
        let id = ProducerId(self.next_id());
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if t.producers.contains_key(&track_id) {
            return; // a second simulcast layer of the same track: one layer is forwarded
        }
        let Some(rx) = t.pc.rtp_receiver(receiver) else { return };
        let kind = rx.track().kind();
        let muted = self
            .sessions
            .get(&t.room)
            .and_then(|s| s.people.get(&t.participant))
            .is_some_and(|st| if kind == RtpCodecKind::Audio { st.mute_audio } else { st.mute_video });
        t.producers.insert(track_id.clone(), id);
        info!(room = %t.room, participant = %t.participant, producer = %id, ?kind, ssrc, "producer opened");
        let span = tracing::info_span!(parent: &t.span, "track", producer = %id, kind = %kind, ssrc);
        self.producers.insert(
            id,
            Producer {
                span,
                id,
                room: t.room.clone(),
                owner: tid,
                participant: t.participant.clone(),
                receiver,
                track_id,
                kind,
                media_ssrc: ssrc,
                codec: None,
                video: None,
                audio_level_ext: None,
                level: 127.0,
                last_keyframe_request: None,
                keyframe_request_deferred: false,
                muted,
                consumers: Vec::new(),
            },
        );
        self.update_gauges();
    }

    /// Learns the Producer's codec from its first packet, then subscribes the room.
    fn resolve_producer(&mut self, pid: ProducerId, pt: u8) {
        let Some(prod) = self.producers.get_mut(&pid) else { return };
        let Some(t) = self.transports.get_mut(&prod.owner) else { return };
        let Some(mut rx) = t.pc.rtp_receiver(prod.receiver) else { return };
        let params = rx.get_parameters();
        let Some(codec) = params.rtp_parameters.codecs.iter().find(|c| c.payload_type == pt) else {
            return;
        };
        prod.codec = Some(codec.rtp_codec.clone());
        prod.video = VideoCodec::from_mime(&codec.rtp_codec.mime_type);
        prod.audio_level_ext = params
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|h| h.uri == sdp::AUDIO_LEVEL_URI)
            .map(|h| h.id as u8);
        let room_id = prod.room.clone();
        let owner = prod.owner;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.producers.push(pid);
            let subs: Vec<TransportId> =
                room.members.iter().map(|m| m.transport).filter(|t| *t != owner).collect();
            for s in subs {
                self.add_consumer(pid, s);
            }
        }
    }

    fn close_producer(&mut self, pid: ProducerId) {
        let Some(prod) = self.producers.remove(&pid) else { return };
        if let Some(room) = self.rooms.get_mut(&prod.room) {
            room.producers.retain(|p| *p != pid);
        }
        if let Some(t) = self.transports.get_mut(&prod.owner) {
            t.producers.remove(&prod.track_id);
        }
        for c in prod.consumers {
            if let Some(t) = self.transports.get_mut(&c.transport) {
                t.consumers.remove(&c.track_id);
                if let Err(e) = t.pc.remove_track(c.sender) {
                    debug!(transport = %c.transport, "remove_track: {e}");
                }
                t.needs_offer = true;
                let sub = c.transport;
                self.maybe_offer(sub);
            }
        }
        prod.span.in_scope(|| info!(producer = %pid, "producer closed"));
        self.update_gauges();
    }

    fn remove_transport(&mut self, tid: TransportId, reason: Option<&'static str>) {
        let Some(mut t) = self.transports.remove(&tid) else { return };
        self.by_ufrag.remove(&t.ufrag);
        for a in &t.addrs {
            self.by_addr.remove(a);
        }
        if let Some(reason) = reason {
            let _ = t.events.try_send(ParticipantEvent::Closed { reason });
        }
        // Its Consumers leave their Producers.
        for (pid, cid) in t.consumers.values() {
            if let Some(p) = self.producers.get_mut(pid) {
                p.consumers.retain(|c| c.id != *cid);
            }
        }
        // Its Producers end for everyone.
        let producers: Vec<ProducerId> = t.producers.values().copied().collect();
        for p in producers {
            self.close_producer(p);
        }
        let _ = t.pc.close();
        // Flush what close() queued (DTLS close_notify), best effort.
        while let Some(msg) = t.pc.poll_write() {
            let _ = self.socket.try_send_to(&msg.message, msg.transport.peer_addr);
        }
        let room_id = t.room.clone();
        let pid = t.participant.clone();
        let admitted = self.is_admitted(&room_id, &pid);
        let mut empty = false;
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|m| m.transport != tid);
            empty = room.members.is_empty();
            if room.speaker.as_ref() == Some(&pid) {
                room.speaker = None;
            }
        }
        info!(room = %room_id, participant = %pid, transport = %tid, reason = reason.unwrap_or("left"), "participant left");
        self.log(&room_id, &pid, "leave", |e| e.reason = Some(reason.unwrap_or("left").to_owned()));
        if empty {
            self.rooms.remove(&room_id);
            info!(room = %room_id, "room closed (empty)");
        } else if admitted {
            self.broadcast(&room_id, None, ParticipantEvent::Left { id: pid });
        } else {
            self.notify_waiting(&room_id);
        }
        self.update_gauges();
    }

    /// Sends `ev` to every admitted member of the room (never to the waiting room).
    fn broadcast(&mut self, room: &RoomId, except: Option<&ParticipantId>, ev: ParticipantEvent) {
        let Some(r) = self.rooms.get(room) else { return };
        let session = self.sessions.get(room);
        let mut slow = Vec::new();
        for m in &r.members {
            if Some(&m.info.id) == except {
                continue;
            }
            if !session.and_then(|s| s.people.get(&m.info.id)).is_some_and(|st| st.admitted) {
                continue;
            }
            if let Some(t) = self.transports.get(&m.transport) {
                if let Err(mpsc::error::TrySendError::Full(_)) = t.events.try_send(ev.clone()) {
                    slow.push(m.transport);
                }
            }
        }
        for s in slow {
            self.remove_transport(s, Some("slow_signaling"));
        }
    }

    fn update_gauges(&self) {
        let s = &self.stats;
        SfuStats::set(&s.rooms, self.rooms.len() as u64);
        SfuStats::set(&s.participants, self.transports.len() as u64);
        SfuStats::set(&s.producers, self.producers.len() as u64);
        let consumers: usize = self.producers.values().map(|p| p.consumers.len()).sum();
        SfuStats::set(&s.consumers, consumers as u64);
    }

    // ------------------------------------------------------------------ network

    fn handle_datagram(&mut self, data: &[u8], from: SocketAddr) {
        SfuStats::add(&self.stats.datagrams_in, 1);
        SfuStats::add(&self.stats.bytes_in, data.len() as u64);
        if data.len() > MAX_DATAGRAM {
            SfuStats::add(&self.stats.dropped_malformed, 1);
            return;
        }
        let kind = demux::classify(data);
        let tid = match self.by_addr.get(&from) {
            Some(t) => Some(*t),
            None if kind == DatagramKind::Stun && demux::is_binding_request(data) => {
                demux::stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u).copied())
            }
            None if kind == DatagramKind::Stun && demux::is_binding_response(data) => demux::stun_transaction_id(data)
                .and_then(|id| self.by_txid.remove(&id))
                .map(|(t, _)| t),
            None => None,
        };
        let Some(tid) = tid else {
            SfuStats::add(&self.stats.dropped_unknown_peer, 1);
            return;
        };
        if kind == DatagramKind::Other {
            SfuStats::add(&self.stats.dropped_malformed, 1);
            return;
        }
        let advertised = self.advertised;
        let Some(t) = self.transports.get_mut(&tid) else { return };
        let msg = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: advertised,
                peer_addr: from,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = t.pc.handle_read(msg) {
            SfuStats::add(&self.stats.dropped_malformed, 1);
            debug!(transport = %tid, "handle_read: {e}");
        }
        self.mark_dirty(tid);
    }

    fn handle_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((when, tid))) = self.timers.peek().copied() {
            if when > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.transports.get_mut(&tid) else { continue };
            if t.deadline != Some(when) {
                continue; // superseded
            }
            t.deadline = None;
            if let Err(e) = t.pc.handle_timeout(now) {
                debug!(transport = %tid, "handle_timeout: {e}");
            }
            self.mark_dirty(tid);
        }
    }

    fn mark_dirty(&mut self, tid: TransportId) {
        if let Some(t) = self.transports.get_mut(&tid) {
            if !t.dirty {
                t.dirty = true;
                self.dirty.push(tid);
            }
        }
    }

    /// Drains every touched Transport until nothing is left to do.
    fn flush(&mut self) {
        while let Some(tid) = self.dirty.pop() {
            self.drain(tid);
        }
    }

    fn drain(&mut self, tid: TransportId) {
        let now = Instant::now();
        let mut rtp = std::mem::take(&mut self.scratch_rtp);
        let mut pending = std::mem::take(&mut self.scratch_pending);
        let mut kf = std::mem::take(&mut self.scratch_kf);
        let mut events = std::mem::take(&mut self.scratch_events);
        let mut new_addrs: Vec<SocketAddr> = Vec::new();
        let mut send_failed = false;
        {
            let Some(t) = self.transports.get_mut(&tid) else {
                self.scratch_rtp = rtp;
                self.scratch_pending = pending;
                self.scratch_kf = kf;
                self.scratch_events = events;
                return;
            };
            t.dirty = false;
            let _span = t.span.clone().entered();
            while let Some(msg) = t.pc.poll_write() {
                let to = msg.transport.peer_addr;
                if demux::is_binding_request(&msg.message) {
                    if let Some(txid) = demux::stun_transaction_id(&msg.message) {
                        self.by_txid.insert(txid, (tid, now));
                    }
                }
                if demux::is_binding_success(&msg.message) && !t.addrs.contains(&to) {
                    t.addrs.push(to);
                    new_addrs.push(to);
                }
                match self.socket.try_send_to(&msg.message, to) {
                    Ok(n) => {
                        SfuStats::add(&self.stats.datagrams_out, 1);
                        SfuStats::add(&self.stats.bytes_out, n as u64);
                    }
                    Err(_) => {
                        SfuStats::add(&self.stats.dropped_send, 1);
                        send_failed = true;
                    }
                }
            }
            while let Some(ev) = t.pc.poll_event() {
                events.push(ev);
            }
            while let Some(msg) = t.pc.poll_read() {
                match msg.message {
                    RTCMessage::RtpPacket(track, pkt) => match t.producers.get(&track) {
                        Some(p) => rtp.push((*p, pkt)),
                        // First packet of a track: its OnOpen is among `events`.
                        None => pending.push((track, pkt)),
                    },
                    RTCMessage::RtcpPacket(track, pkts) => {
                        if crate::tap::asks_for_keyframe(&pkts) {
                            kf.push(track);
                        }
                    }
                    _ => {}
                }
            }
            let deadline = t.pc.poll_timeout();
            if deadline != t.deadline {
                t.deadline = deadline;
                if let Some(d) = deadline {
                    self.timers.push(Reverse((d, tid)));
                }
            }
        }
        for a in new_addrs {
            if let Some(old) = self.by_addr.insert(a, tid) {
                if old != tid {
                    debug!(addr = %a, from = %old, to = %tid, "address moved to another transport");
                }
            }
        }
        for ev in events.drain(..) {
            self.handle_event(tid, ev);
        }
        // Packets of tracks that had no Producer yet: resolve by track id now.
        for (track, pkt) in pending.drain(..) {
            if let Some(p) = self.transports.get(&tid).and_then(|t| t.producers.get(&track)) {
                rtp.push((*p, pkt));
            }
        }
        for (pid, pkt) in rtp.drain(..) {
            self.forward(pid, pkt, now);
        }
        for track in kf.drain(..) {
            self.keyframe_request_from_subscriber(tid, &track, now);
        }
        if send_failed {
            self.on_send_failed(tid);
        }
        self.scratch_rtp = rtp;
        self.scratch_pending = pending;
        self.scratch_kf = kf;
        self.scratch_events = events;
    }

    fn handle_event(&mut self, tid: TransportId, ev: RTCPeerConnectionEvent) {
        match ev {
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                self.open_producer(tid, init.receiver_id, init.track_id, init.ssrc);
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track)) => {
                let p = self.transports.get(&tid).and_then(|t| t.producers.get(&track)).copied();
                if let Some(p) = p {
                    self.close_producer(p);
                }
            }
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                debug!(transport = %tid, %state, "connection state");
                match state {
                    RTCPeerConnectionState::Connected => {
                        if let Some(t) = self.transports.get_mut(&tid) {
                            t.connected = true;
                        }
                        info!(transport = %tid, "transport connected (ICE + DTLS)");
                    }
                    RTCPeerConnectionState::Failed => {
                        SfuStats::add(&self.stats.transport_failures, 1);
                        self.remove_transport(tid, Some("ice_failed"));
                    }
                    // The peer closed DTLS (close_notify): its media is gone for good.
                    RTCPeerConnectionState::Closed => {
                        self.remove_transport(tid, Some("transport_closed"));
                    }
                    _ => {}
                }
            }
            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(state) => {
                debug!(transport = %tid, %state, "ice state");
                if state == RTCIceConnectionState::Failed {
                    SfuStats::add(&self.stats.transport_failures, 1);
                    self.remove_transport(tid, Some("ice_failed"));
                }
            }
            _ => {}
        }
    }

    // ---------------------------------------------------------------- fan-out

    fn forward(&mut self, pid: ProducerId, pkt: rtp::Packet, now: Instant) {
        SfuStats::add(&self.stats.rtp_in, 1);
        let pt = pkt.header.payload_type;
        let needs_resolve = self.producers.get(&pid).is_some_and(|p| p.codec.is_none());
        if needs_resolve {
            self.resolve_producer(pid, pt);
        }
        let Some(prod) = self.producers.get_mut(&pid) else { return };
        if pkt.payload.is_empty() {
            return; // padding-only probe
        }
        if prod.muted {
            return; // muted by the mediator: forwarded to nobody
        }
        if let (Some(ext), RtpCodecKind::Audio) = (prod.audio_level_ext, prod.kind) {
            if let Some(v) = pkt.header.get_extension(ext).and_then(|b| b.first().copied()) {
                let level = (v & 0x7f) as f32;
                prod.level = prod.level * 0.7 + level * 0.3;
            }
        }
        let key = prod.video.is_some_and(|c| is_keyframe_start(c, &pkt.payload));
        let mut wants_keyframe = false;
        for c in prod.consumers.iter_mut() {
            let Some(out_pt) = c.pt else { continue };
            let Some(t) = self.transports.get_mut(&c.transport) else { continue };
            if !t.connected {
                continue;
            }
            let seq = pkt.header.sequence_number;
            if prod.video.is_some() && c.needs_keyframe {
                if !key {
                    SfuStats::add(&self.stats.dropped_waiting_keyframe, 1);
                    wants_keyframe = true;
                    continue;
                }
                c.needs_keyframe = false;
                c.seq_delta = match c.last_out_seq {
                    Some(last) => seq.wrapping_sub(last.wrapping_add(1)),
                    None => 0,
                };
                c.resume_seq = Some(seq);
            }
            if let Some(r) = c.resume_seq {
                if (seq.wrapping_sub(r) as i16) < 0 {
                    continue; // older than the keyframe we resumed at
                }
            }
            let out_seq = seq.wrapping_sub(c.seq_delta);
            let out = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    padding: false,
                    extension: false,
                    marker: pkt.header.marker,
                    payload_type: out_pt,
                    sequence_number: out_seq,
                    timestamp: pkt.header.timestamp,
                    ssrc: c.ssrc,
                    ..Default::default()
                },
                payload: pkt.payload.clone(),
            };
            match t.pc.rtp_sender(c.sender).map(|mut s| s.write_rtp(now, out)) {
                Some(Ok(())) => {
                    c.last_out_seq = Some(out_seq);
                    SfuStats::add(&self.stats.rtp_out, 1);
                    if !t.dirty {
                        t.dirty = true;
                        self.dirty.push(c.transport);
                    }
                }
                _ => {
                    SfuStats::add(&self.stats.dropped_consumer_error, 1);
                }
            }
        }
        if wants_keyframe {
            Self::request_keyframe(&self.stats, prod, &mut self.transports, now);
            let owner = prod.owner;
            self.mark_dirty(owner);
        }
    }

    /// Asks the Producer's publisher for a keyframe: PLI (RFC 4585 §6.3.1), or FIR
    /// (RFC 5104 §4.3.1) when only `ccm fir` was negotiated; at most one per
    /// [`KEYFRAME_DEBOUNCE`], a later one deferred to the next tick.
    fn request_keyframe(
        stats: &SfuStats,
        prod: &mut Producer,
        transports: &mut HashMap<TransportId, Transport>,
        now: Instant,
    ) {
        if prod.video.is_none() {
            return;
        }
        if prod.last_keyframe_request.is_some_and(|t| now.duration_since(t) < KEYFRAME_DEBOUNCE) {
            prod.keyframe_request_deferred = true;
            return;
        }
        let Some(t) = transports.get_mut(&prod.owner) else { return };
        let fir_only = prod.codec.as_ref().is_some_and(|c| {
            let fb = &c.rtcp_feedback;
            !fb.iter().any(|f| f.typ == "nack" && f.parameter == "pli")
                && fb.iter().any(|f| f.typ == "ccm" && f.parameter == "fir")
        });
        let Some(mut rx) = t.pc.rtp_receiver(prod.receiver) else { return };
        let pkt: Box<dyn rtc::rtcp::Packet> = if fir_only {
            Box::new(FullIntraRequest {
                sender_ssrc: 0,
                media_ssrc: prod.media_ssrc,
                fir: vec![FirEntry { ssrc: prod.media_ssrc, sequence_number: 0 }],
            })
        } else {
            Box::new(PictureLossIndication { sender_ssrc: 0, media_ssrc: prod.media_ssrc })
        };
        if rx.write_rtcp(now, vec![pkt]).is_ok() {
            SfuStats::add(&stats.keyframe_requests_out, 1);
        }
        prod.last_keyframe_request = Some(now);
        prod.keyframe_request_deferred = false;
    }

    fn keyframe_request_from_subscriber(&mut self, tid: TransportId, track: &str, now: Instant) {
        let Some(t) = self.transports.get(&tid) else { return };
        let Some((pid, _)) = t.consumers.get(track).copied() else { return };
        SfuStats::add(&self.stats.keyframe_requests_in, 1);
        let Some(prod) = self.producers.get_mut(&pid) else { return };
        Self::request_keyframe(&self.stats, prod, &mut self.transports, now);
        let owner = prod.owner;
        self.mark_dirty(owner);
    }

    /// The socket refused a datagram for this Transport: its video Consumers skip
    /// to the next keyframe rather than show a broken picture.
    fn on_send_failed(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get(&tid) else { return };
        let ids: Vec<(ProducerId, ConsumerId)> = t.consumers.values().copied().collect();
        for (pid, cid) in ids {
            if let Some(p) = self.producers.get_mut(&pid) {
                if p.video.is_some() {
                    if let Some(c) = p.consumers.iter_mut().find(|c| c.id == cid) {
                        c.needs_keyframe = true;
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ housekeeping

    fn housekeeping(&mut self, now: Instant) {
        // STUN transactions time out after 39.5 s at most (RFC 8489 §6.2.1).
        if !self.by_txid.is_empty() {
            self.by_txid.retain(|_, (_, sent)| now.duration_since(*sent) < STUN_TRANSACTION_TTL);
        }
        // Repeat keyframe requests for Consumers still waiting, and deferred ones.
        let mut owners = Vec::new();
        for prod in self.producers.values_mut() {
            if prod.video.is_none() || prod.muted {
                continue; // a muted track asks for a keyframe when it resumes
            }
            let waiting = prod.consumers.iter().any(|c| {
                c.needs_keyframe
                    && c.pt.is_some()
                    && self.transports.get(&c.transport).is_some_and(|t| t.connected)
            });
            if waiting || prod.keyframe_request_deferred {
                let before = prod.last_keyframe_request;
                Self::request_keyframe(&self.stats, prod, &mut self.transports, now);
                if prod.last_keyframe_request != before {
                    owners.push(prod.owner);
                }
            }
        }
        for o in owners {
            self.mark_dirty(o);
        }
        if now.duration_since(self.last_speaker_eval) >= SPEAKER_PERIOD {
            self.last_speaker_eval = now;
            self.evaluate_speakers();
        }
    }

    fn evaluate_speakers(&mut self) {
        let mut changes = Vec::new();
        for room in self.rooms.values_mut() {
            let session = self.sessions.get(&room.id);
            // Only the main room's speakers: who speaks in a caucus stays in the caucus.
            let in_main = |p: &Producer| {
                session.and_then(|s| s.people.get(&p.participant)).is_some_and(|st| st.admitted && st.side.is_none())
            };
            let loudest = room
                .producers
                .iter()
                .filter_map(|p| self.producers.get(p))
                .filter(|p| p.kind == RtpCodecKind::Audio && p.level < SPEAKING_THRESHOLD && !p.muted && in_main(p))
                .min_by(|a, b| a.level.total_cmp(&b.level))
                .map(|p| p.participant.clone());
            if loudest != room.speaker {
                room.speaker = loudest.clone();
                changes.push((room.id.clone(), loudest));
            }
        }
        for (room, id) in changes {
            let _span = info_span!("room", id = %room).entered();
            self.broadcast(&room, None, ParticipantEvent::ActiveSpeaker { id });
        }
    }
}
