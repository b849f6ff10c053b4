//! The `fengqiao` configuration: one TOML file plus `FENGQIAO_<SECTION>__<KEY>`
//! environment overrides (figment). Every key is listed in `docs/interfaces.md`.

use anyhow::Context as _;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use fengqiao_cases::{CasesConfig, CasesSettings, DeadlineConfig};
use fengqiao_sfu::MediaConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// `[server]`: HTTP and the public base URL.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where pages, API and signaling listen. Port 0 picks a free one. Default 127.0.0.1:8080.
    pub http_addr: SocketAddr,
    /// The base of invite links (`{public_url}/join/{token}`). Default http://127.0.0.1:8080.
    pub public_url: String,
    /// PEM certificate chain (leaf first). With `tls_key`, `http_addr` serves HTTPS and
    /// WSS itself (rustls, `src/tls.rs`). Default unset: plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`. Set both or neither.
    pub tls_key: Option<PathBuf>,
    /// On SIGTERM: how long the server may take to close recordings and the database
    /// before it exits anyway, seconds (1-3600). Default 30.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: "http://127.0.0.1:8080".into(),
            tls_cert: None,
            tls_key: None,
            shutdown_grace_secs: 30,
        }
    }
}

/// `[recorder]`: the evidence recorder (`docs/evidence.md`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Length of one originals segment (Matroska file), seconds; video is cut at the
    /// first keyframe after it (asked for by PLI). 10–3600, default 300 (5 min).
    pub segment_secs: u64,
    /// Render the review video (`review/main.mp4`, one per side room) when a
    /// recording stops, and register the joint room's with the case. Default true.
    pub render_after_stop: bool,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        Self { segment_secs: 300, render_after_stop: true }
    }
}

/// `[log]`: logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `fengqiao_sfu=debug,info`. Default `info`.
    pub level: String,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// `[database]`: where the case service keeps its data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user:pass@host/db`. Unset (or empty):
    /// the SQLite file `<data_dir>/fengqiao.db` in WAL mode.
    pub url: Option<String>,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The data folder: keys, database, session folders. Default `./data`.
    pub data_dir: PathBuf,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[media]`.
    pub media: MediaConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[recorder]`: the evidence recorder.
    pub recorder: RecorderConfig,
    /// `[cases]`: the case service's own settings (`docs/cases.md`). `data_dir`,
    /// `server.public_url` and `database.url` are handed to it, not repeated here.
    pub cases: CasesSettings,
}

