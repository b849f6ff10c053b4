//! The Fengqiao SFU: rooms of participants whose media is forwarded, never mixed.
//!
//! ```text
//!            one UDP socket (media.udp_port)
//!                      │  datagrams
//!              ┌───────▼────────┐   demux: STUN by ufrag, the rest by remote address
//!              │  media task    │   (one tokio task owns every Transport: no locks)
//!              │  (engine.rs)   │
//!              └───────┬────────┘
//!     Transport (rtc::RTCPeerConnection, sans-IO) per Participant
//!        │ RTP from a Producer ──► Room fan-out ──► each Consumer's Transport
//!        │ RTCP: PLI/FIR from subscribers ──► debounced keyframe request upstream
//! ```
//!
//! Signaling talks to the media task only through [`Sfu`], a handle holding a
//! bounded command channel with one-shot replies. Each participant's events
//! (renegotiation offers, joins, leaves, active speaker) come back on a bounded
//! channel the caller supplies in [`JoinRequest`].

mod demux;
mod engine;
mod ids;
pub mod keyframe;
pub mod record;
pub mod sdp;
mod sendbatch;
mod stats;
pub mod tap;
mod tcp;

pub use demux::{classify, DatagramKind};
pub use ids::{ConsumerId, ParticipantId, ProducerId, RoomId, TransportId};
pub use stats::{JoinHistogram, SfuStats, JOIN_BUCKETS};

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// Media settings (`[media]` in the config file, see `docs/interfaces.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaConfig {
    /// Address the shared UDP socket binds to. Default 127.0.0.1.
    pub bind_ip: IpAddr,
    /// The one UDP port every peer of every room uses; 0 picks a free one. Default 40000.
    pub udp_port: u16,
    /// Address advertised in ICE candidates, for 1:1 NAT; unset advertises `bind_ip`.
    pub public_ip: Option<IpAddr>,
    /// Most participants in one room (default 16). A join beyond it gets `room_full`.
    pub max_participants: usize,
    /// ICE consent (RFC 7675 §5.1): no STUN from the peer for this long marks the
    /// Transport disconnected, ms. Default 5000.
    pub ice_disconnected_timeout_ms: u64,
    /// Then this much longer without traffic fails it, and the participant leaves, ms.
    /// Default 25000 (30 s in all, the consent expiry of RFC 7675).
    pub ice_failed_timeout_ms: u64,
    /// ICE-TCP (RFC 6544): the TCP port of a passive host candidate offered beside the
    /// UDP one, for networks that block UDP; 0 picks a free one. Unset (default): no
    /// ICE-TCP. Bound on `bind_ip`, advertised on `public_ip` when set.
    pub tcp_port: Option<u16>,
    /// Resume window, ms: when a participant's signaling connection drops, their
    /// Transport, Producers, room and side room are kept this long for a `resume`
    /// with the resume token of their `joined` (others see `participant_reconnecting`);
    /// after it they leave (`resume_expired`). 0 = a drop is a leave. Default 30000.
    pub resume_window_ms: u64,
    /// **Test hook**, not a config key (serde skips it; only Rust code that builds
    /// the config can set it): treat every datagram to one participant as refused by
    /// the socket for a while, as a full send buffer would. See [`RefuseSends`] and
    /// `docs/interfaces.md` ("Test hooks"). Default `None`.
    #[serde(skip)]
    pub test_refuse_sends: Option<RefuseSends>,
}

/// Test hook: the media task treats sends to `participant` as refused
/// (`try_send_to` → `WouldBlock`) from `after` past the moment that participant's
/// Transport connects (ICE + DTLS), for `duration`. Everything a real refusal does
/// follows: the datagram is dropped, `SfuStats::dropped_send` counts it, and the
/// participant's video Consumers wait for the next keyframe. Loopback never refuses
/// a UDP send, so `tests/slow_consumer.rs` needs this to prove that policy.
#[derive(Debug, Clone)]
pub struct RefuseSends {
    /// Whose datagrams are refused.
    pub participant: ParticipantId,
    /// Delay from that participant's Transport connecting to the start of the window.
    pub after: std::time::Duration,
    /// Length of the window.
    pub duration: std::time::Duration,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            udp_port: 40000,
            public_ip: None,
            max_participants: 16,
            ice_disconnected_timeout_ms: 5_000,
            ice_failed_timeout_ms: 25_000,
            tcp_port: None,
            resume_window_ms: 30_000,
            test_refuse_sends: None,
        }
    }
}

