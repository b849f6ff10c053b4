//! The signaling wire protocol, version 1: JSON text frames over one WebSocket.
//! Every message is an object with a `type`. `docs/signaling.md` lists them with
//! their fields, order and limits.

use fengqiao_sfu::ParticipantInfo;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this server speaks; `join.v` must equal it.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest message accepted, bytes. Larger ones get `too_large` (up to
/// [`HARD_MAX_MESSAGE`], beyond which the WebSocket layer closes with 1009).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Frame size at which the WebSocket itself gives up (close code 1009).
pub const HARD_MAX_MESSAGE: usize = 1024 * 1024;
/// Sustained messages per second allowed per connection.
pub const RATE_PER_SEC: f64 = 20.0;
/// Burst allowance above the sustained rate.
pub const RATE_BURST: f64 = 60.0;

/// Typed error codes sent in `{"type":"error","code":...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not valid JSON, or not a JSON object with a string `type`.
    BadJson,
    /// A `type` this server does not know.
    UnknownType,
    /// A known `type` with a missing or mistyped field (the message names it).
    BadField,
    /// Message larger than 64 KiB.
    TooLarge,
    /// More than the allowed messages per second; the message was dropped.
    RateLimited,
    /// `join.v` is not a version this server speaks.
    BadVersion,
    /// The invite token is malformed or wrongly signed.
    BadToken,
    /// The invite token has expired.
    TokenExpired,
    /// The room holds its maximum of participants.
    RoomFull,
    /// The message needs a joined participant.
    NotJoined,
    /// `join` after a successful join.
    AlreadyJoined,
    /// Offer/answer in a negotiation state that does not allow it.
    WrongState,
    /// The client offered while the server's offer is outstanding.
    Glare,
    /// The SDP could not be applied.
    BadSdp,
    /// The ICE candidate could not be parsed.
    BadCandidate,
    /// A session control from a participant who is not the mediator.
    Forbidden,
    /// A session control naming a participant who is not in the room.
    NotFound,
    /// The invite was removed from this session by the mediator.
    Removed,
    /// `resume` with a resume token that names nobody who can still resume (the
    /// window passed, the participant left, or the token is wrong).
    ResumeExpired,
    /// `resume` after the mediator ended the session the participant was in.
    SessionEnded,
    /// A server-side failure.
    Internal,
}

impl ErrorCode {
    /// From an SFU error's code string.
    pub fn from_sfu(code: &str) -> Self {
        match code {
            "room_full" => Self::RoomFull,
            "not_joined" => Self::NotJoined,
            "wrong_state" => Self::WrongState,
            "glare" => Self::Glare,
            "bad_sdp" => Self::BadSdp,
            "bad_candidate" => Self::BadCandidate,
            "forbidden" => Self::Forbidden,
            "not_found" => Self::NotFound,
            "removed" => Self::Removed,
            "bad_field" => Self::BadField,
            "resume_expired" => Self::ResumeExpired,
            "session_ended" => Self::SessionEnded,
            _ => Self::Internal,
        }
    }
}

