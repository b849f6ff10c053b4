//! Starting and stopping a whole server: HTTP (pages, signaling, the case API) and
//! media.

use crate::config::Config;
use anyhow::Context as _;
use axum::response::IntoResponse as _;
use axum::Router;
use fengqiao_cases::{CasesError, CasesState, LogSender, Store};
use fengqiao_signaling::invite::{random_id, unix_now, InviteClaims, InviteKey, Role};
use fengqiao_signaling::SignalingState;
use fengqiao_sfu::Sfu;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tracing::info;

/// A running server.
pub struct Running {
    /// Where HTTP listens (pages, `/ws`).
    pub http_addr: SocketAddr,
    /// The media UDP socket's address.
    pub media_addr: SocketAddr,
    /// Base of invite links.
    pub public_url: String,
    /// The invite key (for minting test and demo invites).
    pub key: InviteKey,
    /// The SFU handle (stats, shutdown).
    pub sfu: Sfu,
    /// The case store (migrated; served under `/api`).
    pub cases: Store,
    outbox: tokio::task::JoinHandle<()>,
    recorder: Option<std::thread::JoinHandle<()>>,
    stop: Option<oneshot::Sender<()>>,
    http: tokio::task::JoinHandle<()>,
    media: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Mints an invite and returns its join URL `{public_url}/join/{token}`.
    pub fn invite_url(&self, claims: &InviteClaims) -> String {
        format!("{}/join/{}", self.public_url, self.key.mint(claims))
    }

    /// Stops accepting connections, closes every Transport, stops the outbox worker,
    /// waits for the HTTP and media tasks and closes the case store.
    pub async fn shutdown(mut self) {
        self.sfu.shutdown().await;
        self.outbox.abort();
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.media.await;
        // The media task is gone, so the recorder has its last messages: it closes
        // every open record (as interrupted by the shutdown) and ends.
        if let Some(r) = self.recorder.take() {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        let _ = self.http.await;
        let _ = (&mut self.outbox).await;
        self.cases.close().await;
    }

    /// Waits until the HTTP server ends (it ends on shutdown).
    pub async fn wait(self) {
        let _ = self.http.await;
    }
}

/// Claims for an invite valid for `ttl_secs` from now, with a fresh token id.
pub fn claims(room: &str, pid: &str, name: &str, role: Role, ttl_secs: u64) -> InviteClaims {
    InviteClaims {
        tid: random_id(),
        room: room.to_owned(),
        pid: pid.to_owned(),
        name: name.to_owned(),
        role,
        exp: unix_now() + ttl_secs,
        case_id: None,
        session_id: None,
        admitted: false,
    }
}

/// Opens the case store of `cfg` (creating the data folder, running migrations).
/// `public_url` is the base of invite links in force.
///
/// # Errors
/// The data folder cannot be made, the database cannot be reached or migrated, or the
/// invite key cannot be read.
pub async fn connect_cases(cfg: &Config, public_url: &str) -> anyhow::Result<Store> {
    cfg.prepare_data_dir()?;
    let cc = cfg.cases_config(public_url);
    fengqiao_cases::connect(&cc).await.with_context(|| {
        format!("opening the case database {}", fengqiao_cases::db::redact(&cc.effective_database_url()))
    })
}

/// `/api/...` paths no route knows get the case service's JSON 404; others a plain 404.
async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path() == "/api" || uri.path().starts_with("/api/") {
        CasesError::NotFound("endpoint".into()).into_response()
    } else {
        axum::http::StatusCode::NOT_FOUND.into_response()
    }
}