/// Errors of the SFU. Those a peer can cause carry a stable wire code
/// ([`SfuError::code`]) that signaling sends back.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    /// The media socket could not be bound.
    #[error("cannot bind media socket {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The room already holds `max` participants.
    #[error("room is full ({max} participants)")]
    RoomFull {
        /// The room's cap.
        max: usize,
    },
    /// No such Transport (the participant left or was replaced).
    #[error("not in a room")]
    NotJoined,
    /// An offer or answer arrived in a signaling state that does not allow it
    /// (e.g. an answer with no offer outstanding).
    #[error("wrong negotiation state: {0}")]
    WrongState(&'static str),
    /// The server has its own offer outstanding; the client should answer it
    /// first and offer again later (RFC 8829 §4.1.8, glare).
    #[error("glare: the server's offer is outstanding")]
    Glare,
    /// The SDP could not be parsed or applied.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// An ICE candidate could not be parsed.
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
    /// The WebRTC engine failed for a reason of its own.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// The media task has stopped.
    #[error("media engine stopped")]
    Stopped,
    /// A session control from someone who may not use it (only a mediator may).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// A session control naming a participant who is not in the room.
    #[error("no participant {0:?} in this room")]
    NotFound(String),
    /// The invite token was removed from this room by the mediator.
    #[error("this invite was removed from the session by the mediator")]
    Removed,
    /// A session control with a value that cannot be used (e.g. a side room name).
    #[error("bad field: {0}")]
    BadField(&'static str),
    /// A `resume` whose resume token names no participant that can still resume
    /// (unknown token, another room or participant, or the resume window passed).
    #[error("nothing to resume: the resume window has passed or the resume token is unknown")]
    ResumeExpired,
    /// A `resume` of a participant who was in the session when the mediator ended it.
    #[error("the mediator ended this session")]
    SessionEnded,
}

impl SfuError {
    /// Stable machine-readable code, as listed in `docs/signaling.md`.
    pub fn code(&self) -> &'static str {
        match self {
            SfuError::Bind { .. } | SfuError::Rtc(_) | SfuError::Stopped => "internal",
            SfuError::RoomFull { .. } => "room_full",
            SfuError::NotJoined => "not_joined",
            SfuError::WrongState(_) => "wrong_state",
            SfuError::Glare => "glare",
            SfuError::BadSdp(_) => "bad_sdp",
            SfuError::BadCandidate(_) => "bad_candidate",
            SfuError::Forbidden(_) => "forbidden",
            SfuError::NotFound(_) => "not_found",
            SfuError::Removed => "removed",
            SfuError::BadField(_) => "bad_field",
            SfuError::ResumeExpired => "resume_expired",
            SfuError::SessionEnded => "session_ended",
        }
    }
}

/// Public facts about a participant, as other participants see them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantInfo {
    /// The participant id (from the invite token).
    pub id: ParticipantId,
    /// Display name (from the invite token, not editable).
    pub name: String,
    /// Role name (`mediator`, `applicant`, ...).
    pub role: String,
    /// Microphone muted by the participant.
    pub audio_muted: bool,
    /// Camera off.
    pub video_muted: bool,
    /// The side room (caucus, 背靠背) the participant is in; `None` = the main room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side_room: Option<String>,
}