/// A message from the client, after validation.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// First message: protocol version and invite token.
    Join {
        /// Protocol version; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// The invite token from the join URL.
        token: String,
    },
    /// First message instead of `join` after the signaling connection dropped:
    /// the invite token and the resume token of the last `joined`.
    Resume {
        /// Protocol version; must be [`PROTOCOL_VERSION`].
        v: u32,
        /// The invite token from the join URL.
        token: String,
        /// `resume_token` of the last `joined`.
        resume_token: String,
        /// The client has a new peer connection and offers again (network changed).
        restart: bool,
    },
    /// The client's SDP offer (its first, or a later renegotiation).
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// The client's answer to the server's last offer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A trickled ICE candidate (RFC 8839 §5.1 text; empty = end of candidates).
    Candidate {
        /// `candidate:...`.
        candidate: String,
        /// The m-line's mid.
        sdp_mid: Option<String>,
        /// The m-line's index.
        sdp_mline_index: Option<u16>,
    },
    /// Own microphone / camera state.
    Mute {
        /// Microphone muted.
        audio: bool,
        /// Camera off.
        video: bool,
    },
    /// Mediator: admit a waiting participant.
    Admit {
        /// Participant id.
        id: String,
    },
    /// Mediator: turn a waiting participant away.
    Reject {
        /// Participant id.
        id: String,
    },
    /// Mediator: stop (true) or resume (false) forwarding someone's audio / video
    /// (`mute` with an `id`).
    MuteOther {
        /// Participant id.
        id: String,
        /// Audio not forwarded.
        audio: bool,
        /// Video not forwarded.
        video: bool,
    },
    /// Mediator: remove a participant; their invite cannot rejoin.
    Remove {
        /// Participant id.
        id: String,
        /// Why (logged); may be empty.
        reason: String,
    },
    /// Mediator: move a participant to a side room, or back with `to: "main"`.
    Move {
        /// Participant id (may be the mediator's own).
        id: String,
        /// `main` or a side room name.
        to: String,
    },
    /// Mediator: end the session for everyone.
    EndSession,
    /// Mediator: record an identity check (`identity {id, method, result, still?}`).
    Identity {
        /// Whose identity.
        id: String,
        /// `id_document`, `face_comparison` or `known_person`.
        method: String,
        /// `verified` or `failed`.
        result: String,
        /// A still frame of their video: JPEG bytes (sent base64).
        still: Option<Vec<u8>>,
    },
    /// Mediator: give the parties the sham-mediation (虚假调解) warning.
    WarnSham,
    /// A party acknowledges the sham-mediation warning.
    AckWarning,
    /// Mediator: recording control (`record {action, reason?}`).
    Record {
        /// `start`, `pause`, `resume` or `stop`.
        action: String,
        /// Pause reason (required with `pause`).
        reason: Option<String>,
    },
    /// Answer to the recording notice (`consent {answer: "accept"|"refuse"}`).
    Consent {
        /// True = accept.
        accept: bool,
    },
    /// Leave the room; the server answers `left` and closes.
    Leave,
    /// Keep-alive; answered with `pong`.
    Ping,
}

/// Why a client message was refused before reaching the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The error code.
    pub code: ErrorCode,
    /// Human-readable detail, naming the field where there is one.
    pub message: String,
    /// The message `type`, when it could be read.
    pub re: Option<String>,
}

fn field_str(obj: &serde_json::Map<String, Value>, name: &str, ty: &str) -> Result<String, ParseError> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(bad_field(ty, format!("field `{name}` must be a string"))),
        None => Err(bad_field(ty, format!("missing field `{name}`"))),
    }
}

fn field_bool(obj: &serde_json::Map<String, Value>, name: &str, ty: &str) -> Result<bool, ParseError> {
    match obj.get(name) {
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad_field(ty, format!("field `{name}` must be a boolean"))),
        None => Err(bad_field(ty, format!("missing field `{name}`"))),
    }
}

fn bad_field(ty: &str, message: String) -> ParseError {
    ParseError { code: ErrorCode::BadField, message, re: Some(ty.to_owned()) }
}

