//! Starting and stopping a whole server: HTTP (pages + signaling) and media.

use crate::config::Config;
use anyhow::Context as _;
use axum::routing::get;
use axum::Router;
use fengqiao_signaling::invite::{random_id, unix_now, InviteClaims, InviteKey, Role};
use fengqiao_signaling::SignalingState;
use fengqiao_sfu::Sfu;
use std::net::SocketAddr;
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
    stop: Option<oneshot::Sender<()>>,
    http: tokio::task::JoinHandle<()>,
    media: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Mints an invite and returns its join URL `{public_url}/join/{token}`.
    pub fn invite_url(&self, claims: &InviteClaims) -> String {
        format!("{}/join/{}", self.public_url, self.key.mint(claims))
    }

    /// Stops accepting connections, closes every Transport and waits for both tasks.
    pub async fn shutdown(mut self) {
        self.sfu.shutdown().await;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.media.await;
        let _ = self.http.await;
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

/// Binds everything and starts serving.
///
/// # Errors
/// The data folder cannot be made, the key cannot be read, or a socket cannot be bound.
pub async fn start(cfg: Config) -> anyhow::Result<Running> {
    cfg.prepare_data_dir()?;
    let key = InviteKey::load_or_create(&cfg.keys_dir())?;
    let (sfu, media) = Sfu::start(cfg.media.clone()).await?;
    let listener = tokio::net::TcpListener::bind(cfg.server.http_addr)
        .await
        .with_context(|| format!("binding HTTP {}", cfg.server.http_addr))?;
    let http_addr = listener.local_addr()?;
    let mut public_url = cfg.server.public_url.clone();
    if cfg.server.http_addr.port() == 0 && public_url == crate::config::ServerConfig::default().public_url {
        public_url = format!("http://{http_addr}");
    }
    let app = Router::new()
        .merge(fengqiao_web::router())
        .merge(fengqiao_signaling::router(SignalingState { sfu: sfu.clone(), key: key.clone() }))
        .route("/healthz", get(|| async { "ok\n" }));
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let http = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .await;
        if let Err(e) = r {
            tracing::error!("http server: {e}");
        }
    });
    info!(http = %http_addr, media = %sfu.local_addr(), advertised = %sfu.advertised_addr(), %public_url,
        data_dir = %cfg.data_dir.display(), "fengqiao listening");
    Ok(Running {
        http_addr,
        media_addr: sfu.local_addr(),
        public_url,
        key,
        sfu,
        stop: Some(stop_tx),
        http,
        media,
    })
}