/// Something one participant's signaling connection must tell its client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantEvent {
    /// A server-initiated offer (renegotiation: Consumers added or removed).
    Offer {
        /// The SDP offer.
        sdp: String,
    },
    /// Another participant joined the room.
    Joined(ParticipantInfo),
    /// Another participant left; its Producers have ended.
    Left {
        /// Who left.
        id: ParticipantId,
    },
    /// A participant changed mute state.
    Muted {
        /// Who.
        id: ParticipantId,
        /// Microphone muted.
        audio: bool,
        /// Camera off.
        video: bool,
    },
    /// The loudest participant changed (RFC 6464 audio levels).
    ActiveSpeaker {
        /// Who is speaking, or `None` when nobody is.
        id: Option<ParticipantId>,
    },
    /// The Transport was closed by the server; the connection should end.
    Closed {
        /// Why: `replaced`, `ice_failed`, `transport_closed`, `slow_signaling`, `server_shutdown`,
        /// `rejected`, `removed`, `ended`, `resume_expired`, `resumed` (this connection was
        /// superseded by a `resume` on another one).
        reason: &'static str,
    },
    /// Mediators only: the whole waiting list, after any change.
    Waiting {
        /// Everyone waiting to be admitted.
        participants: Vec<ParticipantInfo>,
    },
    /// Mediators only: someone entered the waiting room.
    ParticipantWaiting(ParticipantInfo),
    /// To a waiting participant: the mediator admitted them; these are the
    /// admitted participants (media follows by server offer).
    Admitted {
        /// Everyone admitted, other than the receiver.
        participants: Vec<ParticipantInfo>,
    },
    /// A participant was moved to a side room or back to the main room.
    Moved {
        /// Who.
        id: ParticipantId,
        /// The side room, or `None` for the main room.
        to: Option<String>,
    },
    /// The mediator stopped (or resumed) forwarding a participant's audio / video.
    MutedByMediator {
        /// Whose media.
        id: ParticipantId,
        /// Audio is not forwarded.
        audio: bool,
        /// Video is not forwarded.
        video: bool,
    },
    /// The session's recording state changed (or a participant's consent answer).
    Recording(record::RecordingStatus),
    /// A participant's signaling connection dropped; they may resume within the
    /// resume window (their media and place are kept meanwhile).
    Reconnecting {
        /// Who.
        id: ParticipantId,
    },
    /// A reconnecting participant is back (same id, room, side room, Producers).
    Resumed {
        /// Who.
        id: ParticipantId,
    },
    /// Mediators only: an identity check was recorded.
    IdentityChecked {
        /// Whose identity.
        id: ParticipantId,
        /// `id_document`, `face_comparison` or `known_person`.
        method: String,
        /// `verified` or `failed`.
        result: String,
        /// The mediator who recorded it.
        by: ParticipantId,
        /// SHA-256 (64 hex digits) of the still frame kept with it, if any.
        still_sha256: Option<String>,
    },
    /// To each admitted party (everyone but mediators): the sham-mediation
    /// (虚假调解) warning, to be acknowledged.
    ShamWarning {
        /// The mediator who gave it.
        by: ParticipantId,
    },
    /// Mediators only: a party acknowledged the sham-mediation warning.
    WarningAcknowledged {
        /// Who.
        id: ParticipantId,
    },
}

