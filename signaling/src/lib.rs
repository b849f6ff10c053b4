//! WebSocket signaling for Fengqiao rooms: the wire protocol (`docs/signaling.md`),
//! invite tokens, and the per-connection state machine that drives the SFU through
//! its [`Sfu`](fengqiao_sfu::Sfu) handle.

pub mod events;
pub mod invite;
pub mod protocol;
mod session;

pub use session::{router, SignalingState};

/// Every error of this crate. Errors a peer can cause map to a wire
/// [`ErrorCode`](protocol::ErrorCode) and never close the room.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The invite token is malformed or wrongly signed (the reason is static text).
    #[error("bad invite token: {0}")]
    BadToken(&'static str),
    /// The invite token's `exp` has passed.
    #[error("invite token expired")]
    ExpiredToken,
    /// A role name that is not one of mediator, applicant, respondent, agent, observer.
    #[error("unknown role {0:?}")]
    BadRole(String),
    /// The invite key file could not be read or written.
    #[error("invite key: {0}")]
    KeyFile(String),
}
