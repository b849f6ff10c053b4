//! The store: a pool on SQLite or PostgreSQL, migrations, the clock, the audit log.

use crate::config::CasesConfig;
use crate::deadlines::Calendar;
use crate::error::CasesError;
use fengqiao_signaling::invite::InviteKey;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite (default), WAL mode.
    Sqlite,
    /// PostgreSQL (for scale).
    Postgres,
}

impl Backend {
    /// The backend a URL names.
    ///
    /// # Errors
    /// [`CasesError::Config`] for any scheme other than `sqlite:`, `postgres:` or
    /// `postgresql:`.
    pub fn from_url(url: &str) -> Result<Self, CasesError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(CasesError::Config(format!(
                "database.url must start with sqlite: or postgres:, got {:?}",
                redact(url)
            )))
        }
    }
}

/// The URL with any password replaced by `***` (for logs).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Source of "now" in Unix seconds: the system clock, or a manual one for tests and
/// simulations.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(None)
    }
    /// A manual clock starting at `start` (Unix seconds).
    pub fn manual(start: i64) -> Self {
        Clock(Some(Arc::new(AtomicI64::new(start))))
    }
    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        match &self.0 {
            Some(a) => a.load(Ordering::SeqCst),
            None => fengqiao_signaling::invite::unix_now() as i64,
        }
    }
    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, t: i64) {
        if let Some(a) = &self.0 {
            a.store(t, Ordering::SeqCst);
        }
    }
    /// Moves a manual clock forward by `secs` (no effect on the system clock).
    pub fn advance(&self, secs: i64) {
        if let Some(a) = &self.0 {
            a.fetch_add(secs, Ordering::SeqCst);
        }
    }
}

/// Who does something, for the audit log and the dispute's event history.
#[derive(Debug, Clone)]
pub struct Actor {
    /// User name, `party:<pid>` for an invite holder, or `system`.
    pub name: String,
    /// Role name (`admin`, ..., `party`, `system`, `anonymous`).
    pub role: String,
    /// Client address (`ip:port`), empty when unknown.
    pub addr: String,
}

impl Actor {
    /// The system itself (command line, background jobs).
    pub fn system() -> Self {
        Actor {
            name: "system".into(),
            role: "system".into(),
            addr: String::new(),
        }
    }
}

pub(crate) struct Inner {
    pub pool: AnyPool,
    pub backend: Backend,
    pub cfg: CasesConfig,
    pub key: InviteKey,
    pub calendar: Calendar,
    pub clock: Clock,
}

/// A handle on the case database (cheap to clone).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .finish()
    }
}

impl Store {
    /// Opens the database of `cfg` (creating the SQLite file and folders when needed),
    /// runs pending migrations and loads or creates the invite key in
    /// `data_dir/keys`.
    ///
    /// # Errors
    /// [`CasesError::Config`] for a bad URL, [`CasesError::Database`] when the database
    /// cannot be reached, [`CasesError::Migrate`] when a migration fails,
    /// [`CasesError::Io`] for the data folder or key file.
    pub async fn connect(cfg: &CasesConfig, clock: Clock) -> Result<Store, CasesError> {
        sqlx::any::install_default_drivers();
        let url = cfg.effective_database_url();
        let backend = Backend::from_url(&url)?;
        if backend == Backend::Sqlite {
            if let Some(parent) =
                sqlite_file(&url).and_then(|p| p.parent().map(|p| p.to_path_buf()))
            {
                if !parent.as_os_str().is_empty() {
                    std::fs::create_dir_all(&parent)?;
                }
            }
        }
        let mut opts = AnyPoolOptions::new()
            .max_connections(cfg.settings.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(30));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000;",
                    )
                    .await?;
                    Ok(())
                })
            });
        }
        let pool = opts.connect(&url).await?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATOR.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATOR.run(&pool).await?,
        }
        let key = InviteKey::load_or_create(&cfg.data_dir.join("keys"))
            .map_err(|e| CasesError::Config(format!("invite key: {e}")))?;
        tracing::info!(backend = ?backend, url = %redact(&url), "case store ready");
        Ok(Store {
            inner: Arc::new(Inner {
                pool,
                backend,
                cfg: cfg.clone(),
                key,
                calendar: Calendar::from_config(cfg),
                clock,
            }),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }
    /// The configuration the store was opened with.
    pub fn config(&self) -> &CasesConfig {
        &self.inner.cfg
    }
    /// The working-day calendar.
    pub fn calendar(&self) -> &Calendar {
        &self.inner.calendar
    }
    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }
    /// Now, Unix seconds.
    pub fn now(&self) -> i64 {
        self.inner.clock.now()
    }
    /// The connection pool (for the binary's health checks).
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }
    /// The invite key used to mint session links.
    pub fn invite_key(&self) -> &InviteKey {
        &self.inner.key
    }
    /// Closes the pool.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Appends one entry to the audit log (outside any transaction).
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        object_type: &str,
        object_id: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), CasesError> {
        audit(
            &self.inner.pool,
            self.now(),
            actor,
            action,
            object_type,
            object_id,
            outcome,
            detail,
        )
        .await
    }
}

/// Appends to the audit log through any executor (pool or transaction).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn audit<'e, E: Executor<'e, Database = Any>>(
    exec: E,
    now: i64,
    actor: &Actor,
    action: &str,
    object_type: &str,
    object_id: &str,
    outcome: &str,
    detail: &str,
) -> Result<(), CasesError> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor, actor_role, action, object_type, object_id, outcome, detail, client_addr) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now)
    .bind(&actor.name)
    .bind(&actor.role)
    .bind(action)
    .bind(object_type)
    .bind(object_id)
    .bind(outcome)
    .bind(detail)
    .bind(&actor.addr)
    .execute(exec)
    .await?;
    Ok(())
}

/// The file path of a `sqlite:` URL, `None` for in-memory databases.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        None
    } else {
        Some(std::path::PathBuf::from(path))
    }
}

/// Runs the pending migrations of the database `cfg` names and returns.
///
/// # Errors
/// As [`Store::connect`].
pub async fn migrate(cfg: &CasesConfig) -> Result<(), CasesError> {
    let store = Store::connect(cfg, Clock::system()).await?;
    store.close().await;
    Ok(())
}

#[allow(dead_code)]
pub(crate) type Row = AnyRow;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(Backend::from_url("sqlite://x.db").unwrap(), Backend::Sqlite);
        assert_eq!(
            Backend::from_url("postgres://u:p@h/db").unwrap(),
            Backend::Postgres
        );
        assert!(Backend::from_url("mysql://h/db").is_err());
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            sqlite_file("sqlite://data/f.db?mode=rwc").unwrap(),
            std::path::PathBuf::from("data/f.db")
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
    }

    #[test]
    fn manual_clock() {
        let c = Clock::manual(100);
        c.advance(5);
        assert_eq!(c.now(), 105);
        c.set(7);
        assert_eq!(c.now(), 7);
    }
}