/// One line of a session's event log (`data/sessions/<session>/events.jsonl`),
/// produced by the media task and written by whoever holds the other end of the
/// [`EventSink`] (never the media task itself: it must not block on disk).
#[derive(Debug, Clone, Serialize)]
pub struct SessionEvent {
    /// Server time of the action.
    #[serde(skip)]
    pub time: SystemTime,
    /// The session id (the token's `session_id`, else the room id).
    #[serde(skip)]
    pub session: String,
    /// The room.
    pub room: String,
    /// Who did it (the participant id).
    pub actor: String,
    /// `join`, `leave`, `admit`, `reject`, `mute`, `remove`, `move`, `end_session`,
    /// `reconnecting`, `resume`, `identity`, `warn_sham`, `ack_warning`, ...
    pub action: &'static str,
    /// Whom it was done to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The actor's role (`join`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// `join`: admitted directly (true) or to the waiting room (false).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted: Option<bool>,
    /// `remove`: the mediator's reason; `leave`: `left`, `replaced`, `ice_failed`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `move`: the side room, or `main`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `mute`: audio not forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio: Option<bool>,
    /// `mute`: video not forwarded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub video: Option<bool>,
    /// `identity`: `id_document`, `face_comparison` or `known_person`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// `identity`: `verified` or `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// `identity`: the still frame's file, relative to the session folder
    /// (`stills/<pid>-<n>.jpg`); set by the writer once the file is on disk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still: Option<String>,
    /// `identity`: SHA-256 of the still frame (64 lowercase hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub still_sha256: Option<String>,
    /// `identity`: the still frame's JPEG bytes, for the writer to store (not logged).
    #[serde(skip)]
    pub still_jpeg: Option<Arc<Vec<u8>>>,
}

/// Where the media task sends [`SessionEvent`]s: a bounded channel, written with
/// `try_send` (an event that finds it full is dropped with a warning, never waited for).
pub type EventSink = mpsc::Sender<SessionEvent>;

/// Capacity advised for the [`EventSink`] channel.
pub const EVENT_LOG_QUEUE: usize = 4096;

/// A mediator's session control (see `docs/signaling.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Let a waiting participant in.
    Admit(ParticipantId),
    /// Turn a waiting participant away (their connection is closed).
    Reject(ParticipantId),
    /// Stop (true) or resume (false) forwarding a participant's audio / video.
    Mute {
        /// Whose media.
        id: ParticipantId,
        /// Audio not forwarded.
        audio: bool,
        /// Video not forwarded.
        video: bool,
    },
    /// Remove a participant; their token cannot rejoin this room.
    Remove {
        /// Who.
        id: ParticipantId,
        /// Why (logged).
        reason: String,
    },
    /// Move a participant to a side room (`Some(name)`) or the main room (`None`).
    Move {
        /// Who (the mediator may move themself).
        id: ParticipantId,
        /// Where.
        to: Option<String>,
    },
    /// End the session for everyone (`closed {reason: "ended"}`).
    EndSession,
    /// Record an identity check of a participant (waiting or admitted).
    Identity {
        /// Whose identity.
        id: ParticipantId,
        /// `id_document`, `face_comparison` or `known_person`.
        method: String,
        /// `verified` or `failed`.
        result: String,
        /// A still frame of their video (JPEG) and its SHA-256 in hex.
        still: Option<(Arc<Vec<u8>>, String)>,
    },
    /// Give every admitted party the sham-mediation (虚假调解) warning.
    WarnSham,
}

/// Capacity of the per-participant event channel; a signaling connection that
/// lets it fill is closed (`slow_signaling`), never waited for.
pub const EVENT_QUEUE: usize = 256;

/// A request to join a room.
#[derive(Debug)]
pub struct JoinRequest {
    /// The room to join; created on first join.
    pub room: RoomId,
    /// Who joins. A second join with the same id replaces the first.
    pub participant: ParticipantId,
    /// Display name.
    pub name: String,
    /// Role name.
    pub role: String,
    /// The invite token's id (`tid`): a removed token cannot rejoin the room.
    pub token_id: String,
    /// Skip the waiting room (mediators, and tokens minted with `admitted`).
    pub admitted: bool,
    /// The mediation session (event log folder); `None` = the room id.
    pub session_id: Option<String>,
    /// The case the session belongs to (invite token `case_id`), for the recording's manifest.
    pub case_id: Option<String>,
    /// Where this participant's events go (bounded, see [`EVENT_QUEUE`]).
    pub events: mpsc::Sender<ParticipantEvent>,
}

