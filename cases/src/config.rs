//! Configuration of the case service (`[cases]` / `[database]` in the server's config).

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the case service runs with: the server-wide values it is handed
/// (`data_dir`, `server.public_url`, `database.url`) plus its own
/// [`CasesSettings`] (the `[cases]` table).
///
/// The database is SQLite in `data_dir/fengqiao.db` (WAL mode) unless
/// [`database_url`](Self::database_url) names another SQLite file (`sqlite://...`) or a
/// PostgreSQL server (`postgres://...`).
#[derive(Debug, Clone)]
pub struct CasesConfig {
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`; `None` means the
    /// SQLite file `data_dir/fengqiao.db`.
    pub database_url: Option<String>,
    /// The data folder (default `data`): holds the SQLite file, `keys/invite.key` and
    /// the session folders the recording endpoint may serve (`data_dir/sessions`,
    /// e.g. `<session-id>/review.mp4`, see docs/interfaces.md).
    pub data_dir: PathBuf,
    /// The public base URL of the server, without trailing slash; invite links are
    /// `{public_url}/join/{token}`.
    pub public_url: String,
    /// The `[cases]` table.
    pub settings: CasesSettings,
}

impl Default for CasesConfig {
    fn default() -> Self {
        Self {
            database_url: None,
            data_dir: PathBuf::from("data"),
            public_url: "http://localhost:8080".into(),
            settings: CasesSettings::default(),
        }
    }
}

/// The `[cases]` table of the server's config. Every field has a default, so an
/// empty table works; unknown keys are refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CasesSettings {
    /// Case-number format. Placeholders: `{year}` (4 digits, local year of
    /// registration), `{seq}` (the year's running number) or `{seq:N}` (zero-padded
    /// to N digits), `{district}` ([`district_code`](Self::district_code)).
    pub case_number_format: String,
    /// Short district code used by `{district}` in the case-number format.
    pub district_code: String,
    /// Offset of local time from UTC, in hours (China: 8), -12..=14. Calendar days,
    /// working days and the year of a case number are reckoned in local time.
    pub utc_offset_hours: i32,
    /// `[cases.deadlines]`: limits of the deadline table in `domain.md`.
    pub deadlines: DeadlineConfig,
    /// Public holidays (no work), `YYYY-MM-DD`.
    pub holidays: Vec<NaiveDate>,
    /// Weekend days that are working days (调休 make-up days), `YYYY-MM-DD`.
    pub extra_working_days: Vec<NaiveDate>,
    /// KPI 4 input: total disputes screened in the district last year.
    pub last_year_screened: u64,
    /// Lifetime of a staff login, in hours (at least 1; default 12).
    pub login_ttl_hours: u64,
    /// Mark login cookies `Secure`. Unset: true when the public URL is `https://`
    /// ([`CasesConfig::secure_cookies`]).
    pub secure_cookies: Option<bool>,
    /// Invite links stay valid this many hours after the session's scheduled end
    /// (default 24).
    pub invite_grace_hours: u64,
    /// Largest pool of database connections (at least 1; default 8).
    pub max_connections: u32,
    /// Seconds between rounds of deadline warnings and outbox delivery (at least 1;
    /// default 60).
    pub outbox_interval_secs: u64,
}

impl Default for CasesSettings {
    fn default() -> Self {
        Self {
            case_number_format: "({year}){district}调字第{seq:05}号".into(),
            district_code: "枫".into(),
            utc_offset_hours: 8,
            deadlines: DeadlineConfig::default(),
            holidays: Vec::new(),
            extra_working_days: Vec::new(),
            last_year_screened: 0,
            login_ttl_hours: 12,
            secure_cookies: None,
            invite_grace_hours: 24,
            max_connections: 8,
            outbox_interval_secs: 60,
        }
    }
}

impl CasesConfig {
    /// Whether login cookies are `Secure`: [`CasesSettings::secure_cookies`], or else
    /// whether the public URL is `https://`.
    pub fn secure_cookies(&self) -> bool {
        self.settings.secure_cookies.unwrap_or_else(|| self.public_url.starts_with("https://"))
    }

    /// The database URL in force: [`database_url`](Self::database_url) or the SQLite
    /// file `data_dir/fengqiao.db`.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(u)
                if u.trim().starts_with("sqlite:")
                    && !u.contains('?')
                    && !u.contains(":memory:") =>
            {
                format!("{}?mode=rwc", u.trim())
            }
            Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("fengqiao.db").display()
            ),
        }
    }
}

/// The limits of `domain.md`'s deadline table. All are configurable; the defaults are
/// the rules marked *default* there.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadlineConfig {
    /// Organisation admin responds to (accepts) or re-routes a triaged dispute, hours
    /// from notification (district plan, goal 3): 48.
    pub triage_response_hours: i64,
    /// Mediator concludes mediation, calendar days from acceptance (plan goal 4; SPC
    /// Online Mediation Rules 2021 art. 24): 30; extendable with the parties' consent.
    pub mediation_days: i64,
    /// A court-mediation organisation appoints a mediator, working days from
    /// notification (Online Mediation Rules art. 10): 3.
    pub court_appoint_working_days: i64,
    /// The assigned mediator accepts the appointment, working days (art. 12): 3.
    pub mediator_accept_working_days: i64,
    /// Parties apply for judicial confirmation, calendar days from the agreement taking
    /// effect (People's Mediation Law art. 33; Civil Procedure Law 2023 art. 205): 30.
    pub confirmation_apply_days: i64,
    /// The court decides whether to accept the application, calendar days (SPC
    /// Provisions on judicial confirmation 2011 art. 4): 3.
    pub court_accept_days: i64,
    /// The court rules, calendar days from acceptance (2011 Provisions art. 5): 15.
    /// Set 30 to follow Civil Procedure Law art. 187 instead.
    pub ruling_days: i64,
    /// Extra days for the ruling with the court president's approval (2011 Provisions
    /// art. 5): 10.
    pub ruling_extension_days: i64,
    /// Deadline warnings go to the outbox this many hours before a due time: 24.
    pub warn_before_hours: i64,
}

impl Default for DeadlineConfig {
    fn default() -> Self {
        Self {
            triage_response_hours: 48,
            mediation_days: 30,
            court_appoint_working_days: 3,
            mediator_accept_working_days: 3,
            confirmation_apply_days: 30,
            court_accept_days: 3,
            ruling_days: 15,
            ruling_extension_days: 10,
            warn_before_hours: 24,
        }
    }
}