impl Config {
    /// Loads defaults, then the TOML file (if given), then `FENGQIAO_*` variables.
    ///
    /// # Errors
    /// A missing file, bad TOML, an unknown key or a value of the wrong type, named
    /// by its key path (e.g. `media.udp_port`).
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut fig = Figment::from(Serialized::defaults(Config::embedded_defaults()));
        if let Some(p) = path {
            anyhow::ensure!(p.exists(), "config file {} does not exist", p.display());
            fig = fig.merge(Toml::file(p));
        }
        // FENGQIAO_TEST_* belong to the test suites (e.g. FENGQIAO_TEST_POSTGRES_URL), not to the config.
        fig = fig.merge(Env::prefixed("FENGQIAO_").filter(|k| !k.as_str().to_ascii_lowercase().starts_with("test_")).split("__").map(|k| {
            // FENGQIAO_DATA_DIR → data_dir; FENGQIAO_MEDIA__UDP_PORT → media.udp_port
            k.as_str().to_ascii_lowercase().into()
        }));
        let cfg: Config = fig.extract().map_err(|e| {
            let msgs: Vec<String> = e
                .into_iter()
                .map(|e| {
                    let key = if e.path.is_empty() { "(root)".to_owned() } else { e.path.join(".") };
                    format!("config key `{key}`: {}", e.kind)
                })
                .collect();
            anyhow::anyhow!("invalid configuration: {}", msgs.join("; "))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The defaults `load` starts from: `Default` with `data_dir = "data"`.
    pub fn embedded_defaults() -> Self {
        Config { data_dir: PathBuf::from("data"), ..Default::default() }
    }

    fn validate(&self) -> anyhow::Result<()> {
        let u = &self.server.public_url;
        anyhow::ensure!(
            (u.starts_with("http://") || u.starts_with("https://")) && !u.ends_with('/'),
            "config key `server.public_url`: must start with http:// or https:// and not end with /, got {u:?}"
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.server.shutdown_grace_secs),
            "config key `server.shutdown_grace_secs`: must be between 1 and 3600, got {}",
            self.server.shutdown_grace_secs
        );
        anyhow::ensure!(
            (10..=3600).contains(&self.recorder.segment_secs),
            "config key `recorder.segment_secs`: must be between 10 and 3600, got {}",
            self.recorder.segment_secs
        );
        match (&self.server.tls_cert, &self.server.tls_key) {
            (Some(_), None) => anyhow::bail!("config key `server.tls_key`: must be set when server.tls_cert is set"),
            (None, Some(_)) => anyhow::bail!("config key `server.tls_cert`: must be set when server.tls_key is set"),
            _ => {}
        }
        anyhow::ensure!(self.media.max_participants >= 1, "config key `media.max_participants`: must be at least 1");
        anyhow::ensure!(
            self.media.resume_window_ms <= 600_000,
            "config key `media.resume_window_ms`: at most 600000 (10 minutes)"
        );
        if let Some(url) = self.database.url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
            anyhow::ensure!(
                fengqiao_cases::Backend::from_url(url).is_ok() && !url.ends_with(':') && !url.ends_with("://"),
                "config key `database.url`: must be sqlite://<file> or postgres://user:pass@host/db, got {:?}",
                fengqiao_cases::db::redact(url)
            );
        }
        let c = &self.cases;
        anyhow::ensure!(
            c.case_number_format.contains("{seq}") || c.case_number_format.contains("{seq:"),
            "config key `cases.case_number_format`: must contain {{seq}} or {{seq:N}}, got {:?}",
            c.case_number_format
        );
        if let Some(i) = c.case_number_format.find("{seq:") {
            let rest = &c.case_number_format[i + 5..];
            let w = rest.split('}').next().unwrap_or("");
            anyhow::ensure!(
                rest.contains('}') && w.parse::<u8>().is_ok_and(|w| (1..=20).contains(&w)),
                "config key `cases.case_number_format`: {{seq:N}} needs a width N of 1 to 20"
            );
        }
        anyhow::ensure!(
            (-12..=14).contains(&c.utc_offset_hours),
            "config key `cases.utc_offset_hours`: must be between -12 and 14, got {}",
            c.utc_offset_hours
        );
        anyhow::ensure!(c.login_ttl_hours >= 1, "config key `cases.login_ttl_hours`: must be at least 1");
        anyhow::ensure!(c.max_connections >= 1, "config key `cases.max_connections`: must be at least 1");
        anyhow::ensure!(c.outbox_interval_secs >= 1, "config key `cases.outbox_interval_secs`: must be at least 1");
        let d = &c.deadlines;
        for (k, v) in [
            ("triage_response_hours", d.triage_response_hours),
            ("mediation_days", d.mediation_days),
            ("court_appoint_working_days", d.court_appoint_working_days),
            ("mediator_accept_working_days", d.mediator_accept_working_days),
            ("confirmation_apply_days", d.confirmation_apply_days),
            ("court_accept_days", d.court_accept_days),
            ("ruling_days", d.ruling_days),
            ("ruling_extension_days", d.ruling_extension_days),
            ("warn_before_hours", d.warn_before_hours),
        ] {
            anyhow::ensure!(v >= 0, "config key `cases.deadlines.{k}`: must not be negative, got {v}");
        }
        Ok(())
    }

    /// The case service's settings: `[cases]` plus `data_dir`, `database.url` and
    /// `public_url` (the server's public base URL in force).
    pub fn cases_config(&self, public_url: &str) -> CasesConfig {
        CasesConfig {
            database_url: self.database.url.clone().filter(|u| !u.trim().is_empty()),
            data_dir: self.data_dir.clone(),
            public_url: public_url.to_owned(),
            settings: self.cases.clone(),
        }
    }

    /// `data_dir/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    /// Creates the data folder layout.
    pub fn prepare_data_dir(&self) -> anyhow::Result<()> {
        for d in [self.data_dir.clone(), self.keys_dir(), self.data_dir.join("sessions")] {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        }
        Ok(())
    }
}

/// One key of the default config: its path, default as a TOML value (`None`: unset,
/// printed commented out with `example`), unit and meaning.
struct KeyDoc {
    key: &'static str,
    value: Option<String>,
    unit: &'static str,
    meaning: &'static str,
    example: &'static str,
}

/// A value as a TOML literal; `None` for an unset `Option`.
fn toml_value<T: Serialize>(v: &T) -> Option<String> {
    fn lit(v: &serde_json::Value) -> Option<String> {
        use serde_json::Value as J;
        Some(match v {
            J::Null => return None,
            J::Bool(b) => b.to_string(),
            J::Number(n) => n.to_string(),
            // A JSON string literal is a valid TOML basic string.
            J::String(s) => serde_json::to_string(s).expect("string"),
            J::Array(a) => format!("[{}]", a.iter().filter_map(lit).collect::<Vec<_>>().join(", ")),
            J::Object(_) => unreachable!("tables are listed key by key"),
        })
    }
    lit(&serde_json::to_value(v).expect("config values serialise"))
}