/// The answer to a join.
#[derive(Debug, Clone)]
pub struct JoinReply {
    /// The participant's Transport, named in every later command.
    pub transport: TransportId,
    /// Everyone else already admitted to the room (empty while waiting).
    pub participants: Vec<ParticipantInfo>,
    /// The joiner as others see them (with their side room, after a reconnect).
    pub me: ParticipantInfo,
    /// The joiner is in the waiting room.
    pub waiting: bool,
    /// For a mediator: who is waiting to be admitted.
    pub waiting_list: Vec<ParticipantInfo>,
    /// Secret for a later [`Sfu::resume`] (128 random bits, hex; bound to this
    /// participant and room; a new one is issued on each resume). Empty when the
    /// resume window is 0.
    pub resume_token: String,
}

/// A request to resume a participant whose signaling connection dropped.
#[derive(Debug)]
pub struct ResumeRequest {
    /// The room (from the verified invite token).
    pub room: RoomId,
    /// The participant (from the verified invite token).
    pub participant: ParticipantId,
    /// The invite token's id (`tid`): a removed token cannot resume.
    pub token_id: String,
    /// The resume token from the participant's last `joined`.
    pub resume_token: String,
    /// The client has a new peer connection (new network path, new ICE and DTLS): the
    /// server replaces the Transport's and waits for the client's new offer; its
    /// Producers are kept and take the new connection's tracks of the same kind.
    pub restart: bool,
    /// Where this participant's events go from now on.
    pub events: mpsc::Sender<ParticipantEvent>,
}

/// A trickled ICE candidate from the client (RFC 8839 §5.1 attribute text).
#[derive(Debug, Clone, Default)]
pub struct RemoteCandidate {
    /// `candidate:...` line.
    pub candidate: String,
    /// The m-line's mid.
    pub sdp_mid: Option<String>,
    /// The m-line's index.
    pub sdp_mline_index: Option<u16>,
}

pub(crate) enum Command {
    Join(JoinRequest, oneshot::Sender<Result<JoinReply, SfuError>>),
    Offer(TransportId, String, oneshot::Sender<Result<String, SfuError>>),
    Answer(TransportId, String, oneshot::Sender<Result<(), SfuError>>),
    Candidate(TransportId, RemoteCandidate, oneshot::Sender<Result<(), SfuError>>),
    Mute(TransportId, bool, bool),
    Control(TransportId, Control, oneshot::Sender<Result<(), SfuError>>),
    Record(TransportId, record::RecordAction, oneshot::Sender<Result<(), SfuError>>),
    Consent(TransportId, bool, oneshot::Sender<Result<(), SfuError>>),
    RecorderKeyframe(ProducerId),
    RecordingClosed(String, Option<String>),
    Leave(TransportId),
    Resume(ResumeRequest, oneshot::Sender<Result<JoinReply, SfuError>>),
    Suspend(TransportId, mpsc::Sender<ParticipantEvent>),
    AckWarning(TransportId, oneshot::Sender<Result<(), SfuError>>),
    Shutdown,
}

