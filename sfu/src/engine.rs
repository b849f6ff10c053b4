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
//! 5. each touched Transport is drained: its SRTP-encrypted datagrams join the
//!    flush's [`SendBatch`](crate::sendbatch), sent with one non-blocking
//!    `sendmmsg(2)` per 64 datagrams (a refused datagram is dropped and counted,
//!    never waited for).
//!
//! Maps looked up per packet (`transports`, `by_addr`, `producers`, a Transport's
//! track ids) use `FxHashMap`: their keys are ids we issue or addresses bound only
//! after an ICE check succeeded, so a peer cannot choose colliding keys at will.

use crate::demux::{self, DatagramKind};
use crate::keyframe::{is_keyframe_start, VideoCodec};
use crate::record::{RecKind, RecPacket, RecSession, RecordAction, RecordMsg, RecordSink, RecordingStatus};
use crate::sdp;
use crate::stats::SfuStats;
use crate::{
    Command, ConsumerId, Control, EventSink, JoinReply, JoinRequest, MediaConfig, ParticipantEvent,
    ParticipantId, ParticipantInfo, ProducerId, RemoteCandidate, ResumeRequest, RoomId, SessionEvent, SfuError,
    TransportId,
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
use rustc_hash::FxHashMap;
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
/// Identity check methods: ID document shown on camera, face comparison, known person.
const IDENTITY_METHODS: [&str; 3] = ["id_document", "face_comparison", "known_person"];
/// Identity check results.
const IDENTITY_RESULTS: [&str; 2] = ["verified", "failed"];

struct Consumer {
    id: ConsumerId,
    transport: TransportId,
    sender: RTCRtpSenderId,
    track_id: String,
    ssrc: u32,
    /// Negotiated outgoing payload type; `None` until the subscriber's answer is in,
    /// or when the subscriber cannot take the codec.
    pt: Option<u8>,
    /// A server offer carried this Consumer's track: the subscriber's next answer
    /// makes it known there. Until then nothing is forwarded (a packet, above all the
    /// keyframe that starts the Consumer, would arrive on an SSRC the browser does
    /// not know yet and be dropped).
    offered: bool,
    /// Video only: hold back packets until a keyframe starts.
    needs_keyframe: bool,
    /// Sequence number rewriting: out = in - delta.
    seq_delta: u16,
    last_out_seq: Option<u16>,
    /// Packets older than this (in sequence order) are not forwarded after a resume.
    resume_seq: Option<u16>,
    /// The Producer's source changed (its participant resumed with a new peer
    /// connection): the next packet rebases the sequence numbers and RTP timestamps.
    rebase: bool,
    /// RTP timestamp rewriting (the codec's clock): out = in - delta. Zero until a new
    /// source: a browser's jitter buffer drops frames whose timestamp runs backwards
    /// from the last one it decoded, and a new source starts at a random timestamp.
    ts_delta: u32,
    /// The last timestamp sent, and when (to continue from it on a new source).
    last_out_ts: Option<(u32, Instant)>,
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
    /// Video: the recorder gets nothing until the next keyframe (recording just
    /// began or resumed, or its queue overflowed).
    rec_needs_keyframe: bool,
    /// The recorder has been sent packets of this Producer (so it gets `TrackEnded`).
    rec_seen: bool,
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
    producers: FxHashMap<String, ProducerId>,
    /// Outgoing track id → (Producer, Consumer).
    consumers: FxHashMap<String, (ProducerId, ConsumerId)>,
    connected: bool,
    /// When the join was accepted (for `SfuStats::join_seconds`); `None` once observed.
    joined_at: Option<Instant>,
    /// The client's first offer has been answered.
    negotiated_once: bool,
    signaling: RTCSignalingState,
    /// Consumers changed since the last server offer.
    needs_offer: bool,
    deadline: Option<Instant>,
    dirty: bool,
    /// Secret that lets this participant `resume` after their signaling drops.
    resume_token: String,
    /// The token the last `resume` presented, still accepted: its answer (carrying
    /// `resume_token`) may have been lost with the connection. Empty before a resume.
    resume_token_prev: String,
    /// The signaling connection dropped: the participant leaves at this instant
    /// unless they resume first.
    reconnecting: Option<Instant>,
    /// Producers of the replaced peer connection (resume with restart), waiting to
    /// take the new connection's first track of the same kind.
    orphans: Vec<ProducerId>,
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
    /// The case (invite token `case_id`), if any.
    case_id: Option<String>,
    removed_tokens: HashSet<String>,
    /// Who was in the room when the mediator last ended the session: a `resume` of
    /// theirs is told so (`SessionEnded`); a new join clears the entry.
    ended_for: HashSet<ParticipantId>,
    people: HashMap<ParticipantId, Standing>,
    /// Recording state, once the mediator has started recording.
    rec: Option<Rec>,
    /// The sham-mediation warning was given (latest `warn_sham`): by whom, and who has
    /// acknowledged it.
    sham_acks: Option<(ParticipantId, HashSet<ParticipantId>)>,
}

/// A session's recording (issue 3): runs only while started, not paused by the
/// mediator, and every admitted participant has consented.
#[derive(Debug)]
struct Rec {
    /// The session id as the recorder's messages carry it.
    session: Arc<str>,
    /// Stopped: the record is closed (`integrity` once the recorder has signed it).
    stopped: bool,
    integrity: Option<String>,
    /// The mediator's pause reason.
    manual_pause: Option<String>,
    /// The packets flow now.
    active: bool,
    /// Why the last pause happened (what participants are shown).
    reason: Option<String>,
    consent: HashMap<ParticipantId, bool>,
    /// Participants already announced to the recorder.
    announced: HashSet<ParticipantId>,
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
    /// `media.resume_window_ms`; zero = a signaling drop is a leave.
    resume_window: Duration,
    /// ICE consent timeouts: (disconnected, failed).
    ice_timeouts: (Duration, Duration),
    stats: Arc<SfuStats>,
    rx: mpsc::Receiver<Command>,
    transports: FxHashMap<TransportId, Transport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: FxHashMap<SocketAddr, TransportId>,
    /// Our own outstanding STUN checks: transaction id → Transport, time sent.
    by_txid: HashMap<[u8; 12], (TransportId, Instant)>,
    rooms: HashMap<RoomId, Room>,
    sessions: FxHashMap<RoomId, Session>,
    event_log: Option<EventSink>,
    recorder: Option<RecordSink>,
    producers: FxHashMap<ProducerId, Producer>,
    timers: BinaryHeap<Reverse<(Instant, TransportId)>>,
    dirty: Vec<TransportId>,
    next_id: u64,
    last_speaker_eval: Instant,
    scratch_rtp: Vec<(ProducerId, rtp::Packet)>,
    scratch_pending: Vec<(String, rtp::Packet)>,
    scratch_kf: Vec<String>,
    scratch_events: Vec<RTCPeerConnectionEvent>,
    /// Test hook `MediaConfig::test_refuse_sends` ([`crate::RefuseSends`]), and the refusal
    /// window of each matching Transport once it connected.
    test_refuse: Option<crate::RefuseSends>,
    test_refuse_windows: FxHashMap<TransportId, (Instant, Instant)>,
    /// ICE-TCP (`media.tcp_port`, [`crate::tcp`]): the advertised passive candidate's
    /// address, the TCP tasks' events, each connection's writer, and the remote
    /// addresses bound to a Transport (after a binding success, as for UDP).
    tcp_advertised: Option<SocketAddr>,
    tcp_rx: Option<mpsc::Receiver<crate::tcp::TcpEvent>>,
    tcp_conns: HashMap<SocketAddr, mpsc::Sender<bytes::Bytes>>,
    by_tcp_addr: FxHashMap<SocketAddr, TransportId>,
    /// UDP datagrams of the current [`Engine::flush`], sent in batches.
    out: crate::sendbatch::SendBatch,
    /// Transports that had a batched datagram refused (slow-consumer policy).
    send_refused: Vec<TransportId>,
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
        recorder: Option<RecordSink>,
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
        let (tcp_advertised, tcp_rx) = match config.tcp_port {
            None => (None, None),
            Some(port) => {
                let addr = SocketAddr::new(config.bind_ip, port);
                let bind_err = |source| SfuError::Bind { addr, source };
                let std_listener = std::net::TcpListener::bind(addr).map_err(bind_err)?;
                std_listener.set_nonblocking(true).map_err(bind_err)?;
                let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_err)?;
                let tcp_local = listener.local_addr().map_err(bind_err)?;
                let tcp_adv = SocketAddr::new(advertised.ip(), tcp_local.port());
                let (tx, rx) = mpsc::channel(crate::tcp::EVENT_QUEUE);
                crate::tcp::spawn_acceptor(listener, tx);
                info!(%tcp_local, advertised = %tcp_adv, "ICE-TCP listener bound (passive candidate, RFC 6544)");
                (Some(tcp_adv), Some(rx))
            }
        };
        Ok(Self {
            socket,
            local_addr,
            advertised,
            max_participants: config.max_participants,
            resume_window: Duration::from_millis(config.resume_window_ms),
            ice_timeouts: (
                Duration::from_millis(config.ice_disconnected_timeout_ms),
                Duration::from_millis(config.ice_failed_timeout_ms),
            ),
            stats,
            rx,
            transports: FxHashMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: FxHashMap::default(),
            by_txid: HashMap::new(),
            rooms: HashMap::new(),
            sessions: FxHashMap::default(),
            event_log,
            recorder,
            producers: FxHashMap::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            next_id: 1,
            last_speaker_eval: Instant::now(),
            scratch_rtp: Vec::new(),
            scratch_pending: Vec::new(),
            scratch_kf: Vec::new(),
            scratch_events: Vec::new(),
            test_refuse: config.test_refuse_sends.clone(),
            test_refuse_windows: FxHashMap::default(),
            tcp_advertised,
            tcp_rx,
            tcp_conns: HashMap::new(),
            by_tcp_addr: FxHashMap::default(),
            out: Default::default(),
            send_refused: Vec::new(),
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
                Some(ev) = recv_tcp(&mut self.tcp_rx) => self.handle_tcp(ev),
                _ = sleep => self.handle_timers(),
                _ = tick.tick() => self.housekeeping(Instant::now()),
            }
            self.flush();
        }
    }

    fn shutdown(&mut self) {
        self.rec_shutdown();
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
            Command::Record(t, a, reply) => {
                let r = self.record_control(t, a);
                let _ = reply.send(r);
            }
            Command::Consent(t, accept, reply) => {
                let r = self.consent(t, accept);
                let _ = reply.send(r);
            }
            Command::RecorderKeyframe(p) => {
                let now = Instant::now();
                if let Some(prod) = self.producers.get_mut(&p) {
                    Self::request_keyframe(&self.stats, prod, &mut self.transports, now);
                    let owner = prod.owner;
                    self.mark_dirty(owner);
                }
            }
            Command::RecordingClosed(session, integrity) => self.recording_closed(&session, integrity),
            Command::Leave(t) => self.remove_transport(t, None),
            Command::Resume(req, reply) => {
                let r = self.resume(req);
                let _ = reply.send(r);
            }
            Command::Suspend(t, events) => self.suspend(t, events),
            Command::AckWarning(t, reply) => {
                let r = self.ack_warning(t);
                let _ = reply.send(r);
            }
            Command::Shutdown => {}
        }
    }

    fn join(&mut self, req: JoinRequest) -> Result<JoinReply, SfuError> {
        let session = self.sessions.entry(req.room.clone()).or_insert_with(|| Session {
            id: req.session_id.clone().unwrap_or_else(|| req.room.to_string()),
            case_id: req.case_id.clone(),
            ..Default::default()
        });
        if !req.token_id.is_empty() && session.removed_tokens.contains(&req.token_id) {
            return Err(SfuError::Removed);
        }
        session.ended_for.remove(&req.participant);
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
        let resume_token = self.new_resume_token();
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
        let req_room = req.room.clone();
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
                producers: FxHashMap::default(),
                consumers: FxHashMap::default(),
                connected: false,
                joined_at: Some(Instant::now()),
                negotiated_once: false,
                signaling: RTCSignalingState::Stable,
                needs_offer: false,
                deadline: None,
                dirty: false,
                resume_token: resume_token.clone(),
                resume_token_prev: String::new(),
                reconnecting: None,
                orphans: Vec::new(),
            },
        );
        self.update_gauges();
        if admitted {
            self.rec_present(&req_room, &me.id);
            self.sham_catch_up(&req_room, &me.id);
            self.mute_catch_up(&req_room, &me.id, false);
        }
        Ok(JoinReply { transport: id, participants: others, me, waiting: !admitted, waiting_list, resume_token })
    }

    fn client_offer(&mut self, tid: TransportId, sdp_text: String) -> Result<String, SfuError> {
        let advertised = self.advertised;
        let tcp_advertised = self.tcp_advertised;
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
            if let Some(tcp) = tcp_advertised {
                t.pc.add_local_candidate(tcp_candidate(tcp)?).map_err(rtc_err)?;
            }
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
            // One server offer below for all of them.
            for p in producers {
                self.add_consumer_unoffered(p, tid);
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
            method: None,
            result: None,
            still: None,
            still_sha256: None,
            still_jpeg: None,
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
                    self.add_consumer_unoffered(p, m);
                } else if !want && has {
                    self.remove_consumer(p, m);
                }
            }
        }
        // One server offer per subscriber for all the Consumers added.
        for m in members {
            self.maybe_offer(m);
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
                self.rec_present(&room_id, &id);
                self.sham_catch_up(&room_id, &id);
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
                // The mediator's free-text reason goes to the session event log, not the log.
                info!(room = %room_id, participant = %id, by = %actor, "removed");
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
                self.rec_moved(&room_id, &id, to.as_deref());
                self.broadcast(&room_id, None, ParticipantEvent::Moved { id, to });
            }
            Control::Identity { id, method, result, still } => {
                find(&id)?;
                if !IDENTITY_METHODS.contains(&method.as_str()) {
                    return Err(SfuError::BadField("`method` must be id_document, face_comparison or known_person"));
                }
                if !IDENTITY_RESULTS.contains(&result.as_str()) {
                    return Err(SfuError::BadField("`result` must be verified or failed"));
                }
                let sha = still.as_ref().map(|(_, h)| h.clone());
                info!(room = %room_id, participant = %id, %method, %result, by = %actor, still = sha.is_some(), "identity check");
                self.log(&room_id, &actor, "identity", |e| {
                    e.target = Some(id.to_string());
                    e.method = Some(method.clone());
                    e.result = Some(result.clone());
                    if let Some((jpeg, h)) = still {
                        e.still_sha256 = Some(h);
                        e.still_jpeg = Some(jpeg);
                    }
                });
                let ev = ParticipantEvent::IdentityChecked { id, method, result, by: actor, still_sha256: sha };
                self.notify_mediators(&room_id, ev);
            }
            Control::WarnSham => {
                if let Some(s) = self.sessions.get_mut(&room_id) {
                    s.sham_acks = Some((actor.clone(), HashSet::new()));
                }
                info!(room = %room_id, by = %actor, "sham-mediation warning given");
                self.log(&room_id, &actor, "warn_sham", |_| {});
                let parties: Vec<TransportId> = self
                    .rooms
                    .get(&room_id)
                    .map(|r| {
                        r.members
                            .iter()
                            .filter(|m| m.info.role != MEDIATOR && self.is_admitted(&room_id, &m.info.id))
                            .map(|m| m.transport)
                            .collect()
                    })
                    .unwrap_or_default();
                for t in parties {
                    self.send_to(t, ParticipantEvent::ShamWarning { by: actor.clone() });
                }
            }
            Control::EndSession => {
                info!(room = %room_id, by = %actor, "session ended by the mediator");
                self.log(&room_id, &actor, "end_session", |_| {});
                self.rec_stop(&room_id, Some(actor.clone()));
                let (all, ids): (Vec<TransportId>, Vec<ParticipantId>) = self
                    .rooms
                    .get(&room_id)
                    .map(|r| r.members.iter().map(|m| (m.transport, m.info.id.clone())).unzip())
                    .unwrap_or_default();
                if let Some(s) = self.sessions.get_mut(&room_id) {
                    s.ended_for.extend(ids);
                }
                for t in all {
                    self.remove_transport(t, Some("ended"));
                }
                // Whoever comes back later waits again; removed invites stay removed.
                if let Some(s) = self.sessions.get_mut(&room_id) {
                    s.people.clear();
                    s.sham_acks = None;
                }
            }
        }
        Ok(())
    }

    /// Sends `ev` to every admitted mediator of the room.
    fn notify_mediators(&mut self, room_id: &RoomId, ev: ParticipantEvent) {
        let mediators: Vec<TransportId> = self
            .rooms
            .get(room_id)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|m| m.info.role == MEDIATOR && self.is_admitted(room_id, &m.info.id))
                    .map(|m| m.transport)
                    .collect()
            })
            .unwrap_or_default();
        for t in mediators {
            self.send_to(t, ev.clone());
        }
    }

    /// A party acknowledges the sham-mediation warning (once per warning; repeats are
    /// accepted and change nothing).
    fn ack_warning(&mut self, tid: TransportId) -> Result<(), SfuError> {
        let t = self.transports.get(&tid).ok_or(SfuError::NotJoined)?;
        let (room_id, pid) = (t.room.clone(), t.participant.clone());
        if !self.is_admitted(&room_id, &pid) {
            return Err(SfuError::WrongState("not admitted"));
        }
        let acks = self
            .sessions
            .get_mut(&room_id)
            .and_then(|s| s.sham_acks.as_mut())
            .ok_or(SfuError::WrongState("no sham-mediation warning was given"))?;
        if !acks.1.insert(pid.clone()) {
            return Ok(());
        }
        info!(room = %room_id, participant = %pid, "sham-mediation warning acknowledged");
        self.log(&room_id, &pid, "ack_warning", |_| {});
        self.notify_mediators(&room_id, ParticipantEvent::WarningAcknowledged { id: pid });
        Ok(())
    }

    /// A party admitted (or back) after the sham-mediation warning was given, who has
    /// not acknowledged it, gets it too.
    fn sham_catch_up(&mut self, room_id: &RoomId, pid: &ParticipantId) {
        let Some((by, acks)) = self.sessions.get(room_id).and_then(|s| s.sham_acks.as_ref()) else { return };
        if acks.contains(pid) {
            return;
        }
        let by = by.clone();
        let Some(m) = self.rooms.get(room_id).and_then(|r| r.members.iter().find(|m| m.info.id == *pid)) else { return };
        if m.info.role == MEDIATOR || !self.is_admitted(room_id, pid) {
            return;
        }
        let t = m.transport;
        self.send_to(t, ParticipantEvent::ShamWarning { by });
    }

    /// Tells an admitted participant who joined or resumed the mediator's mutes in
    /// force in the room, their own included, as `MutedByMediator` events: those in
    /// force (`all` = false, a fresh page knows none), or every admitted member's
    /// state (`all` = true, after a resume: a mute lifted meanwhile is cleared too).
    fn mute_catch_up(&mut self, room_id: &RoomId, pid: &ParticipantId, all: bool) {
        let Some(room) = self.rooms.get(room_id) else { return };
        let Some(tid) = room.members.iter().find(|m| m.info.id == *pid).map(|m| m.transport) else { return };
        let Some(session) = self.sessions.get(room_id) else { return };
        let events: Vec<ParticipantEvent> = room
            .members
            .iter()
            .filter_map(|m| session.people.get(&m.info.id).filter(|st| st.admitted).map(|st| (m, st)))
            .filter(|(_, st)| all || st.mute_audio || st.mute_video)
            .map(|(m, st)| ParticipantEvent::MutedByMediator { id: m.info.id.clone(), audio: st.mute_audio, video: st.mute_video })
            .collect();
        for ev in events {
            self.send_to(tid, ev);
        }
    }

    fn standing_mut(&mut self, room: &RoomId, pid: &ParticipantId) -> &mut Standing {
        self.sessions.entry(room.clone()).or_default().people.entry(pid.clone()).or_default()
    }

    // ------------------------------------------------------------------ resume

    /// 128 random bits as hex; empty when resuming is off (`resume_window_ms = 0`).
    fn new_resume_token(&self) -> String {
        if self.resume_window.is_zero() {
            return String::new();
        }
        format!("{:032x}", rand::random::<u128>())
    }

    /// The Transport's signaling connection dropped and stays suspended (media goes on
    /// as long as its path works) until a resume or the end of the window.
    fn suspend(&mut self, tid: TransportId, events: mpsc::Sender<ParticipantEvent>) {
        let window = self.resume_window;
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if !t.events.same_channel(&events) {
            return; // that connection was superseded by a resume
        }
        if window.is_zero() {
            self.remove_transport(tid, None);
            return;
        }
        if t.reconnecting.is_some() {
            return;
        }
        t.reconnecting = Some(Instant::now() + window);
        let (room, pid) = (t.room.clone(), t.participant.clone());
        info!(room = %room, participant = %pid, transport = %tid, window_ms = window.as_millis() as u64,
            "signaling dropped; participant kept for resume");
        self.log(&room, &pid, "reconnecting", |_| {});
        if self.is_admitted(&room, &pid) {
            self.broadcast(&room, Some(&pid), ParticipantEvent::Reconnecting { id: pid.clone() });
        }
    }

    fn resume(&mut self, req: ResumeRequest) -> Result<JoinReply, SfuError> {
        if self.resume_window.is_zero() || req.resume_token.is_empty() {
            return Err(SfuError::ResumeExpired);
        }
        if let Some(s) = self.sessions.get(&req.room) {
            if !req.token_id.is_empty() && s.removed_tokens.contains(&req.token_id) {
                return Err(SfuError::Removed);
            }
            if s.ended_for.contains(&req.participant) {
                return Err(SfuError::SessionEnded);
            }
        }
        let tid = self
            .rooms
            .get(&req.room)
            .and_then(|r| r.members.iter().find(|m| m.info.id == req.participant))
            .map(|m| m.transport)
            .ok_or(SfuError::ResumeExpired)?;
        let new_token = self.new_resume_token();
        let t = self.transports.get_mut(&tid).ok_or(SfuError::ResumeExpired)?;
        // The current token, or the one the last resume presented: that resume's
        // `joined` (with the new token) may never have reached the client.
        let current = ct_eq(t.resume_token.as_bytes(), req.resume_token.as_bytes());
        let previous = !t.resume_token_prev.is_empty() && ct_eq(t.resume_token_prev.as_bytes(), req.resume_token.as_bytes());
        if !(current || previous) {
            return Err(SfuError::ResumeExpired);
        }
        t.resume_token_prev = req.resume_token.clone();
        let was_reconnecting = t.reconnecting.take().is_some();
        t.resume_token = new_token.clone();
        let old = std::mem::replace(&mut t.events, req.events);
        // A connection that is somehow still open learns it was superseded.
        let _ = old.try_send(ParticipantEvent::Closed { reason: "resumed" });
        if req.restart {
            self.restart_transport(tid)?;
        } else if let Some(t) = self.transports.get_mut(&tid) {
            // A server offer the old connection never answered: offer it again.
            if t.signaling == RTCSignalingState::HaveLocalOffer {
                if let Some(sdp) = t.pc.local_description().map(|d| d.sdp) {
                    let _ = t.events.try_send(ParticipantEvent::Offer { sdp });
                }
            }
        }
        let (room_id, pid) = (req.room, req.participant);
        let admitted = self.is_admitted(&room_id, &pid);
        let room = self.rooms.get(&room_id).ok_or(SfuError::ResumeExpired)?;
        let mut others = Vec::new();
        let mut waiting_list = Vec::new();
        let mut me = None;
        for m in &room.members {
            if m.info.id == pid {
                me = Some(m.info.clone());
            } else if self.is_admitted(&room_id, &m.info.id) {
                others.push(m.info.clone());
            } else {
                waiting_list.push(m.info.clone());
            }
        }
        let me = me.ok_or(SfuError::ResumeExpired)?;
        if !admitted {
            others.clear();
            waiting_list.clear();
            waiting_list.push(me.clone());
        }
        if !(admitted && me.role == MEDIATOR) {
            waiting_list.clear();
        }
        info!(room = %room_id, participant = %pid, transport = %tid, restart = req.restart, "participant resumed");
        self.log(&room_id, &pid, "resume", |_| {});
        if admitted && was_reconnecting {
            self.broadcast(&room_id, Some(&pid), ParticipantEvent::Resumed { id: pid.clone() });
        }
        if admitted {
            if let Some(st) = self.rec_status(&room_id) {
                self.send_to(tid, ParticipantEvent::Recording(st));
            }
            self.sham_catch_up(&room_id, &pid);
            self.mute_catch_up(&room_id, &pid, true);
        }
        self.mark_dirty(tid);
        Ok(JoinReply { transport: tid, participants: others, me, waiting: !admitted, waiting_list, resume_token: new_token })
    }

    /// Gives the Transport a new peer connection (the client moved to a new network
    /// path and built a new one): the old connection closes, the participant's
    /// Consumers go (its new offer brings them back), its Producers wait for the new
    /// connection's tracks ([`Transport::orphans`]), so the others' Consumers stay.
    fn restart_transport(&mut self, tid: TransportId) -> Result<(), SfuError> {
        let ufrag = format!("fq{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let pwd = format!("{:032x}", rand::random::<u128>());
        let pc = sdp::peer_connection_with_timeouts(&ufrag, &pwd, self.ice_timeouts.0, self.ice_timeouts.1)?;
        let t = self.transports.get_mut(&tid).ok_or(SfuError::NotJoined)?;
        let mut old_pc = std::mem::replace(&mut t.pc, pc);
        let old_ufrag = std::mem::replace(&mut t.ufrag, ufrag.clone());
        let old_addrs = std::mem::take(&mut t.addrs);
        let consumers: Vec<(ProducerId, ConsumerId)> = t.consumers.drain().map(|(_, v)| v).collect();
        let producers: Vec<ProducerId> = t.producers.drain().map(|(_, p)| p).collect();
        t.orphans.extend(producers);
        t.connected = false;
        t.negotiated_once = false;
        t.signaling = RTCSignalingState::Stable;
        t.needs_offer = false;
        t.deadline = None;
        let _ = old_pc.close();
        while let Some(msg) = old_pc.poll_write() {
            if msg.transport.transport_protocol == TransportProtocol::UDP {
                let _ = self.socket.try_send_to(&msg.message, msg.transport.peer_addr);
            }
        }
        self.by_ufrag.remove(&old_ufrag);
        self.by_ufrag.insert(ufrag, tid);
        for a in old_addrs {
            if self.by_addr.get(&a) == Some(&tid) {
                self.by_addr.remove(&a);
            }
        }
        self.by_tcp_addr.retain(|_, v| *v != tid);
        for (pid, cid) in consumers {
            if let Some(p) = self.producers.get_mut(&pid) {
                p.consumers.retain(|c| c.id != cid);
            }
        }
        self.update_gauges();
        Ok(())
    }

    /// Whether the Transport's signaling connection is gone and it waits for a resume.
    fn suspended(&self, tid: TransportId) -> bool {
        self.transports.get(&tid).is_some_and(|t| t.reconnecting.is_some())
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
        // Every current Consumer's track is in this offer.
        for (pid, cid) in t.consumers.values() {
            if let Some(c) = self.producers.get_mut(pid).and_then(|p| p.consumers.iter_mut().find(|c| c.id == *cid)) {
                c.offered = true;
            }
        }
        match t.events.try_send(ParticipantEvent::Offer { sdp }) {
            Ok(()) => {}
            // The signaling connection is gone and the Transport waits for a resume: the
            // offer stays the local description, and `resume` sends it again.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!(transport = %tid, "signaling queue full; closing");
                self.remove_transport(tid, Some("slow_signaling"));
                return;
            }
        }
        self.mark_dirty(tid);
    }

    /// After a negotiation, learn the outgoing payload type of each Consumer whose
    /// track the subscriber has answered (one a server offer carried).
    fn resolve_consumers(&mut self, tid: TransportId) {
        let Some(t) = self.transports.get_mut(&tid) else { return };
        for (pid, cid) in t.consumers.values() {
            let Some(prod) = self.producers.get_mut(pid) else { continue };
            let Some(codec) = prod.codec.clone() else { continue };
            let Some(c) = prod.consumers.iter_mut().find(|c| c.id == *cid) else { continue };
            if c.pt.is_some() || !c.offered {
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
        self.add_consumer_unoffered(pid, tid);
        self.maybe_offer(tid);
    }

    /// [`Self::add_consumer`] without the server offer: the caller sends one offer
    /// for all the Consumers it adds (one renegotiation instead of one per track).
    fn add_consumer_unoffered(&mut self, pid: ProducerId, tid: TransportId) {
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
            offered: false,
            needs_keyframe: video,
            seq_delta: 0,
            last_out_seq: None,
            resume_seq: None,
            rebase: false,
            ts_delta: 0,
            last_out_ts: None,
        });
        debug!(producer = %pid, consumer = %cid, subscriber = %tid, "consumer created");
        self.update_gauges();
    }

    fn open_producer(&mut self, tid: TransportId, receiver: RTCRtpReceiverId, track_id: String, ssrc: u32) {
        let id = ProducerId(self.next_id());
        let Some(t) = self.transports.get_mut(&tid) else { return };
        if t.producers.contains_key(&track_id) {
            return; // a second simulcast layer of the same track: one layer is forwarded
        }
        let Some(rx) = t.pc.rtp_receiver(receiver) else { return };
        let kind = rx.track().kind();
        // After a resume with a new peer connection, its tracks continue the old Producers.
        if let Some(i) = t.orphans.iter().position(|o| self.producers.get(o).is_some_and(|p| p.kind == kind)) {
            let pid = t.orphans.remove(i);
            t.producers.insert(track_id.clone(), pid);
            if let Some(p) = self.producers.get_mut(&pid) {
                p.receiver = receiver;
                p.track_id = track_id;
                p.media_ssrc = ssrc;
                p.codec = None; // learnt again from the first packet
                p.level = 127.0;
                p.last_keyframe_request = None;
                p.keyframe_request_deferred = false;
                p.rec_needs_keyframe = kind == RtpCodecKind::Video;
                // A new source (SSRC, sequence and RTP time start afresh): the recorder
                // closes the track it had and records what follows as a new track.
                if std::mem::take(&mut p.rec_seen) {
                    if let (Some(sink), Some(rec)) =
                        (&self.recorder, self.sessions.get(&p.room).and_then(|s| s.rec.as_ref()))
                    {
                        sink.send(RecordMsg::TrackEnded { session: rec.session.clone(), producer: pid });
                    }
                }
                for c in p.consumers.iter_mut() {
                    c.rebase = true;
                    c.needs_keyframe = kind == RtpCodecKind::Video;
                }
                info!(producer = %pid, ?kind, ssrc, "producer continues on the resumed connection");
            }
            return;
        }
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
                rec_needs_keyframe: kind == RtpCodecKind::Video,
                rec_seen: false,
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
            if !room.producers.contains(&pid) {
                room.producers.push(pid); // (already there when resumed on a new connection)
            }
            let subs: Vec<TransportId> =
                room.members.iter().map(|m| m.transport).filter(|t| *t != owner).collect();
            for s in subs {
                self.add_consumer(pid, s);
            }
        }
    }

    fn close_producer(&mut self, pid: ProducerId) {
        for sub in self.close_producer_unoffered(pid) {
            self.maybe_offer(sub);
        }
    }

    /// [`Self::close_producer`] without the server offers: returns the subscribers
    /// whose Consumers went, so a caller closing several Producers (a participant
    /// leaving) sends each subscriber one offer for all of them.
    fn close_producer_unoffered(&mut self, pid: ProducerId) -> Vec<TransportId> {
        let mut subscribers = Vec::new();
        let Some(prod) = self.producers.remove(&pid) else { return subscribers };
        if prod.rec_seen {
            if let (Some(sink), Some(rec)) =
                (&self.recorder, self.sessions.get(&prod.room).and_then(|s| s.rec.as_ref()))
            {
                sink.send(RecordMsg::TrackEnded { session: rec.session.clone(), producer: pid });
            }
        }
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
                subscribers.push(c.transport);
            }
        }
        prod.span.in_scope(|| info!(producer = %pid, "producer closed"));
        self.update_gauges();
        subscribers
    }

    fn remove_transport(&mut self, tid: TransportId, reason: Option<&'static str>) {
        let Some(mut t) = self.transports.remove(&tid) else { return };
        self.by_ufrag.remove(&t.ufrag);
        for a in &t.addrs {
            self.by_addr.remove(a);
        }
        if !self.by_tcp_addr.is_empty() {
            self.by_tcp_addr.retain(|_, v| *v != tid);
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
        // Its Producers end for everyone (with those a resume left without a track).
        let producers: Vec<ProducerId> = t.producers.values().copied().chain(t.orphans.iter().copied()).collect();
        let mut subscribers: Vec<TransportId> = Vec::new();
        for p in producers {
            subscribers.extend(self.close_producer_unoffered(p));
        }
        subscribers.sort_unstable();
        subscribers.dedup();
        for sub in subscribers {
            self.maybe_offer(sub);
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
        if empty && reason == Some("replaced") {
            // The same participant joins again at once (a second tab, a reload): the
            // room and its recording go on; the join that replaced them follows.
        } else if empty {
            self.rec_stop(&room_id, None);
            self.rooms.remove(&room_id);
            info!(room = %room_id, "room closed (empty)");
        } else if admitted {
            self.broadcast(&room_id, None, ParticipantEvent::Left { id: pid });
            self.rec_evaluate(&room_id);
            // The consent list names who is present: it lost someone.
            self.rec_broadcast(&room_id);
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
        self.handle_packet(data, from, TransportProtocol::UDP);
    }

    /// One UDP datagram, or one RFC 4571 frame from an ICE-TCP connection.
    fn handle_packet(&mut self, data: &[u8], from: SocketAddr, proto: TransportProtocol) {
        SfuStats::add(&self.stats.datagrams_in, 1);
        SfuStats::add(&self.stats.bytes_in, data.len() as u64);
        if data.len() > MAX_DATAGRAM {
            SfuStats::add(&self.stats.dropped_malformed, 1);
            return;
        }
        let kind = demux::classify(data);
        let tcp = proto == TransportProtocol::TCP;
        let bound = if tcp { &self.by_tcp_addr } else { &self.by_addr };
        let tid = match bound.get(&from) {
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
        let advertised = match (tcp, self.tcp_advertised) {
            (true, Some(a)) => a,
            _ => self.advertised,
        };
        let Some(t) = self.transports.get_mut(&tid) else { return };
        let msg = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: advertised,
                peer_addr: from,
                ecn: None,
                transport_protocol: proto,
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
        self.send_out();
        if !self.send_refused.is_empty() {
            let mut refused = std::mem::take(&mut self.send_refused);
            refused.sort_unstable();
            refused.dedup();
            for tid in refused.drain(..) {
                self.on_send_failed(tid);
            }
            self.send_refused = refused;
        }
    }

    /// Sends the queued UDP datagrams ([`crate::sendbatch`]) and counts them.
    fn send_out(&mut self) {
        if !self.out.is_empty() {
            let s = self.out.send(&self.socket, &mut self.send_refused);
            Self::count_sent(&self.stats, &s);
        }
    }

    fn count_sent(stats: &SfuStats, s: &crate::sendbatch::Sent) {
        SfuStats::add(&stats.datagrams_out, s.datagrams);
        SfuStats::add(&stats.bytes_out, s.bytes);
        SfuStats::add(&stats.dropped_send, s.refused);
    }

    fn drain(&mut self, tid: TransportId) {
        let now = Instant::now();
        let mut rtp = std::mem::take(&mut self.scratch_rtp);
        let mut pending = std::mem::take(&mut self.scratch_pending);
        let mut kf = std::mem::take(&mut self.scratch_kf);
        let mut events = std::mem::take(&mut self.scratch_events);
        let mut new_addrs: Vec<SocketAddr> = Vec::new();
        let mut new_tcp_addrs: Vec<SocketAddr> = Vec::new();
        let mut srs: Vec<(String, u32, u64, u32)> = Vec::new();
        let mut send_failed = false;
        let refuse = self.test_refused(tid, now);
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
            // At most two passes: the second only after ICE connected (see below).
            let mut kicked = false;
            loop {
                while let Some(msg) = t.pc.poll_write() {
                    let to = msg.transport.peer_addr;
                    if demux::is_binding_request(&msg.message) {
                        if let Some(txid) = demux::stun_transaction_id(&msg.message) {
                            self.by_txid.insert(txid, (tid, now));
                        }
                    }
                    let tcp = msg.transport.transport_protocol == TransportProtocol::TCP;
                    if demux::is_binding_success(&msg.message) {
                        if tcp {
                            if self.by_tcp_addr.get(&to) != Some(&tid) {
                                new_tcp_addrs.push(to);
                            }
                        } else if !t.addrs.contains(&to) {
                            t.addrs.push(to);
                            new_addrs.push(to);
                        }
                    }
                    let sent = if refuse {
                        Err(std::io::ErrorKind::WouldBlock.into())
                    } else if tcp {
                        Self::send_tcp(&self.tcp_conns, &msg.message, to)
                    } else {
                        if self.out.push(tid, to, msg.message) {
                            let s = self.out.send(&self.socket, &mut self.send_refused);
                            Self::count_sent(&self.stats, &s);
                        }
                        continue;
                    };
                    match sent {
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
                let seen = events.len();
                while let Some(ev) = t.pc.poll_event() {
                    events.push(ev);
                }
                // ICE just selected a pair (the client's USE-CANDIDATE check). As the DTLS
                // client (our answer's `a=setup:active`) `rtc` starts the handshake on that, in
                // `poll_event`, but leaves the ClientHello inside its DTLS endpoint until the
                // next `handle_timeout` or DTLS read (rtc 0.21.1
                // `peer_connection/handler/dtls.rs`, `handle_event`: `connect` without
                // `poll_transmit`). No deadline asks for that soon, so without this the
                // handshake waited for some later timer. `handle_timeout` before a deadline
                // does nothing else (every handler checks its own deadline).
                if !kicked
                    && events[seen..].iter().any(|e| {
                        matches!(
                            e,
                            RTCPeerConnectionEvent::OnIceConnectionStateChangeEvent(RTCIceConnectionState::Connected)
                        )
                    })
                {
                    kicked = true;
                    if let Err(e) = t.pc.handle_timeout(now) {
                        debug!(transport = %tid, "handle_timeout after ICE connected: {e}");
                    }
                    continue;
                }
                break;
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
                        } else if let Some((ssrc, ntp, rtp_ts)) = crate::tap::sender_report(&pkts) {
                            srs.push((track, ssrc, ntp, rtp_ts));
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
        for a in new_tcp_addrs {
            debug!(addr = %a, transport = %tid, "ICE-TCP connection bound");
            self.by_tcp_addr.insert(a, tid);
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
        for (track, ssrc, ntp, rtp_ts) in srs {
            self.rec_sender_report(tid, &track, ssrc, ntp, rtp_ts);
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
                            if let Some(at) = t.joined_at.take() {
                                self.stats.join_seconds.observe(at.elapsed());
                            }
                        }
                        info!(transport = %tid, "transport connected (ICE + DTLS)");
                        self.arm_test_refuse(tid);
                    }
                    // While suspended the resume window decides (the client may come
                    // back on a new connection).
                    RTCPeerConnectionState::Failed if self.suspended(tid) => {
                        SfuStats::add(&self.stats.transport_failures, 1);
                    }
                    RTCPeerConnectionState::Closed if self.suspended(tid) => {}
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
                if state == RTCIceConnectionState::Failed && !self.suspended(tid) {
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
        if let Some(sink) = &self.recorder {
            if let Some(rec) = self.sessions.get(&prod.room).and_then(|s| s.rec.as_ref().filter(|r| r.active).map(|r| (r, s))) {
                wants_keyframe |= Self::tap(&self.stats, sink, rec.0, rec.1, prod, &pkt, key);
            }
        }
        // The codec's RTP clock (Hz), for timestamp continuity on a new source.
        let clock = match prod.video {
            Some(_) => 90_000,
            None => prod.codec.as_ref().map_or(48_000, |c| c.clock_rate),
        };
        for c in prod.consumers.iter_mut() {
            let Some(out_pt) = c.pt else { continue };
            let Some(t) = self.transports.get_mut(&c.transport) else { continue };
            if !t.connected {
                continue;
            }
            let seq = pkt.header.sequence_number;
            if c.rebase && !(prod.video.is_some() && c.needs_keyframe) {
                // A new source (resumed publisher): continue the outgoing numbering.
                Self::rebase_consumer(c, &pkt.header, clock, now);
            }
            if prod.video.is_some() && c.needs_keyframe {
                if !key {
                    SfuStats::add(&self.stats.dropped_waiting_keyframe, 1);
                    wants_keyframe = true;
                    continue;
                }
                c.needs_keyframe = false;
                if c.rebase {
                    Self::rebase_consumer(c, &pkt.header, clock, now);
                } else {
                    // Same source after a skip: only the sequence numbers close the gap.
                    c.seq_delta = match c.last_out_seq {
                        Some(last) => seq.wrapping_sub(last.wrapping_add(1)),
                        None => 0,
                    };
                    c.resume_seq = Some(seq);
                }
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
                    timestamp: pkt.header.timestamp.wrapping_sub(c.ts_delta),
                    ssrc: c.ssrc,
                    ..Default::default()
                },
                payload: pkt.payload.clone(),
            };
            match t.pc.rtp_sender(c.sender).map(|mut s| s.write_rtp(now, out)) {
                Some(Ok(())) => {
                    c.last_out_seq = Some(out_seq);
                    c.last_out_ts = Some((pkt.header.timestamp.wrapping_sub(c.ts_delta), now));
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

    /// A Consumer's first packet from a new source (the publisher resumed on a new
    /// connection): its sequence numbers continue from the last one sent, and its RTP
    /// timestamps from the last one sent plus the time since (in `clock` Hz, at least
    /// one tick), so the subscriber sees one continuous stream (RFC 3550 §5.1: the
    /// timestamp is monotonic within a stream). Packets of the new source older than
    /// this one are not forwarded.
    fn rebase_consumer(c: &mut Consumer, h: &rtp::header::Header, clock: u32, now: Instant) {
        c.rebase = false;
        c.seq_delta = match c.last_out_seq {
            Some(last) => h.sequence_number.wrapping_sub(last.wrapping_add(1)),
            None => 0,
        };
        c.resume_seq = Some(h.sequence_number);
        c.ts_delta = match c.last_out_ts {
            Some((last, at)) => {
                let ticks = (now.duration_since(at).as_secs_f64() * f64::from(clock)).min(f64::from(u32::MAX / 4));
                let next = last.wrapping_add((ticks as u32).max(1));
                h.timestamp.wrapping_sub(next)
            }
            None => 0,
        };
    }

    /// Asks the Producer's publisher for a keyframe: PLI (RFC 4585 §6.3.1), or FIR
    /// (RFC 5104 §4.3.1) when only `ccm fir` was negotiated; at most one per
    /// [`KEYFRAME_DEBOUNCE`], a later one deferred to the next tick.
    fn request_keyframe(
        stats: &SfuStats,
        prod: &mut Producer,
        transports: &mut FxHashMap<TransportId, Transport>,
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

    /// Test hook: opens the refusal window of [`crate::RefuseSends`] when its
    /// participant's Transport connects.
    fn arm_test_refuse(&mut self, tid: TransportId) {
        let Some(r) = &self.test_refuse else { return };
        let Some(t) = self.transports.get(&tid) else { return };
        if t.participant == r.participant && !self.test_refuse_windows.contains_key(&tid) {
            let start = Instant::now() + r.after;
            warn!(transport = %tid, participant = %t.participant, after = ?r.after, duration = ?r.duration,
                "TEST HOOK test_refuse_sends armed: sends to this participant will be refused");
            self.test_refuse_windows.insert(tid, (start, start + r.duration));
        }
    }

    /// Test hook: whether sends to this Transport are refused now.
    fn test_refused(&self, tid: TransportId, now: Instant) -> bool {
        if self.test_refuse_windows.is_empty() {
            return false;
        }
        self.test_refuse_windows.get(&tid).is_some_and(|&(start, end)| now >= start && now < end)
    }

    /// ICE-TCP: a connection opened, sent a frame, or ended.
    fn handle_tcp(&mut self, ev: crate::tcp::TcpEvent) {
        use crate::tcp::TcpEvent;
        match ev {
            TcpEvent::Open { peer, tx } => {
                self.tcp_conns.insert(peer, tx);
            }
            TcpEvent::Frame { peer, data } => self.handle_packet(&data, peer, TransportProtocol::TCP),
            TcpEvent::Closed { peer } => {
                self.tcp_conns.remove(&peer);
                if let Some(tid) = self.by_tcp_addr.remove(&peer) {
                    debug!(%peer, transport = %tid, "ICE-TCP connection closed");
                }
            }
        }
    }

    /// Queues one packet for an ICE-TCP connection; a full queue or a closed
    /// connection is a refused send (never waits).
    fn send_tcp(
        conns: &HashMap<SocketAddr, mpsc::Sender<bytes::Bytes>>,
        data: &[u8],
        to: SocketAddr,
    ) -> std::io::Result<usize> {
        let Some(tx) = conns.get(&to) else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        tx.try_send(bytes::Bytes::copy_from_slice(data))
            .map(|_| data.len())
            .map_err(|_| std::io::ErrorKind::WouldBlock.into())
    }

    // ------------------------------------------------------------ housekeeping

    fn housekeeping(&mut self, now: Instant) {
        // Participants whose resume window passed leave now.
        if !self.resume_window.is_zero() {
            let expired: Vec<TransportId> = self
                .transports
                .iter()
                .filter(|(_, t)| t.reconnecting.is_some_and(|d| now >= d))
                .map(|(id, _)| *id)
                .collect();
            for tid in expired {
                self.remove_transport(tid, Some("resume_expired"));
            }
        }
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
            let rec_waiting = prod.rec_needs_keyframe
                && self.sessions.get(&prod.room).and_then(|s| s.rec.as_ref()).is_some_and(|r| r.active);
            let waiting = rec_waiting
                || prod.consumers.iter().any(|c| {
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

// ------------------------------------------------------------------ recording

/// Longest pause reason kept, characters.
const MAX_PAUSE_REASON: usize = 200;

impl Engine {
    /// The mediator's `record` control.
    fn record_control(&mut self, tid: TransportId, a: RecordAction) -> Result<(), SfuError> {
        let t = self.transports.get(&tid).ok_or(SfuError::NotJoined)?;
        let (room_id, actor) = (t.room.clone(), t.participant.clone());
        let is_mediator = self
            .rooms
            .get(&room_id)
            .and_then(|r| r.members.iter().find(|m| m.transport == tid))
            .is_some_and(|m| m.info.role == MEDIATOR);
        if !is_mediator || !self.is_admitted(&room_id, &actor) {
            return Err(SfuError::Forbidden("only the mediator may control recording"));
        }
        let Some(sink) = self.recorder.clone() else {
            return Err(SfuError::Rtc("this server runs without a recorder".into()));
        };
        let now = SystemTime::now();
        let session = self.sessions.entry(room_id.clone()).or_default();
        match a {
            RecordAction::Start => {
                if let Some(r) = &session.rec {
                    return Err(SfuError::WrongState(if r.stopped {
                        "recording of this session was stopped; its record is closed"
                    } else {
                        "already recording"
                    }));
                }
                let id: Arc<str> = Arc::from(session.id.as_str());
                let participants: Vec<ParticipantInfo> = self
                    .rooms
                    .get(&room_id)
                    .map(|r| {
                        r.members
                            .iter()
                            .filter(|m| session.people.get(&m.info.id).is_some_and(|st| st.admitted))
                            .map(|m| m.info.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let msg = RecordMsg::Start {
                    session: RecSession { id: id.clone(), room: room_id.clone(), case_id: session.case_id.clone() },
                    actor: actor.clone(),
                    time: now,
                    participants: participants.clone(),
                };
                if !sink.send(msg) {
                    return Err(SfuError::Rtc("the recorder is not keeping up; try again".into()));
                }
                let mut consent = HashMap::new();
                // Starting is the mediator's own consent.
                consent.insert(actor.clone(), true);
                sink.send(RecordMsg::Consent { session: id.clone(), participant: actor.clone(), accept: true, time: now });
                session.rec = Some(Rec {
                    session: id,
                    stopped: false,
                    integrity: None,
                    manual_pause: None,
                    active: true,
                    reason: None,
                    consent,
                    announced: participants.iter().map(|p| p.id.clone()).collect(),
                });
                // Side rooms of those present now.
                let sides: Vec<(ParticipantId, String)> = session
                    .people
                    .iter()
                    .filter_map(|(p, st)| st.side.clone().filter(|_| st.admitted).map(|s| (p.clone(), s)))
                    .collect();
                for (p, side) in sides {
                    self.rec_moved(&room_id, &p, Some(&side));
                }
                SfuStats::add(&self.stats.recordings_active, 1);
                info!(room = %room_id, by = %actor, "recording started");
                self.log(&room_id, &actor, "record_start", |_| {});
                self.rec_rearm_keyframes(&room_id);
                // Anyone present who has not consented pauses it at once.
                self.rec_evaluate(&room_id);
                self.rec_broadcast(&room_id);
            }
            RecordAction::Pause(reason) => {
                let reason: String = reason.trim().chars().filter(|c| !c.is_control()).collect();
                if reason.is_empty() || reason.chars().count() > MAX_PAUSE_REASON {
                    return Err(SfuError::BadField("`reason` must be 1-200 characters (SPC 2017 art. 3: every pause has its reason)"));
                }
                let rec = session.rec.as_mut().filter(|r| !r.stopped).ok_or(SfuError::WrongState("not recording"))?;
                if rec.manual_pause.is_some() {
                    return Err(SfuError::WrongState("already paused"));
                }
                rec.manual_pause = Some(reason.clone());
                let was_active = rec.active;
                rec.active = false;
                rec.reason = Some(reason.clone());
                let sid = rec.session.clone();
                if was_active {
                    sink.send(RecordMsg::Pause { session: sid, actor: Some(actor.clone()), reason: reason.clone(), time: now });
                }
                // Free text (may name people): in the manifest and event log, not the log.
                info!(room = %room_id, by = %actor, "recording paused");
                self.log(&room_id, &actor, "record_pause", |e| e.reason = Some(reason));
                self.rec_broadcast(&room_id);
            }
            RecordAction::Resume => {
                let rec = session.rec.as_mut().filter(|r| !r.stopped).ok_or(SfuError::WrongState("not recording"))?;
                if rec.manual_pause.take().is_none() {
                    return Err(SfuError::WrongState("not paused by the mediator"));
                }
                info!(room = %room_id, by = %actor, "recording resume asked");
                self.log(&room_id, &actor, "record_resume", |_| {});
                // Resumes only if everyone present has consented.
                self.rec_evaluate_by(&room_id, Some(actor));
                self.rec_broadcast(&room_id);
            }
            RecordAction::Stop => {
                if session.rec.as_ref().is_none_or(|r| r.stopped) {
                    return Err(SfuError::WrongState("not recording"));
                }
                self.log(&room_id, &actor, "record_stop", |_| {});
                self.rec_stop(&room_id, Some(actor));
            }
        }
        Ok(())
    }

    /// A participant's consent answer.
    fn consent(&mut self, tid: TransportId, accept: bool) -> Result<(), SfuError> {
        let t = self.transports.get(&tid).ok_or(SfuError::NotJoined)?;
        let (room_id, pid) = (t.room.clone(), t.participant.clone());
        if !self.is_admitted(&room_id, &pid) {
            return Err(SfuError::WrongState("wait until the mediator admits you"));
        }
        let sink = self.recorder.clone();
        let session = self.sessions.entry(room_id.clone()).or_default();
        let Some(rec) = session.rec.as_mut().filter(|r| !r.stopped) else {
            return Err(SfuError::WrongState("nothing is being recorded"));
        };
        if rec.consent.get(&pid) == Some(&accept) {
            return Ok(()); // same answer again
        }
        rec.consent.insert(pid.clone(), accept);
        if let Some(sink) = &sink {
            sink.send(RecordMsg::Consent { session: rec.session.clone(), participant: pid.clone(), accept, time: SystemTime::now() });
        }
        info!(room = %room_id, participant = %pid, accept, "recording consent");
        self.log(&room_id, &pid, if accept { "consent_accept" } else { "consent_refuse" }, |_| {});
        self.rec_evaluate(&room_id);
        self.rec_broadcast(&room_id);
        Ok(())
    }

    /// Someone is present (admitted) in a recorded session: announce them and
    /// re-check consent (a newcomer who has not answered pauses the recording).
    fn rec_present(&mut self, room_id: &RoomId, pid: &ParticipantId) {
        let info = self
            .rooms
            .get(room_id)
            .and_then(|r| r.members.iter().find(|m| m.info.id == *pid))
            .map(|m| m.info.clone());
        let Some(rec) = self.sessions.get_mut(room_id).and_then(|s| s.rec.as_mut()).filter(|r| !r.stopped) else {
            // Not recording: only tell the newcomer the state (e.g. stopped with its value).
            if let Some(tid) = self.member_transport(room_id, pid) {
                if let Some(st) = self.rec_status(room_id) {
                    self.send_to(tid, ParticipantEvent::Recording(st));
                }
            }
            return;
        };
        if let (Some(info), true) = (info, rec.announced.insert(pid.clone())) {
            if let Some(sink) = &self.recorder {
                sink.send(RecordMsg::Participant { session: rec.session.clone(), info, time: SystemTime::now() });
            }
        }
        self.rec_evaluate(room_id);
        self.rec_broadcast(room_id);
    }

    fn member_transport(&self, room_id: &RoomId, pid: &ParticipantId) -> Option<TransportId> {
        self.rooms.get(room_id)?.members.iter().find(|m| m.info.id == *pid).map(|m| m.transport)
    }

    fn rec_moved(&mut self, room_id: &RoomId, pid: &ParticipantId, side: Option<&str>) {
        let Some(rec) = self.sessions.get(room_id).and_then(|s| s.rec.as_ref()).filter(|r| !r.stopped) else { return };
        if let Some(sink) = &self.recorder {
            sink.send(RecordMsg::Moved {
                session: rec.session.clone(),
                participant: pid.clone(),
                room: side.unwrap_or("main").to_owned(),
                time: SystemTime::now(),
            });
        }
    }

    /// Re-derives whether packets flow: started, not paused by the mediator, and
    /// every admitted participant present has consented. Sends pause/resume on change.
    fn rec_evaluate(&mut self, room_id: &RoomId) {
        self.rec_evaluate_by(room_id, None);
    }

    fn rec_evaluate_by(&mut self, room_id: &RoomId, actor: Option<ParticipantId>) {
        let present: Vec<ParticipantId> = self
            .rooms
            .get(room_id)
            .map(|r| r.members.iter().filter(|m| self.is_admitted(room_id, &m.info.id)).map(|m| m.info.id.clone()).collect())
            .unwrap_or_default();
        let Some(rec) = self.sessions.get_mut(room_id).and_then(|s| s.rec.as_mut()).filter(|r| !r.stopped) else { return };
        let refused = present.iter().find(|p| rec.consent.get(*p) == Some(&false));
        let missing = present.iter().find(|p| !rec.consent.contains_key(*p));
        let auto = match (refused, missing) {
            (Some(p), _) => Some(format!("consent refused by {p}")),
            (None, Some(p)) => Some(format!("awaiting consent of {p}")),
            (None, None) => None,
        };
        let want = rec.manual_pause.is_none() && auto.is_none();
        let now = SystemTime::now();
        let session = rec.session.clone();
        if want == rec.active {
            if !want {
                let reason = rec.manual_pause.clone().or(auto);
                // Paused already, for another reason now (e.g. waiting → refused): log it.
                if reason != rec.reason && rec.manual_pause.is_none() {
                    if let (Some(r), Some(sink)) = (&reason, &self.recorder) {
                        sink.send(RecordMsg::Pause { session, actor: None, reason: r.clone(), time: now });
                    }
                }
                rec.reason = reason;
            }
            return;
        }
        rec.active = want;
        let sink = self.recorder.clone();
        if want {
            rec.reason = None;
            if let Some(sink) = &sink {
                sink.send(RecordMsg::Resume { session, actor: actor.clone(), time: now });
            }
            info!(room = %room_id, "recording resumed");
            let who = actor.unwrap_or_else(|| ParticipantId::from("system"));
            self.log(room_id, &who, "record_resumed", |_| {});
            self.rec_rearm_keyframes(room_id);
        } else {
            let reason = rec.manual_pause.clone().or(auto).unwrap_or_default();
            rec.reason = Some(reason.clone());
            if let Some(sink) = &sink {
                sink.send(RecordMsg::Pause { session, actor: None, reason: reason.clone(), time: now });
            }
            // An automatic reason names participants by id only; a mediator's is free text.
            let logged = if rec.manual_pause.is_some() { "mediator's pause (reason in the event log)" } else { reason.as_str() };
            info!(room = %room_id, reason = %logged, "recording paused automatically");
            self.log(room_id, &ParticipantId::from("system"), "record_paused", |e| e.reason = Some(reason));
        }
    }

    /// Video Producers of the room wait for a keyframe before the recorder gets them.
    fn rec_rearm_keyframes(&mut self, room_id: &RoomId) {
        for p in self.producers.values_mut() {
            if p.room == *room_id && p.video.is_some() {
                p.rec_needs_keyframe = true;
            }
        }
    }

    /// Stops the session's recording (mediator, end of session, empty room).
    fn rec_stop(&mut self, room_id: &RoomId, actor: Option<ParticipantId>) {
        self.rec_stop_with(room_id, actor, None);
    }

    fn rec_stop_with(&mut self, room_id: &RoomId, actor: Option<ParticipantId>, interrupted: Option<String>) {
        let Some(rec) = self.sessions.get_mut(room_id).and_then(|s| s.rec.as_mut()).filter(|r| !r.stopped) else { return };
        rec.stopped = true;
        rec.active = false;
        rec.reason = None;
        if let Some(sink) = &self.recorder {
            sink.send(RecordMsg::Stop { session: rec.session.clone(), actor, time: SystemTime::now(), interrupted });
        }
        SfuStats::sub(&self.stats.recordings_active, 1);
        info!(room = %room_id, "recording stopped; waiting for the integrity check value");
        self.rec_broadcast(room_id);
    }

    /// Graceful shutdown: every running recording is closed out as interrupted.
    pub(crate) fn rec_shutdown(&mut self) {
        let rooms: Vec<RoomId> = self.sessions.iter().filter(|(_, s)| s.rec.as_ref().is_some_and(|r| !r.stopped)).map(|(r, _)| r.clone()).collect();
        for r in rooms {
            self.rec_stop_with(&r, None, Some("server shutdown".to_owned()));
        }
    }

    /// The recorder signed the closed record.
    fn recording_closed(&mut self, session: &str, integrity: Option<String>) {
        let room = self.sessions.iter().find(|(_, s)| s.id == session).map(|(r, _)| r.clone());
        let Some(room_id) = room else { return };
        if let Some(rec) = self.sessions.get_mut(&room_id).and_then(|s| s.rec.as_mut()) {
            rec.integrity = integrity.clone();
        }
        info!(room = %room_id, integrity = integrity.as_deref().unwrap_or("-"), "recording closed");
        self.rec_broadcast(&room_id);
    }

    fn rec_status(&self, room_id: &RoomId) -> Option<RecordingStatus> {
        let s = self.sessions.get(room_id)?;
        let rec = s.rec.as_ref()?;
        let consent = self
            .rooms
            .get(room_id)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|m| self.is_admitted(room_id, &m.info.id))
                    .map(|m| (m.info.id.clone(), rec.consent.get(&m.info.id).copied()))
                    .collect()
            })
            .unwrap_or_default();
        let state = if rec.stopped {
            "stopped"
        } else if rec.active {
            "recording"
        } else {
            "paused"
        };
        Some(RecordingStatus { state, reason: rec.reason.clone(), consent, integrity: rec.integrity.clone() })
    }

    /// Tells every admitted participant the recording state.
    fn rec_broadcast(&mut self, room_id: &RoomId) {
        if let Some(st) = self.rec_status(room_id) {
            self.broadcast(room_id, None, ParticipantEvent::Recording(st));
        }
    }

    /// Hands one packet of a recorded Producer to the recorder. Returns true when
    /// a keyframe should be asked for (the recorder waits for one).
    fn tap(
        stats: &SfuStats,
        sink: &RecordSink,
        rec: &Rec,
        session: &Session,
        prod: &mut Producer,
        pkt: &rtp::Packet,
        key: bool,
    ) -> bool {
        let Some(st) = session.people.get(&prod.participant).filter(|st| st.admitted) else { return false };
        if prod.video.is_some() && prod.rec_needs_keyframe {
            if !key {
                return true;
            }
            prod.rec_needs_keyframe = false;
        }
        let (codec, kind, clock_rate) = match (prod.video, prod.kind) {
            (Some(VideoCodec::Vp8), _) => ("VP8", RecKind::Video, 90_000),
            (Some(VideoCodec::H264), _) => ("H264", RecKind::Video, 90_000),
            (None, RtpCodecKind::Audio) if prod.codec.as_ref().is_some_and(|c| c.mime_type.eq_ignore_ascii_case("audio/opus")) => {
                ("Opus", RecKind::Audio, 48_000)
            }
            _ => return false, // a codec the recorder cannot keep as is
        };
        let level = match (prod.audio_level_ext, prod.kind) {
            (Some(ext), RtpCodecKind::Audio) => pkt.header.get_extension(ext).and_then(|b| b.first().map(|v| v & 0x7f)),
            _ => None,
        };
        let room: Arc<str> = match &st.side {
            Some(s) => Arc::from(s.as_str()),
            None => Arc::from("main"),
        };
        let p = RecPacket {
            session: rec.session.clone(),
            producer: prod.id,
            participant: prod.participant.clone(),
            kind,
            codec,
            clock_rate,
            room,
            payload_type: pkt.header.payload_type,
            seq: pkt.header.sequence_number,
            timestamp: pkt.header.timestamp,
            marker: pkt.header.marker,
            ssrc: pkt.header.ssrc,
            level,
            payload: pkt.payload.clone(),
            arrival: SystemTime::now(),
        };
        prod.rec_seen = true;
        if sink.packet(p) {
            SfuStats::add(&stats.recorder_packets, 1);
            false
        } else {
            SfuStats::add(&stats.recorder_dropped, 1);
            if prod.video.is_some() {
                prod.rec_needs_keyframe = true; // never record a broken picture
            }
            false
        }
    }

    /// An RTCP sender report from a publisher: the recorder places tracks by it.
    fn rec_sender_report(&mut self, tid: TransportId, track: &str, ssrc: u32, ntp: u64, rtp_ts: u32) {
        let Some(sink) = &self.recorder else { return };
        let Some(t) = self.transports.get(&tid) else { return };
        let Some(rec) = self.sessions.get(&t.room).and_then(|s| s.rec.as_ref()).filter(|r| !r.stopped) else { return };
        let pid = t.producers.get(track).copied().or_else(|| {
            t.producers.values().copied().find(|p| self.producers.get(p).is_some_and(|x| x.media_ssrc == ssrc))
        });
        if let Some(producer) = pid {
            sink.send(RecordMsg::SenderReport { session: rec.session.clone(), producer, ntp, rtp_ts, arrival: SystemTime::now() });
        }
    }
}

/// The next ICE-TCP event, or never when ICE-TCP is off.
async fn recv_tcp(rx: &mut Option<mpsc::Receiver<crate::tcp::TcpEvent>>) -> Option<crate::tcp::TcpEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The passive ICE-TCP host candidate (RFC 6544 §4.5) at `addr`.
fn tcp_candidate(addr: SocketAddr) -> Result<RTCIceCandidateInit, SfuError> {
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "tcp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        tcp_type: rtc::ice::tcp_type::TcpType::Passive,
    }
    .new_candidate_host()
    .map_err(rtc_err)?;
    RTCIceCandidate::from(&cand).to_json().map_err(rtc_err)
}

/// Compares two secrets in time independent of where they differ.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
