//! Case service (issue 4): disputes, roster, triage and deadlines, sessions and
//! recordings, judicial confirmation and district KPIs, on SQLite or PostgreSQL.
//!
//! The vocabulary, lifecycle, deadlines and KPIs are those of `shared/domain.md`.
//!
//! Entry points for the binary:
//! - [`connect`] opens the database named by [`CasesConfig`] (SQLite file
//!   `data/fengqiao.db` in WAL mode by default) and runs migrations;
//! - [`router`] serves the JSON API under `/api` (OpenAPI at `/api/openapi.json`);
//! - [`migrate`], [`create_user`] and [`load_demo_data`] back the CLI;
//! - [`spawn_outbox_worker`] sends notifications and deadline warnings.

pub mod api;
pub mod config;
pub mod db;
pub mod deadlines;
pub mod demo;
pub mod error;
pub mod kpi;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod openapi;
pub mod service;
pub mod validate;

pub use api::{router, CasesState, Ctx, Principal};
pub use config::{CasesConfig, CasesSettings, DeadlineConfig};
pub use db::{migrate, Actor, Backend, Clock, Store};
pub use demo::{load_demo_data, DemoLogin};
pub use error::{CasesError, ErrorBody};
pub use lifecycle::{Action, Status};
pub use model::{StaffRole, User};
pub use notify::{spawn_outbox_worker, LogSender, NotificationSender};
pub use service::{NewUser, Scope, StaffUser};

/// Opens the database of `cfg` with the system clock and runs pending migrations.
///
/// # Errors
/// See [`Store::connect`].
pub async fn connect(cfg: &CasesConfig) -> Result<Store, CasesError> {
    Store::connect(cfg, Clock::system()).await
}

/// Creates a staff account (for `fengqiao admin create-user`); audited as `system`.
/// `org_id` is required for `OrgAdmin` and `Mediator` (who also get a roster entry).
///
/// # Errors
/// 422-style [`CasesError::Validation`] naming the field (password of at least 10
/// characters); [`CasesError::Conflict`] when the user name is taken.
pub async fn create_user(
    store: &Store,
    username: &str,
    display_name: &str,
    role: StaffRole,
    org_id: Option<i64>,
    password: &str,
) -> Result<User, CasesError> {
    let u = NewUser {
        username: username.into(),
        display_name: display_name.into(),
        role: role.as_str().into(),
        org_id,
        password: password.into(),
        specialties: None,
    };
    store.create_user(&Actor::system(), &u).await
}