/// Handle to the running SFU. Cheap to clone; every method is a message to the
/// media task, answered through a one-shot channel.
#[derive(Clone)]
pub struct Sfu {
    tx: mpsc::Sender<Command>,
    local_addr: SocketAddr,
    advertised: SocketAddr,
    stats: Arc<SfuStats>,
    /// The recorder queue's depth counter (not the sender: the handle must not
    /// keep the queue open after the media task ends).
    recorder_depth: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Sfu {
    /// Binds the shared media socket and starts the media task.
    ///
    /// # Errors
    /// [`SfuError::Bind`] when the socket cannot be bound.
    pub async fn start(config: MediaConfig) -> Result<(Sfu, tokio::task::JoinHandle<()>), SfuError> {
        Self::start_with_events(config, None).await
    }

    /// Like [`Sfu::start`], sending every session control and join/leave to `events`
    /// (the session event log).
    ///
    /// # Errors
    /// [`SfuError::Bind`] when the socket cannot be bound.
    pub async fn start_with_events(
        config: MediaConfig,
        events: Option<EventSink>,
    ) -> Result<(Sfu, tokio::task::JoinHandle<()>), SfuError> {
        Self::start_with(config, events, None).await
    }

    /// Like [`Sfu::start_with_events`], also tapping recorded sessions' packets and
    /// recording controls into `recorder` (see [`record`]). Without a recorder,
    /// `record` controls get [`SfuError::Forbidden`]-free `internal` errors.
    ///
    /// # Errors
    /// [`SfuError::Bind`] when the socket cannot be bound.
    pub async fn start_with(
        config: MediaConfig,
        events: Option<EventSink>,
        recorder: Option<record::RecordSink>,
    ) -> Result<(Sfu, tokio::task::JoinHandle<()>), SfuError> {
        let stats = Arc::new(SfuStats::default());
        let recorder_depth = recorder.as_ref().map(|r| r.depth_counter());
        let (tx, rx) = mpsc::channel(1024);
        let engine = engine::Engine::bind(&config, stats.clone(), rx, events, recorder)?;
        let local_addr = engine.local_addr();
        let advertised = engine.advertised_addr();
        let handle = tokio::spawn(engine.run());
        Ok((Sfu { tx, local_addr, advertised, stats, recorder_depth }, handle))
    }

    /// Whether the media task is still running (it stops on shutdown or a fatal error).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }

    /// The address the media socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address put in ICE candidates.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.advertised
    }

    /// Live counters (packets, drops, keyframe requests).
    pub fn stats(&self) -> &Arc<SfuStats> {
        &self.stats
    }