/// Parses and validates one text frame.
///
/// # Errors
/// A [`ParseError`] with `bad_json`, `unknown_type`, `bad_field` or `too_large`.
pub fn parse_client(text: &str) -> Result<ClientMessage, ParseError> {
    if text.len() > MAX_MESSAGE {
        return Err(ParseError {
            code: ErrorCode::TooLarge,
            message: format!("message of {} bytes exceeds {MAX_MESSAGE}", text.len()),
            re: None,
        });
    }
    let v: Value = serde_json::from_str(text).map_err(|e| ParseError {
        code: ErrorCode::BadJson,
        message: format!("invalid JSON: {e}"),
        re: None,
    })?;
    let Value::Object(obj) = v else {
        return Err(ParseError { code: ErrorCode::BadJson, message: "expected a JSON object".into(), re: None });
    };
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(ParseError {
                code: ErrorCode::BadJson,
                message: "missing string field `type`".into(),
                re: None,
            })
        }
    };
    let t = ty.as_str();
    let version = || match obj.get("v") {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad_field(t, "field `v` must be a small positive integer".into())),
        Some(_) => Err(bad_field(t, "field `v` must be a number".into())),
        None => Err(bad_field(t, "missing field `v`".into())),
    };
    Ok(match t {
        "join" => ClientMessage::Join { v: version()?, token: field_str(&obj, "token", t)? },
        "resume" => ClientMessage::Resume {
            v: version()?,
            token: field_str(&obj, "token", t)?,
            resume_token: field_str(&obj, "resume_token", t)?,
            restart: match obj.get("restart") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(bad_field(t, "field `restart` must be a boolean".into())),
            },
        },
        "offer" => ClientMessage::Offer { sdp: field_str(&obj, "sdp", t)? },
        "answer" => ClientMessage::Answer { sdp: field_str(&obj, "sdp", t)? },
        "candidate" => {
            let sdp_mid = match obj.get("sdpMid") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad_field(t, "field `sdpMid` must be a string".into())),
            };
            let sdp_mline_index = match obj.get("sdpMLineIndex") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| bad_field(t, "field `sdpMLineIndex` out of range".into()))?,
                ),
                Some(_) => return Err(bad_field(t, "field `sdpMLineIndex` must be a number".into())),
            };
            ClientMessage::Candidate { candidate: field_str(&obj, "candidate", t)?, sdp_mid, sdp_mline_index }
        }
        "mute" => match obj.get("id") {
            None | Some(Value::Null) => {
                ClientMessage::Mute { audio: field_bool(&obj, "audio", t)?, video: field_bool(&obj, "video", t)? }
            }
            Some(_) => ClientMessage::MuteOther {
                id: field_str(&obj, "id", t)?,
                audio: field_bool(&obj, "audio", t)?,
                video: field_bool(&obj, "video", t)?,
            },
        },
        "admit" => ClientMessage::Admit { id: field_str(&obj, "id", t)? },
        "reject" => ClientMessage::Reject { id: field_str(&obj, "id", t)? },
        "remove" => ClientMessage::Remove {
            id: field_str(&obj, "id", t)?,
            reason: match obj.get("reason") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(r)) => r.clone(),
                Some(_) => return Err(bad_field(t, "field `reason` must be a string".into())),
            },
        },
        "move" => ClientMessage::Move { id: field_str(&obj, "id", t)?, to: field_str(&obj, "to", t)? },
        "end_session" => ClientMessage::EndSession,
        "identity" => {
            let method = field_str(&obj, "method", t)?;
            if !matches!(method.as_str(), "id_document" | "face_comparison" | "known_person") {
                return Err(bad_field(t, "field `method` must be id_document, face_comparison or known_person".into()));
            }
            let result = field_str(&obj, "result", t)?;
            if !matches!(result.as_str(), "verified" | "failed") {
                return Err(bad_field(t, "field `result` must be verified or failed".into()));
            }
            let still = match obj.get("still") {
                None | Some(Value::Null) => None,
                Some(Value::String(b64)) => {
                    use base64::Engine as _;
                    // A data: URL prefix (canvas.toDataURL) is accepted.
                    let b64 = b64.strip_prefix("data:image/jpeg;base64,").unwrap_or(b64);
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .map_err(|_| bad_field(t, "field `still` must be base64".into()))?;
                    if !bytes.starts_with(&[0xff, 0xd8, 0xff]) {
                        return Err(bad_field(t, "field `still` must be a JPEG image".into()));
                    }
                    Some(bytes)
                }
                Some(_) => return Err(bad_field(t, "field `still` must be a base64 string".into())),
            };
            ClientMessage::Identity { id: field_str(&obj, "id", t)?, method, result, still }
        }
        "warn_sham" => ClientMessage::WarnSham,
        "ack_warning" => ClientMessage::AckWarning,
        "record" => {
            let action = field_str(&obj, "action", t)?;
            if !matches!(action.as_str(), "start" | "pause" | "resume" | "stop") {
                return Err(bad_field(t, "field `action` must be start, pause, resume or stop".into()));
            }
            let reason = match obj.get("reason") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => return Err(bad_field(t, "field `reason` must be a string".into())),
            };
            if action == "pause" && reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                return Err(bad_field(t, "field `reason` is required to pause (every pause has its reason)".into()));
            }
            ClientMessage::Record { action, reason }
        }
        "consent" => match field_str(&obj, "answer", t)?.as_str() {
            "accept" => ClientMessage::Consent { accept: true },
            "refuse" => ClientMessage::Consent { accept: false },
            _ => return Err(bad_field(t, "field `answer` must be accept or refuse".into())),
        },
        "leave" => ClientMessage::Leave,
        "ping" => ClientMessage::Ping,
        other => {
            return Err(ParseError {
                code: ErrorCode::UnknownType,
                message: format!("unknown message type `{}`", other.chars().take(64).collect::<String>()),
                re: Some(other.chars().take(64).collect()),
            })
        }
    })
}