/// Binds everything and starts serving.
///
/// # Errors
/// The data folder cannot be made, the key cannot be read, the case database cannot be
/// opened or migrated, or a socket cannot be bound.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    cfg.prepare_data_dir()?;
    let key = InviteKey::load_or_create(&cfg.keys_dir())?;
    // HTTPS/WSS when a certificate is configured: read and checked before anything binds.
    let tls = match (&cfg.server.tls_cert, &cfg.server.tls_key) {
        (Some(c), Some(k)) => Some(crate::tls::load(c, k)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.server.http_addr)
        .await
        .with_context(|| format!("binding HTTP {}", cfg.server.http_addr))?;
    let http_addr = listener.local_addr()?;
    let mut public_url = cfg.server.public_url.clone();
    if cfg.server.http_addr.port() == 0 && public_url == crate::config::ServerConfig::default().public_url {
        public_url = format!("{}://{http_addr}", if tls.is_some() { "https" } else { "http" });
    }
    let cases = connect_cases(&cfg, &public_url).await?;
    // Session event logs (data/sessions/<session>/events.jsonl), written off the media task.
    let event_log = match fengqiao_signaling::events::spawn_writer(cfg.data_dir.join("sessions")) {
        Ok(s) => s,
        Err(e) => {
            cases.close().await;
            return Err(anyhow::Error::new(e).context("starting the session event log writer"));
        }
    };
    // The evidence recorder: its key, the close-out of sessions a crash interrupted,
    // and its queue from the media task.
    let recorder_started = crate::recording::prepare(&cfg);
    let (evidence_key, rec_sink, rec_source) = match recorder_started {
        Ok(x) => x,
        Err(e) => {
            cases.close().await;
            return Err(e);
        }
    };
    let (sfu, media) = match Sfu::start_with(cfg.media.clone(), Some(event_log), Some(rec_sink)).await {
        Ok(x) => x,
        Err(e) => {
            cases.close().await;
            return Err(e.into());
        }
    };
    let recorder = match crate::recording::spawn(&cfg, evidence_key, rec_source, sfu.clone(), cases.clone()) {
        Ok(h) => h,
        Err(e) => {
            sfu.shutdown().await;
            cases.close().await;
            return Err(e);
        }
    };
    let outbox = fengqiao_cases::spawn_outbox_worker(
        cases.clone(),
        Arc::new(LogSender),
        Duration::from_secs(cfg.cases.outbox_interval_secs.max(1)),
    );
    let ops = crate::ops::Ops::new(sfu.clone(), cfg.data_dir.clone(), cases.clone());
    let app = Router::new()
        .merge(fengqiao_web::router())
        .merge(fengqiao_signaling::router(SignalingState { sfu: sfu.clone(), key: key.clone() }))
        .merge(fengqiao_cases::router(CasesState::new(cases.clone())))
        .merge(fengqiao_web::staff::router())
        .merge(crate::evidence_api::router(CasesState::new(cases.clone())))
        .merge(crate::export_api::router(cases.clone()))
        .merge(ops.router())
        .fallback(fallback)
        .layer(axum::middleware::from_fn_with_state(ops.clone(), crate::ops::track_http));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let https = tls.is_some();
    let http = tokio::spawn(async move {
        let stop = async {
            let _ = stop_rx.await;
        };
        let make = app.into_make_service_with_connect_info::<SocketAddr>();
        let r = match tls {
            // `tap_io` gives the TLS listener axum's `ConnectInfo<SocketAddr>`.
            Some(t) => match crate::tls::TlsListener::new(listener, t) {
                Ok(l) => {
                    use axum::serve::ListenerExt as _;
                    axum::serve(l.tap_io(|_| {}), make).with_graceful_shutdown(stop).await
                }
                Err(e) => Err(e),
            },
            None => axum::serve(listener, make).with_graceful_shutdown(stop).await,
        };
        if let Err(e) = r {
            tracing::error!("http server: {e}");
        }
    });
    info!(http = %http_addr, https, media = %sfu.local_addr(), advertised = %sfu.advertised_addr(), %public_url,
        data_dir = %cfg.data_dir.display(), database = ?cases.backend(), "fengqiao listening");
    Ok(Running {
        http_addr,
        media_addr: sfu.local_addr(),
        public_url,
        key,
        sfu,
        cases,
        outbox,
        recorder: Some(recorder),
        stop: Some(stop_tx),
        http,
        media,
    })
}