    /// Messages waiting in the recorder queue now ([`record::RecordSink::depth`]);
    /// `None` when this SFU runs without a recorder.
    pub fn recorder_queue_depth(&self) -> Option<usize> {
        self.recorder_depth.as_ref().map(|d| d.load(std::sync::atomic::Ordering::Relaxed))
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, SfuError>>) -> Command,
    ) -> Result<T, SfuError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| SfuError::Stopped)?;
        rx.await.map_err(|_| SfuError::Stopped)?
    }

    /// Joins a room, creating its Transport.
    ///
    /// # Errors
    /// [`SfuError::RoomFull`]; [`SfuError::Rtc`] if the peer connection cannot be built.
    pub async fn join(&self, req: JoinRequest) -> Result<JoinReply, SfuError> {
        self.call(|r| Command::Join(req, r)).await
    }

    /// Applies the client's offer and returns the SDP answer.
    ///
    /// # Errors
    /// [`SfuError::BadSdp`], [`SfuError::Glare`], [`SfuError::NotJoined`].
    pub async fn offer(&self, t: TransportId, sdp: String) -> Result<String, SfuError> {
        self.call(|r| Command::Offer(t, sdp, r)).await
    }

    /// Applies the client's answer to the server's last offer.
    ///
    /// # Errors
    /// [`SfuError::WrongState`] when no offer is outstanding; [`SfuError::BadSdp`].
    pub async fn answer(&self, t: TransportId, sdp: String) -> Result<(), SfuError> {
        self.call(|r| Command::Answer(t, sdp, r)).await
    }

    /// Adds a trickled remote candidate. `.local` (mDNS) candidates are accepted and
    /// ignored: the SFU is ICE-lite and learns peer-reflexive addresses from checks.
    ///
    /// # Errors
    /// [`SfuError::BadCandidate`], [`SfuError::NotJoined`].
    pub async fn candidate(&self, t: TransportId, c: RemoteCandidate) -> Result<(), SfuError> {
        self.call(|r| Command::Candidate(t, c, r)).await
    }

    /// Records and announces a participant's mute state.
    pub async fn mute(&self, t: TransportId, audio: bool, video: bool) {
        let _ = self.tx.send(Command::Mute(t, audio, video)).await;
    }

    /// A mediator's session control, checked and applied by the media task.
    ///
    /// # Errors
    /// [`SfuError::Forbidden`] unless the Transport is a mediator's;
    /// [`SfuError::NotFound`] for an unknown participant; [`SfuError::WrongState`]
    /// (e.g. admitting someone not waiting); [`SfuError::BadField`] for a bad side room.
    pub async fn control(&self, t: TransportId, c: Control) -> Result<(), SfuError> {
        self.call(|r| Command::Control(t, c, r)).await
    }

    /// A mediator's recording control: start, pause (with a reason), resume, stop.
    ///
    /// # Errors
    /// [`SfuError::Forbidden`] unless the Transport is an admitted mediator's;
    /// [`SfuError::WrongState`] (e.g. resume when not paused, start after stop);
    /// [`SfuError::BadField`] for an empty or over-long pause reason;
    /// [`SfuError::Rtc`] when the server runs without a recorder.
    pub async fn record(&self, t: TransportId, a: record::RecordAction) -> Result<(), SfuError> {
        self.call(|r| Command::Record(t, a, r)).await
    }

    /// A participant's answer to the recording notice (true = consent).
    ///
    /// # Errors
    /// [`SfuError::NotJoined`]; [`SfuError::WrongState`] while waiting to be admitted.
    pub async fn consent(&self, t: TransportId, accept: bool) -> Result<(), SfuError> {
        self.call(|r| Command::Consent(t, accept, r)).await
    }

    /// The recorder asks for a keyframe of a recorded video Producer (before a segment
    /// cut); debounced like any keyframe request. Never blocks (dropped when the
    /// command queue is full).
    pub fn recorder_keyframe(&self, p: ProducerId) {
        let _ = self.tx.try_send(Command::RecorderKeyframe(p));
    }

    /// The recorder closed the session's record: `integrity` is the manifest's chain
    /// head (hex), `None` if the record could not be closed. Everyone present is told.
    pub fn recording_closed(&self, session: &str, integrity: Option<String>) {
        let _ = self.tx.try_send(Command::RecordingClosed(session.to_owned(), integrity));
    }

    /// Leaves the room: the Transport closes and its Producers end for everyone.
    pub async fn leave(&self, t: TransportId) {
        let _ = self.tx.send(Command::Leave(t)).await;
    }

    /// A party acknowledges the sham-mediation warning (logged `ack_warning`; the
    /// mediators get [`ParticipantEvent::WarningAcknowledged`]). Repeats change nothing.
    ///
    /// # Errors
    /// [`SfuError::WrongState`] while waiting to be admitted or when no warning was
    /// given; [`SfuError::NotJoined`].
    pub async fn ack_warning(&self, t: TransportId) -> Result<(), SfuError> {
        self.call(|r| Command::AckWarning(t, r)).await
    }

    /// The signaling connection whose event channel is `events` dropped: the
    /// participant is kept for `media.resume_window_ms` (others get
    /// [`ParticipantEvent::Reconnecting`]), then leaves (`resume_expired`). With a
    /// window of 0 this is [`Sfu::leave`]. Ignored when `events` is no longer the
    /// Transport's channel (the participant already resumed elsewhere).
    pub async fn suspend(&self, t: TransportId, events: mpsc::Sender<ParticipantEvent>) {
        let _ = self.tx.send(Command::Suspend(t, events)).await;
    }

    /// Resumes a participant with the resume token of their last join or resume:
    /// same Transport id, room, side room, mute state and Producers; the reply is
    /// shaped like a join's, with a new resume token. The previous signaling
    /// connection, if still open, gets `Closed { reason: "resumed" }`.
    ///
    /// # Errors
    /// [`SfuError::ResumeExpired`] when the token does not match the participant's
    /// Transport in that room (or the window passed); [`SfuError::Removed`];
    /// [`SfuError::SessionEnded`] when the mediator ended the session meanwhile;
    /// [`SfuError::Rtc`] when a new peer connection cannot be built.
    pub async fn resume(&self, req: ResumeRequest) -> Result<JoinReply, SfuError> {
        self.call(|r| Command::Resume(req, r)).await
    }

    /// Closes every Transport (each gets `Closed { reason: "server_shutdown" }`) and
    /// stops the media task.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
    }
}
