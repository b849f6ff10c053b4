//! Invite tokens: who may join which room, as whom, until when.
//!
//! A token is `base64url(claims-json) "." base64url(HMAC-SHA256(key, claims-json))`
//! (no padding). The claims are [`InviteClaims`]; the key is the server's invite key,
//! 32 random bytes kept in `data/keys/invite.key` (mode 0600, made on first run, see
//! `docs/interfaces.md`). Verification is constant-time (`ring::hmac::verify`).
//!
//! Whoever holds the key mints tokens: `fengqiao invite` on the command line, and the
//! case service for the links of a scheduled session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::SignalingError;

/// Longest token accepted, in bytes of its text form. Anything longer is rejected
/// before it is decoded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The role a participant plays in a mediation session (`docs/interfaces.md`, "Roles").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Hosts the session (调解员).
    Mediator,
    /// The party who applied for mediation (申请人).
    Applicant,
    /// The other party (被申请人).
    Respondent,
    /// A lawyer or relative attending for a party (代理人).
    Agent,
    /// Watches without being a party, e.g. a trainee or a court clerk.
    Observer,
}

impl Role {
    /// The lower-case wire name (`"mediator"`, `"applicant"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Mediator => "mediator",
            Role::Applicant => "applicant",
            Role::Respondent => "respondent",
            Role::Agent => "agent",
            Role::Observer => "observer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = SignalingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mediator" => Ok(Role::Mediator),
            "applicant" => Ok(Role::Applicant),
            "respondent" => Ok(Role::Respondent),
            "agent" => Ok(Role::Agent),
            "observer" => Ok(Role::Observer),
            other => Err(SignalingError::BadRole(other.to_owned())),
        }
    }
}

/// What an invite token says. Every field is covered by the HMAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteClaims {
    /// Unique id of this token (random, 16 hex digits), for audit and revocation.
    pub tid: String,
    /// The room to join.
    pub room: String,
    /// The participant id, chosen by whoever issues the invite; stable across
    /// reconnects with the same token.
    pub pid: String,
    /// Display name, shown to everyone and not editable: part of the identity record.
    pub name: String,
    /// The participant's role.
    pub role: Role,
    /// Expiry, seconds since the Unix epoch (UTC).
    pub exp: u64,
    /// The case this session belongs to, when the case service issued the invite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_id: Option<String>,
    /// The mediation session (one meeting of a case), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Admitted without the waiting room (set by the issuer, e.g. `fengqiao invite
    /// --admitted`; used by test clients and the mediator's own links).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admitted: bool,
}

/// The server's HMAC-SHA256 invite key.
#[derive(Clone)]
pub struct InviteKey {
    key: hmac::Key,
}

impl std::fmt::Debug for InviteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InviteKey(..)")
    }
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh random id of 16 lower-case hex digits (64 bits from the OS RNG).
pub fn random_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl InviteKey {
    /// A key from raw bytes (at least 32 are expected; shorter keys are refused).
    ///
    /// # Errors
    /// [`SignalingError::KeyFile`] when `bytes` is shorter than 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SignalingError> {
        if bytes.len() < 32 {
            return Err(SignalingError::KeyFile(format!(
                "invite key has {} bytes, needs at least 32",
                bytes.len()
            )));
        }
        Ok(Self { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) })
    }

    /// Loads `dir/invite.key`, creating `dir` and a new random 32-byte key (mode 0600)
    /// when there is none yet.
    ///
    /// # Errors
    /// [`SignalingError::KeyFile`] when the folder or file cannot be read or written.
    pub fn load_or_create(dir: &Path) -> Result<Self, SignalingError> {
        let path = dir.join("invite.key");
        let io = |e: std::io::Error| SignalingError::KeyFile(format!("{}: {e}", path.display()));
        match fs::read(&path) {
            Ok(bytes) => Self::from_bytes(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(io)?;
                let bytes: [u8; 32] = rand::random();
                let mut opts = fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(&path).map_err(io)?;
                f.write_all(&bytes).map_err(io)?;
                f.sync_all().map_err(io)?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Signs `claims` into a token string.
    pub fn mint(&self, claims: &InviteClaims) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(claims).expect("claims serialise");
        let tag = hmac::sign(&self.key, &json);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(&json), URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks a token's signature and expiry against `now` (Unix seconds).
    ///
    /// # Errors
    /// - [`SignalingError::BadToken`] for anything malformed or wrongly signed;
    /// - [`SignalingError::ExpiredToken`] when `exp <= now`.
    pub fn verify(&self, token: &str, now: u64) -> Result<InviteClaims, SignalingError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(SignalingError::BadToken("token too long"));
        }
        let (body, sig) = token.split_once('.').ok_or(SignalingError::BadToken("no signature"))?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| SignalingError::BadToken("bad base64"))?;
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| SignalingError::BadToken("bad base64"))?;
        hmac::verify(&self.key, &json, &sig).map_err(|_| SignalingError::BadToken("bad signature"))?;
        let claims: InviteClaims =
            serde_json::from_slice(&json).map_err(|_| SignalingError::BadToken("bad claims"))?;
        if claims.exp <= now {
            return Err(SignalingError::ExpiredToken);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> InviteClaims {
        InviteClaims {
            tid: random_id(),
            room: "r1".into(),
            pid: "p1".into(),
            name: "张三".into(),
            role: Role::Applicant,
            exp,
            case_id: Some("(2026)京0105民调123号".into()),
            session_id: None,
            admitted: false,
        }
    }

    #[test]
    fn round_trip_and_tamper() {
        let key = InviteKey::from_bytes(&[7u8; 32]).unwrap();
        let c = claims(2_000);
        let t = key.mint(&c);
        assert_eq!(key.verify(&t, 1_000).unwrap(), c);
        assert!(matches!(key.verify(&t, 2_000), Err(SignalingError::ExpiredToken)));
        // Flip one character of the body: signature check fails.
        let mut bad = t.clone().into_bytes();
        bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        assert!(matches!(key.verify(&bad, 1_000), Err(SignalingError::BadToken(_))));
        let other = InviteKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(matches!(other.verify(&t, 1_000), Err(SignalingError::BadToken(_))));
        assert!(matches!(key.verify("garbage", 1_000), Err(SignalingError::BadToken(_))));
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("fq-key-{}", random_id()));
        let k1 = InviteKey::load_or_create(&dir).unwrap();
        let t = k1.mint(&claims(u64::MAX));
        let k2 = InviteKey::load_or_create(&dir).unwrap();
        assert!(k2.verify(&t, 1).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.join("invite.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::remove_dir_all(dir).unwrap();
    }
}