/// Every key with its default, unit and meaning. The destructuring below has no
/// `..`: a new config field does not compile until it is documented here.
fn key_docs() -> Vec<KeyDoc> {
    let Config { data_dir, server, media, log, database, recorder, cases } = Config::embedded_defaults();
    let RecorderConfig { segment_secs, render_after_stop } = recorder;
    let ServerConfig { http_addr, public_url, tls_cert, tls_key, shutdown_grace_secs } = server;
    let MediaConfig { bind_ip, udp_port, public_ip, max_participants, ice_disconnected_timeout_ms, ice_failed_timeout_ms, tcp_port, resume_window_ms, test_refuse_sends: _ } =
        media;
    let LogConfig { format, level } = log;
    let DatabaseConfig { url } = database;
    let CasesSettings {
        case_number_format,
        district_code,
        utc_offset_hours,
        deadlines,
        holidays,
        extra_working_days,
        last_year_screened,
        login_ttl_hours,
        secure_cookies,
        invite_grace_hours,
        max_connections,
        outbox_interval_secs,
    } = cases;
    let DeadlineConfig {
        triage_response_hours,
        mediation_days,
        court_appoint_working_days,
        mediator_accept_working_days,
        confirmation_apply_days,
        court_accept_days,
        ruling_days,
        ruling_extension_days,
        warn_before_hours,
    } = deadlines;
    macro_rules! k {
        ($key:expr, $v:expr, $unit:expr, $meaning:expr) => {
            k!($key, $v, $unit, $meaning, "")
        };
        ($key:expr, $v:expr, $unit:expr, $meaning:expr, $ex:expr) => {
            KeyDoc { key: $key, value: toml_value(&$v), unit: $unit, meaning: $meaning, example: $ex }
        };
    }
    vec![
        k!("data_dir", data_dir, "path", "The data folder: keys/, the SQLite database, sessions/. Relative paths are relative to the working directory."),
        k!("server.http_addr", http_addr, "IP:port", "Where pages, /ws signaling, /api, /metrics, /healthz and /readyz listen. Port 0 picks a free one."),
        k!("server.public_url", public_url, "URL", "Base of invite links ({public_url}/join/{token}); http:// or https://, no trailing /. Browsers need https:// (or localhost) for camera and microphone."),
        k!("server.tls_cert", tls_cert, "path", "PEM certificate chain (leaf first). With tls_key set too, http_addr serves HTTPS and WSS directly (rustls). Unset: plain HTTP.", "tls_cert = \"/etc/fengqiao/tls/fullchain.pem\""),
        k!("server.tls_key", tls_key, "path", "PEM private key of tls_cert (PKCS#8, PKCS#1 or SEC1); readable by the service user only. Set both or neither.", "tls_key = \"/etc/fengqiao/tls/privkey.pem\""),
        k!("server.shutdown_grace_secs", shutdown_grace_secs, "seconds", "On SIGTERM: joins stop, participants are told, recordings are closed out (interrupted: server shutdown) and signed, the database is closed; after this long (1-3600) the process exits anyway. A second SIGTERM exits at once."),
        k!("media.bind_ip", bind_ip, "IP address", "Address of the one UDP media socket."),
        k!("media.udp_port", udp_port, "UDP port", "The one UDP port for every peer of every room; 0 picks a free one."),
        k!("media.public_ip", public_ip, "IP address", "Advertised in ICE candidates (1:1 NAT). Unset: bind_ip.", "public_ip = \"203.0.113.10\""),
        k!("media.tcp_port", tcp_port, "TCP port", "ICE-TCP (RFC 6544): a passive TCP candidate on this one port beside the UDP one, for networks that block UDP; 0 picks a free one. Unset: no ICE-TCP.", "tcp_port = 40000"),
        k!("media.max_participants", max_participants, "participants", "Room cap (at least 1); a join beyond it gets room_full."),
        k!("media.ice_disconnected_timeout_ms", ice_disconnected_timeout_ms, "milliseconds", "No STUN from a peer for this long: its Transport is disconnected (RFC 7675 consent)."),
        k!("media.ice_failed_timeout_ms", ice_failed_timeout_ms, "milliseconds", "Then this much longer: the Transport fails and the participant leaves (ice_failed)."),
        k!("media.resume_window_ms", resume_window_ms, "milliseconds", "A participant whose signaling connection drops keeps their place, media and side room this long and may `resume` (others see participant_reconnecting); then they leave (resume_expired). 0: a drop is a leave."),
        k!("log.format", format, "text | json", "Log format on stderr: human-readable lines or one JSON object per line."),
        k!("log.level", level, "tracing filter", "e.g. \"info\" or \"fengqiao_sfu=debug,info\"."),
        k!("database.url", url, "URL", "The case database: sqlite://path/file.db or postgres://user:pass@host/db. Unset or empty: SQLite <data_dir>/fengqiao.db (WAL).", "url = \"postgres://fengqiao:secret@127.0.0.1/fengqiao\""),
        k!("recorder.render_after_stop", render_after_stop, "bool", "Render the review video (review/main.mp4, 720p H.264 + AAC with the recording-time overlay; one per side room) in a background thread when a recording stops, and register the joint room's with the case. The same as `fengqiao render <session-dir>`."),
        k!("recorder.segment_secs", segment_secs, "seconds", "Length of one originals segment (Matroska file), 10-3600; video is cut at the first keyframe after it, asked for by PLI."),
        k!("cases.case_number_format", case_number_format, "template", "Case numbers; must contain {seq} or {seq:N} (N 1-20, zero-padded); also {year}, {district}."),
        k!("cases.district_code", district_code, "text", "Replaces {district} in case numbers."),
        k!("cases.utc_offset_hours", utc_offset_hours, "hours", "Local time's offset from UTC (-12..=14), for calendar days, working days and case-number years."),
        k!("cases.holidays", holidays, "dates", "Public holidays (days off), [\"YYYY-MM-DD\", ...]."),
        k!("cases.extra_working_days", extra_working_days, "dates", "Weekend days that are working days, [\"YYYY-MM-DD\", ...]."),
        k!("cases.last_year_screened", last_year_screened, "disputes", "KPI 4 input: disputes screened in the district last year."),
        k!("cases.login_ttl_hours", login_ttl_hours, "hours", "Lifetime of a staff login (at least 1)."),
        k!("cases.secure_cookies", secure_cookies, "bool", "Mark login cookies Secure. Unset: true when server.public_url is https://.", "secure_cookies = true"),
        k!("cases.invite_grace_hours", invite_grace_hours, "hours", "Session invite links stay valid this long after the scheduled end."),
        k!("cases.max_connections", max_connections, "connections", "Largest database connection pool (at least 1)."),
        k!("cases.outbox_interval_secs", outbox_interval_secs, "seconds", "Between rounds of deadline warnings and outbox delivery (at least 1)."),
        k!("cases.deadlines.triage_response_hours", triage_response_hours, "hours", "Organisation admin accepts or re-routes a triaged dispute."),
        k!("cases.deadlines.mediation_days", mediation_days, "calendar days", "Mediator concludes mediation, from acceptance."),
        k!("cases.deadlines.court_appoint_working_days", court_appoint_working_days, "working days", "A court-mediation organisation appoints a mediator."),
        k!("cases.deadlines.mediator_accept_working_days", mediator_accept_working_days, "working days", "The assigned mediator accepts the appointment."),
        k!("cases.deadlines.confirmation_apply_days", confirmation_apply_days, "calendar days", "Parties apply for judicial confirmation, from the agreement taking effect."),
        k!("cases.deadlines.court_accept_days", court_accept_days, "calendar days", "The court decides whether to accept the application."),
        k!("cases.deadlines.ruling_days", ruling_days, "calendar days", "The court rules, from acceptance."),
        k!("cases.deadlines.ruling_extension_days", ruling_extension_days, "calendar days", "Extra days for the ruling with the court president's approval."),
        k!("cases.deadlines.warn_before_hours", warn_before_hours, "hours", "Deadline warnings go to the outbox this long before a due time."),
    ]
}

/// The full default configuration as commented TOML (`fengqiao config print-default`):
/// every key with its default, unit and meaning; unset keys are commented out.
pub fn default_toml() -> String {
    let mut out = String::from(
        "# Fengqiao configuration: every key with its default (fengqiao config print-default).\n\
         # Every key can be overridden by FENGQIAO_<SECTION>__<KEY>, e.g. FENGQIAO_MEDIA__UDP_PORT;\n\
         # top-level keys have no section (FENGQIAO_DATA_DIR). Reference: docs/configuration.md.\n",
    );
    let mut section = "";
    for d in key_docs() {
        let (sec, name) = d.key.rsplit_once('.').unwrap_or(("", d.key));
        if sec != section {
            out.push_str(&format!("\n[{sec}]\n"));
            section = sec;
        }
        out.push_str(&format!("\n# {}\n", d.meaning));
        match d.value {
            Some(v) => out.push_str(&format!("# Unit: {}. Default: {v}.\n{name} = {v}\n", d.unit)),
            None => out.push_str(&format!("# Unit: {}. Default: unset. For example:\n# {}\n", d.unit, d.example)),
        }
    }
    out
}
