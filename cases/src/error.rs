//! The one error type of the case service and its HTTP form.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Everything that can go wrong in the case service.
///
/// Over HTTP every error is the JSON body [`ErrorBody`] `{code, message, field}`:
/// validation → 422 naming the field, no or bad credentials → 401, credentials that do
/// not allow the action → 403, illegal lifecycle transition → 409 with the reason.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// Input failed validation; `field` names the offending field (dotted path). 422.
    #[error("{field}: {message}")]
    Validation {
        /// The field, e.g. `description` or `parties[1].name`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// No credentials, or credentials that are unknown, expired or forged. 401.
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    /// Authenticated, but this principal may not do this. 403 (audited).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The right password of a deactivated staff account. 403, code
    /// `account_deactivated` (audited).
    #[error("this account is deactivated; ask an administrator")]
    AccountDeactivated,
    /// The object does not exist. 404.
    #[error("{0} not found")]
    NotFound(String),
    /// The lifecycle (`domain.md`, "A dispute's life") does not allow this step from
    /// the dispute's current state. 409.
    #[error("illegal transition: {0}")]
    IllegalTransition(String),
    /// A uniqueness or concurrency conflict (e.g. someone else changed the dispute
    /// first, or a user name is taken). 409.
    #[error("conflict: {message}")]
    Conflict {
        /// What conflicts.
        message: String,
        /// The field involved, when there is one.
        field: Option<String>,
    },
    /// The request body is larger than the limit (bytes). 413.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// A byte range outside the file (HTTP 416); holds the file size.
    #[error("range not satisfiable (size {0})")]
    RangeNotSatisfiable(u64),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
    /// Database failure. 500.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migration failure.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// File system failure. 500.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Anything else unexpected. 500.
    #[error("internal: {0}")]
    Internal(String),
}

impl CasesError {
    /// A validation error for `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A conflict, optionally naming a field.
    pub fn conflict(message: impl Into<String>, field: Option<&str>) -> Self {
        Self::Conflict {
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::AccountDeactivated => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::IllegalTransition(_) | Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::RangeNotSatisfiable(_) => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation { .. } => "validation",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::AccountDeactivated => "account_deactivated",
            Self::NotFound(_) => "not_found",
            Self::IllegalTransition(_) => "illegal_transition",
            Self::Conflict { .. } => "conflict",
            Self::RangeNotSatisfiable(_) => "range_not_satisfiable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            _ => "internal",
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable code: `validation`, `unauthenticated`, `forbidden`,
    /// `account_deactivated`, `not_found`, `illegal_transition`, `conflict`,
    /// `payload_too_large`, `internal`.
    pub code: String,
    /// Human-readable explanation (for 409 the reason the step is not allowed).
    pub message: String,
    /// The offending field, when there is one.
    pub field: Option<String>,
}

impl IntoResponse for CasesError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (message, field) = match &self {
            Self::Validation { field, message } => (message.clone(), Some(field.clone())),
            Self::Conflict { message, field } => (message.clone(), field.clone()),
            Self::PayloadTooLarge(_) => (self.to_string(), Some("body".to_owned())),
            e if status.is_server_error() => {
                tracing::error!(error = %e, "case service error");
                ("internal error".to_owned(), None)
            }
            e => (e.to_string(), None),
        };
        let body = ErrorBody {
            code: self.code().to_owned(),
            message,
            field,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let Self::RangeNotSatisfiable(size) = self {
            if let Ok(v) = format!("bytes */{size}").parse() {
                resp.headers_mut()
                    .insert(axum::http::header::CONTENT_RANGE, v);
            }
        }
        resp
    }
}

/// True when `e` is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}