/// A message from the server.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Join accepted.
    Joined {
        /// Protocol version.
        v: u32,
        /// The room id.
        room: String,
        /// The joining participant, as others see them.
        me: ParticipantInfo,
        /// Everyone already in the room.
        participants: Vec<ParticipantInfo>,
        /// Case id from the invite, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        case_id: Option<String>,
        /// Session id from the invite, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// In the waiting room: nobody sees or hears this participant until a
        /// mediator admits them (`admitted` follows).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        waiting: bool,
        /// Secret for `resume` after a dropped connection (32 hex digits, bound to
        /// this participant and room; renewed on each resume). Absent when the
        /// server's resume window is 0.
        #[serde(skip_serializing_if = "String::is_empty")]
        resume_token: String,
        /// True: this answers a `resume` (same participant, room, side room, media).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        resumed: bool,
    },
    /// Mediators: the whole waiting list (on join and after every change).
    Waiting {
        /// Everyone waiting.
        participants: Vec<ParticipantInfo>,
    },
    /// Mediators: someone entered the waiting room.
    ParticipantWaiting {
        /// Who.
        participant: ParticipantInfo,
    },
    /// To a waiting participant: admitted; everyone admitted so far.
    Admitted {
        /// The admitted participants.
        participants: Vec<ParticipantInfo>,
    },
    /// Someone was moved to a side room, or back to the main room (`to: "main"`).
    Moved {
        /// Who.
        id: String,
        /// `main` or the side room name.
        to: String,
    },
    /// The mediator stopped (true) or resumed (false) forwarding someone's media.
    MutedByMediator {
        /// Whose.
        id: String,
        /// Audio not forwarded.
        audio: bool,
        /// Video not forwarded.
        video: bool,
    },
    /// The answer to the client's offer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A server-initiated offer (Consumers added or removed).
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// Someone joined.
    ParticipantJoined {
        /// Who.
        participant: ParticipantInfo,
    },
    /// Someone left; their tracks have ended.
    ParticipantLeft {
        /// Who.
        id: String,
    },
    /// Someone's signaling connection dropped; they may resume within the window
    /// (then `participant_resumed`), else `participant_left` follows.
    ParticipantReconnecting {
        /// Who.
        id: String,
    },
    /// A reconnecting participant is back, with the same id, room and tracks.
    ParticipantResumed {
        /// Who.
        id: String,
    },
    /// Mediators: an identity check was recorded (and logged).
    IdentityChecked {
        /// Whose identity.
        id: String,
        /// `id_document`, `face_comparison` or `known_person`.
        method: String,
        /// `verified` or `failed`.
        result: String,
        /// The mediator who recorded it.
        by: String,
        /// SHA-256 (hex) of the still frame stored with it.
        #[serde(skip_serializing_if = "Option::is_none")]
        still_sha256: Option<String>,
    },
    /// Parties: the mediator's sham-mediation (虚假调解) warning; answer `ack_warning`.
    ShamWarning {
        /// The mediator who gave it.
        by: String,
    },
    /// Mediators: a party acknowledged the sham-mediation warning.
    WarningAcknowledged {
        /// Who.
        id: String,
    },
    /// Someone's mute state.
    Mute {
        /// Who.
        id: String,
        /// Microphone muted.
        audio: bool,
        /// Camera off.
        video: bool,
    },
    /// The active speaker (RFC 6464 levels), `null` when silent.
    ActiveSpeaker {
        /// Who.
        id: Option<String>,
    },
    /// The session's recording state, to everyone admitted, on every change (and
    /// on joining a session whose recording has started).
    Recording {
        /// `recording`, `paused` or `stopped`.
        state: String,
        /// Why it is paused: the mediator's reason, `consent refused by <id>` or
        /// `awaiting consent of <id>`.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Each present participant's answer: `accept`, `refuse` or `null` (not yet).
        consent: std::collections::BTreeMap<String, Option<&'static str>>,
        /// After `stopped`: the integrity check value (manifest chain head, 64 hex
        /// digits; docs/evidence.md), once the record is signed.
        #[serde(skip_serializing_if = "Option::is_none")]
        integrity: Option<String>,
    },
    /// Reply to `ping`.
    Pong,
    /// Reply to `leave`, just before the server closes.
    Left,
    /// The server ended this participant's session (replaced, ICE failure...).
    Closed {
        /// Why.
        reason: String,
    },
    /// Something went wrong with a client message; the connection stays open.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
        /// The `type` of the message that caused it.
        #[serde(skip_serializing_if = "Option::is_none")]
        re: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            parse_client(r#"{"type":"join","v":1,"token":"t"}"#).unwrap(),
            ClientMessage::Join { v: 1, token: "t".into() }
        );
        assert_eq!(parse_client("{").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse_client("[1]").unwrap_err().code, ErrorCode::BadJson);
        assert_eq!(parse_client(r#"{"type":"dance"}"#).unwrap_err().code, ErrorCode::UnknownType);
        let e = parse_client(r#"{"type":"offer","sdp":5}"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadField);
        assert!(e.message.contains("sdp"));
        let e = parse_client(r#"{"type":"mute","audio":true}"#).unwrap_err();
        assert!(e.message.contains("video"));
        let big = format!(r#"{{"type":"offer","sdp":"{}"}}"#, "x".repeat(MAX_MESSAGE));
        assert_eq!(parse_client(&big).unwrap_err().code, ErrorCode::TooLarge);
        assert_eq!(
            parse_client(r#"{"type":"mute","id":"a1","audio":true,"video":false}"#).unwrap(),
            ClientMessage::MuteOther { id: "a1".into(), audio: true, video: false }
        );
        assert_eq!(
            parse_client(r#"{"type":"move","id":"a1","to":"main"}"#).unwrap(),
            ClientMessage::Move { id: "a1".into(), to: "main".into() }
        );
        assert_eq!(
            parse_client(r#"{"type":"remove","id":"a1"}"#).unwrap(),
            ClientMessage::Remove { id: "a1".into(), reason: String::new() }
        );
        assert_eq!(parse_client(r#"{"type":"admit"}"#).unwrap_err().code, ErrorCode::BadField);
        assert_eq!(parse_client(r#"{"type":"move","id":"a1"}"#).unwrap_err().code, ErrorCode::BadField);
        assert_eq!(parse_client(r#"{"type":"end_session"}"#).unwrap(), ClientMessage::EndSession);
        assert_eq!(
            parse_client(r#"{"type":"resume","v":1,"token":"t","resume_token":"r"}"#).unwrap(),
            ClientMessage::Resume { v: 1, token: "t".into(), resume_token: "r".into(), restart: false }
        );
        assert_eq!(
            parse_client(r#"{"type":"identity","id":"a1","method":"known_person","result":"verified","still":"/9j/4A=="}"#)
                .unwrap(),
            ClientMessage::Identity {
                id: "a1".into(),
                method: "known_person".into(),
                result: "verified".into(),
                still: Some(vec![0xff, 0xd8, 0xff, 0xe0])
            }
        );
        for (m, field) in [
            (r#"{"type":"identity","id":"a1","method":"dna","result":"verified"}"#, "method"),
            (r#"{"type":"identity","id":"a1","method":"id_document","result":"maybe"}"#, "result"),
            (r#"{"type":"identity","id":"a1","method":"id_document","result":"failed","still":"iVBORw0K"}"#, "still"),
            (r#"{"type":"identity","id":"a1","method":"id_document","result":"failed","still":"!!"}"#, "still"),
            (r#"{"type":"identity","method":"id_document","result":"failed"}"#, "id"),
        ] {
            let e = parse_client(m).unwrap_err();
            assert!(e.code == ErrorCode::BadField && e.message.contains(field), "{m}: {e:?}");
        }
        assert_eq!(parse_client(r#"{"type":"warn_sham"}"#).unwrap(), ClientMessage::WarnSham);
        assert_eq!(parse_client(r#"{"type":"ack_warning"}"#).unwrap(), ClientMessage::AckWarning);
        let e = parse_client(r#"{"type":"resume","v":1,"token":"t"}"#).unwrap_err();
        assert!(e.code == ErrorCode::BadField && e.message.contains("resume_token"), "{e:?}");
        let e = parse_client(r#"{"type":"resume","v":1,"token":"t","resume_token":"r","restart":1}"#).unwrap_err();
        assert!(e.message.contains("restart"), "{e:?}");
        assert!(matches!(
            parse_client(r#"{"type":"candidate","candidate":"","sdpMid":null,"sdpMLineIndex":0}"#).unwrap(),
            ClientMessage::Candidate { sdp_mline_index: Some(0), .. }
        ));
    }

    #[test]
    fn error_serialises_with_code() {
        let m = ServerMessage::Error { code: ErrorCode::RoomFull, message: "full".into(), re: Some("join".into()) };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(s, r#"{"type":"error","code":"room_full","message":"full","re":"join"}"#);
    }
}
