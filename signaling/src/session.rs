//! One WebSocket connection: join, then relay between the client and its Transport.
//!
//! ```text
//!  client ──text frame──► parse_client ──► rate limit ──► state machine ──► Sfu (command + one-shot reply)
//!  client ◄──text frame── ServerMessage ◄── ParticipantEvent (bounded channel from the media task)
//! ```
//! A bad message gets `{"type":"error",...}` and changes nothing else: the
//! connection, the Transport and the room carry on.

use crate::invite::{unix_now, InviteClaims, InviteKey};
use crate::protocol::{
    parse_client, ClientMessage, ErrorCode, ServerMessage, HARD_MAX_MESSAGE, PROTOCOL_VERSION, RATE_BURST,
    RATE_PER_SEC,
};
use crate::SignalingError;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use crate::invite::Role;
use fengqiao_sfu::record::RecordAction;
use fengqiao_sfu::{
    Control, JoinRequest, ParticipantEvent, ParticipantId, RemoteCandidate, ResumeRequest, RoomId, Sfu, SfuError,
    TransportId, EVENT_QUEUE,
};
use futures_util::{SinkExt, StreamExt};
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, info, info_span, Instrument};

/// What every connection shares.
#[derive(Clone)]
pub struct SignalingState {
    /// The SFU handle.
    pub sfu: Sfu,
    /// The invite key tokens are checked with.
    pub key: InviteKey,
}

/// `GET /ws`: the signaling WebSocket.
pub fn router(state: SignalingState) -> Router {
    Router::new().route("/ws", get(ws_upgrade)).with_state(state)
}

async fn ws_upgrade(State(state): State<SignalingState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(HARD_MAX_MESSAGE)
        .max_frame_size(HARD_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            let span = info_span!("ws");
            Connection::new(state).run(socket).instrument(span)
        })
}

/// Token bucket: [`RATE_PER_SEC`] sustained, [`RATE_BURST`] burst.
struct RateLimit {
    tokens: f64,
    last: Instant,
    last_error: Option<Instant>,
}

impl RateLimit {
    fn allow(&mut self, now: Instant) -> bool {
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Joined {
    transport: TransportId,
    room: RoomId,
    participant: ParticipantId,
    role: Role,
}

struct Connection {
    state: SignalingState,
    joined: Option<Joined>,
    rate: RateLimit,
}

enum Flow {
    Continue,
    Close,
}

fn error(code: ErrorCode, message: impl Into<String>, re: Option<&str>) -> ServerMessage {
    ServerMessage::Error { code, message: message.into(), re: re.map(str::to_owned) }
}

fn sfu_error(e: SfuError, re: &str) -> ServerMessage {
    error(ErrorCode::from_sfu(e.code()), e.to_string(), Some(re))
}

impl Connection {
    fn new(state: SignalingState) -> Self {
        Self {
            state,
            joined: None,
            rate: RateLimit { tokens: RATE_BURST, last: Instant::now(), last_error: None },
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut tx, mut rx) = socket.split();
        let (ev_tx, mut ev_rx) = mpsc::channel::<ParticipantEvent>(EVENT_QUEUE);
        let mut ev_tx = Some(ev_tx);
        loop {
            tokio::select! {
                frame = rx.next() => {
                    let frame = match frame {
                        Some(Ok(f)) => f,
                        Some(Err(e)) => {
                            // A frame over HARD_MAX_MESSAGE: say so with 1009 (RFC 6455
                            // §7.4.1, "message too big") before closing.
                            if is_too_big(e) {
                                debug!("frame over {HARD_MAX_MESSAGE} bytes; closing with 1009");
                                let close = CloseFrame { code: 1009, reason: "message too big".into() };
                                let _ = tx.send(Message::Close(Some(close))).await;
                            }
                            break;
                        }
                        None => break,
                    };
                    let text = match frame {
                        Message::Text(t) => t,
                        Message::Binary(_) => {
                            let m = error(ErrorCode::BadJson, "binary frames are not accepted; send JSON text", None);
                            if send(&mut tx, &m).await.is_err() { break }
                            continue;
                        }
                        Message::Close(_) => break,
                        _ => continue,
                    };
                    let now = Instant::now();
                    if !self.rate.allow(now) {
                        // One error a second at most, so a flood is not echoed back.
                        if self.rate.last_error.is_none_or(|t| now.duration_since(t).as_secs() >= 1) {
                            self.rate.last_error = Some(now);
                            let m = error(ErrorCode::RateLimited, "too many messages; this one was dropped", None);
                            if send(&mut tx, &m).await.is_err() { break }
                        }
                        continue;
                    }
                    let mut out = Vec::new();
                    let flow = match parse_client(text.as_str()) {
                        Ok(msg) => self.handle(msg, &mut ev_tx, &mut out).await,
                        Err(e) => {
                            debug!(code = ?e.code, "bad client message: {}", e.message);
                            out.push(ServerMessage::Error { code: e.code, message: e.message, re: e.re });
                            Flow::Continue
                        }
                    };
                    let mut failed = false;
                    for m in &out {
                        if send(&mut tx, m).await.is_err() { failed = true; break }
                    }
                    if failed { break }
                    if let Flow::Close = flow {
                        let _ = tx.send(Message::Close(Some(CloseFrame { code: 1000, reason: "left".into() }))).await;
                        break;
                    }
                }
                ev = ev_rx.recv(), if self.joined.is_some() => {
                    let Some(ev) = ev else { break };
                    let (msg, close) = event_message(ev);
                    if send(&mut tx, &msg).await.is_err() { break }
                    if close {
                        self.joined = None; // the server already removed the Transport
                        let _ = tx.send(Message::Close(Some(CloseFrame { code: 1000, reason: "closed".into() }))).await;
                        break;
                    }
                }
            }
        }
        if let Some(j) = self.joined.take() {
            // Kept for `media.resume_window_ms` (a resume may follow), then gone.
            info!(room = %j.room, participant = %j.participant, "signaling closed; suspending");
            match ev_tx {
                Some(events) => self.state.sfu.suspend(j.transport, events).await,
                None => self.state.sfu.leave(j.transport).await,
            }
        }
    }

    /// The checks `join` and `resume` share: not joined yet, the protocol version, the
    /// invite token (HMAC, expiry), and the event channel. `re` names the message.
    fn first_message(
        &self,
        re: &'static str,
        v: u32,
        token: &str,
        ev_tx: &Option<mpsc::Sender<ParticipantEvent>>,
    ) -> Result<(InviteClaims, mpsc::Sender<ParticipantEvent>), ServerMessage> {
        if self.joined.is_some() {
            return Err(error(ErrorCode::AlreadyJoined, "this connection has joined already", Some(re)));
        }
        if v != PROTOCOL_VERSION {
            return Err(error(
                ErrorCode::BadVersion,
                format!("protocol version {v} is not supported; this server speaks {PROTOCOL_VERSION}"),
                Some(re),
            ));
        }
        let claims = match self.state.key.verify(token, unix_now()) {
            Ok(c) => c,
            Err(SignalingError::ExpiredToken) => return Err(error(ErrorCode::TokenExpired, "the invite has expired", Some(re))),
            Err(e) => return Err(error(ErrorCode::BadToken, e.to_string(), Some(re))),
        };
        let events = ev_tx.clone().ok_or_else(|| error(ErrorCode::Internal, "connection cannot join again", Some(re)))?;
        Ok((claims, events))
    }

    async fn handle(
        &mut self,
        msg: ClientMessage,
        ev_tx: &mut Option<mpsc::Sender<ParticipantEvent>>,
        out: &mut Vec<ServerMessage>,
    ) -> Flow {
        let sfu = self.state.sfu.clone();
        match msg {
            ClientMessage::Join { v, token } => {
                let (claims, events) = match self.first_message("join", v, &token, ev_tx) {
                    Ok(x) => x,
                    Err(e) => {
                        out.push(e);
                        return Flow::Continue;
                    }
                };
                let room = RoomId::from(claims.room.as_str());
                let participant = ParticipantId::from(claims.pid.as_str());
                let req = JoinRequest {
                    room: room.clone(),
                    participant: participant.clone(),
                    name: claims.name.clone(),
                    role: claims.role.as_str().to_owned(),
                    token_id: claims.tid.clone(),
                    // The mediator hosts: never waits. Others wait unless the issuer said so.
                    admitted: claims.admitted || claims.role == Role::Mediator,
                    session_id: claims.session_id.clone(),
                    case_id: claims.case_id.clone(),
                    events,
                };
                match sfu.join(req).await {
                    Ok(reply) => {
                        info!(room = %room, participant = %participant, role = claims.role.as_str(),
                            waiting = reply.waiting, "joined");
                        let is_mediator = claims.role == Role::Mediator;
                        self.joined = Some(Joined {
                            transport: reply.transport,
                            room: room.clone(),
                            participant,
                            role: claims.role,
                        });
                        out.push(ServerMessage::Joined {
                            v: PROTOCOL_VERSION,
                            room: room.to_string(),
                            me: reply.me,
                            participants: reply.participants,
                            case_id: claims.case_id,
                            session_id: claims.session_id,
                            waiting: reply.waiting,
                            resume_token: reply.resume_token,
                            resumed: false,
                        });
                        if is_mediator {
                            out.push(ServerMessage::Waiting { participants: reply.waiting_list });
                        }
                    }
                    Err(e) => out.push(sfu_error(e, "join")),
                }
            }
            ClientMessage::Resume { v, token, resume_token, restart } => {
                let (claims, events) = match self.first_message("resume", v, &token, ev_tx) {
                    Ok(x) => x,
                    Err(e) => {
                        out.push(e);
                        return Flow::Continue;
                    }
                };
                let room = RoomId::from(claims.room.as_str());
                let participant = ParticipantId::from(claims.pid.as_str());
                let req = ResumeRequest {
                    room: room.clone(),
                    participant: participant.clone(),
                    token_id: claims.tid.clone(),
                    resume_token,
                    restart,
                    events,
                };
                match sfu.resume(req).await {
                    Ok(reply) => {
                        info!(room = %room, participant = %participant, restart, "resumed");
                        let is_mediator = claims.role == Role::Mediator;
                        self.joined = Some(Joined {
                            transport: reply.transport,
                            room: room.clone(),
                            participant,
                            role: claims.role,
                        });
                        out.push(ServerMessage::Joined {
                            v: PROTOCOL_VERSION,
                            room: room.to_string(),
                            me: reply.me,
                            participants: reply.participants,
                            case_id: claims.case_id,
                            session_id: claims.session_id,
                            waiting: reply.waiting,
                            resume_token: reply.resume_token,
                            resumed: true,
                        });
                        if is_mediator && !reply.waiting {
                            out.push(ServerMessage::Waiting { participants: reply.waiting_list });
                        }
                    }
                    Err(e) => out.push(sfu_error(e, "resume")),
                }
            }
            ClientMessage::Ping => out.push(ServerMessage::Pong),
            other => {
                let Some(j) = &self.joined else {
                    out.push(error(ErrorCode::NotJoined, "send `join` first", Some(type_name(&other))));
                    return Flow::Continue;
                };
                let t = j.transport;
                let control = match &other {
                    ClientMessage::Admit { id } => Some(Control::Admit(id.as_str().into())),
                    ClientMessage::Reject { id } => Some(Control::Reject(id.as_str().into())),
                    ClientMessage::MuteOther { id, audio, video } => {
                        Some(Control::Mute { id: id.as_str().into(), audio: *audio, video: *video })
                    }
                    ClientMessage::Remove { id, reason } => {
                        Some(Control::Remove { id: id.as_str().into(), reason: reason.clone() })
                    }
                    ClientMessage::Move { id, to } => Some(Control::Move {
                        id: id.as_str().into(),
                        to: if to == "main" { None } else { Some(to.clone()) },
                    }),
                    ClientMessage::EndSession => Some(Control::EndSession),
                    ClientMessage::WarnSham => Some(Control::WarnSham),
                    ClientMessage::Identity { id, method, result, still } => Some(Control::Identity {
                        id: id.as_str().into(),
                        method: method.clone(),
                        result: result.clone(),
                        still: still.as_ref().map(|jpeg| (std::sync::Arc::new(jpeg.clone()), sha256_hex(jpeg))),
                    }),
                    _ => None,
                };
                if let Some(c) = control {
                    let re = type_name(&other);
                    if j.role != Role::Mediator {
                        out.push(error(ErrorCode::Forbidden, "only the mediator may do this", Some(re)));
                    } else if let Err(e) = sfu.control(t, c).await {
                        out.push(sfu_error(e, re));
                    }
                    return Flow::Continue;
                }
                match other {
                    ClientMessage::Offer { sdp } => match sfu.offer(t, sdp).await {
                        Ok(answer) => out.push(ServerMessage::Answer { sdp: answer }),
                        Err(e) => out.push(sfu_error(e, "offer")),
                    },
                    ClientMessage::Answer { sdp } => {
                        if let Err(e) = sfu.answer(t, sdp).await {
                            out.push(sfu_error(e, "answer"));
                        }
                    }
                    ClientMessage::Candidate { candidate, sdp_mid, sdp_mline_index } => {
                        let c = RemoteCandidate { candidate, sdp_mid, sdp_mline_index };
                        if let Err(e) = sfu.candidate(t, c).await {
                            out.push(sfu_error(e, "candidate"));
                        }
                    }
                    ClientMessage::Mute { audio, video } => sfu.mute(t, audio, video).await,
                    ClientMessage::Record { action, reason } => {
                        let a = match action.as_str() {
                            "start" => RecordAction::Start,
                            "pause" => RecordAction::Pause(reason.unwrap_or_default()),
                            "resume" => RecordAction::Resume,
                            _ => RecordAction::Stop,
                        };
                        if j.role != Role::Mediator {
                            out.push(error(ErrorCode::Forbidden, "only the mediator may control recording", Some("record")));
                        } else if let Err(e) = sfu.record(t, a).await {
                            out.push(sfu_error(e, "record"));
                        }
                    }
                    ClientMessage::AckWarning => {
                        if let Err(e) = sfu.ack_warning(t).await {
                            out.push(sfu_error(e, "ack_warning"));
                        }
                    }
                    ClientMessage::Consent { accept } => {
                        if let Err(e) = sfu.consent(t, accept).await {
                            out.push(sfu_error(e, "consent"));
                        }
                    }
                    ClientMessage::Leave => {
                        sfu.leave(t).await;
                        self.joined = None;
                        *ev_tx = None;
                        out.push(ServerMessage::Left);
                        return Flow::Close;
                    }
                    ClientMessage::Join { .. }
                    | ClientMessage::Resume { .. }
                    | ClientMessage::Ping
                    | ClientMessage::Admit { .. }
                    | ClientMessage::Reject { .. }
                    | ClientMessage::MuteOther { .. }
                    | ClientMessage::Remove { .. }
                    | ClientMessage::Move { .. }
                    | ClientMessage::Identity { .. }
                    | ClientMessage::WarnSham
                    | ClientMessage::EndSession => {}
                }
            }
        }
        Flow::Continue
    }
}

fn type_name(m: &ClientMessage) -> &'static str {
    match m {
        ClientMessage::Join { .. } => "join",
        ClientMessage::Resume { .. } => "resume",
        ClientMessage::Offer { .. } => "offer",
        ClientMessage::Answer { .. } => "answer",
        ClientMessage::Candidate { .. } => "candidate",
        ClientMessage::Mute { .. } | ClientMessage::MuteOther { .. } => "mute",
        ClientMessage::Admit { .. } => "admit",
        ClientMessage::Reject { .. } => "reject",
        ClientMessage::Remove { .. } => "remove",
        ClientMessage::Move { .. } => "move",
        ClientMessage::EndSession => "end_session",
        ClientMessage::Identity { .. } => "identity",
        ClientMessage::WarnSham => "warn_sham",
        ClientMessage::AckWarning => "ack_warning",
        ClientMessage::Record { .. } => "record",
        ClientMessage::Consent { .. } => "consent",
        ClientMessage::Leave => "leave",
        ClientMessage::Ping => "ping",
    }
}

fn event_message(ev: ParticipantEvent) -> (ServerMessage, bool) {
    match ev {
        ParticipantEvent::Offer { sdp } => (ServerMessage::Offer { sdp }, false),
        ParticipantEvent::Joined(p) => (ServerMessage::ParticipantJoined { participant: p }, false),
        ParticipantEvent::Left { id } => (ServerMessage::ParticipantLeft { id: id.to_string() }, false),
        ParticipantEvent::Reconnecting { id } => (ServerMessage::ParticipantReconnecting { id: id.to_string() }, false),
        ParticipantEvent::Resumed { id } => (ServerMessage::ParticipantResumed { id: id.to_string() }, false),
        ParticipantEvent::IdentityChecked { id, method, result, by, still_sha256 } => (
            ServerMessage::IdentityChecked { id: id.to_string(), method, result, by: by.to_string(), still_sha256 },
            false,
        ),
        ParticipantEvent::ShamWarning { by } => (ServerMessage::ShamWarning { by: by.to_string() }, false),
        ParticipantEvent::WarningAcknowledged { id } => {
            (ServerMessage::WarningAcknowledged { id: id.to_string() }, false)
        }
        ParticipantEvent::Muted { id, audio, video } => {
            (ServerMessage::Mute { id: id.to_string(), audio, video }, false)
        }
        ParticipantEvent::ActiveSpeaker { id } => {
            (ServerMessage::ActiveSpeaker { id: id.map(|i| i.to_string()) }, false)
        }
        ParticipantEvent::Closed { reason } => (ServerMessage::Closed { reason: reason.to_owned() }, true),
        ParticipantEvent::Waiting { participants } => (ServerMessage::Waiting { participants }, false),
        ParticipantEvent::ParticipantWaiting(p) => (ServerMessage::ParticipantWaiting { participant: p }, false),
        ParticipantEvent::Admitted { participants } => (ServerMessage::Admitted { participants }, false),
        ParticipantEvent::Moved { id, to } => {
            (ServerMessage::Moved { id: id.to_string(), to: to.unwrap_or_else(|| "main".to_owned()) }, false)
        }
        ParticipantEvent::MutedByMediator { id, audio, video } => {
            (ServerMessage::MutedByMediator { id: id.to_string(), audio, video }, false)
        }
        ParticipantEvent::Recording(st) => (
            ServerMessage::Recording {
                state: st.state.to_owned(),
                reason: st.reason,
                consent: st
                    .consent
                    .into_iter()
                    .map(|(p, a)| (p.to_string(), a.map(|a| if a { "accept" } else { "refuse" })))
                    .collect(),
                integrity: st.integrity,
            },
            false,
        ),
    }
}

async fn send<S>(tx: &mut S, m: &ServerMessage) -> Result<(), ()>
where
    S: futures_util::Sink<Message> + Unpin,
{
    // ServerMessage holds only strings, numbers and enums: serialising cannot fail.
    let text = serde_json::to_string(m).expect("server message serialises");
    tx.send(Message::Text(text.into())).await.map_err(|_| ())
}

/// SHA-256 of `data`, 64 lowercase hex digits.
fn sha256_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether a read error is the WebSocket layer refusing a frame or message over
/// [`HARD_MAX_MESSAGE`] bytes.
fn is_too_big(e: axum::Error) -> bool {
    e.into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}
