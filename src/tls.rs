//! HTTPS and WSS served directly with rustls, when `server.tls_cert` and
//! `server.tls_key` name PEM files (`docs/configuration.md`, `docs/deploy.md`).
//!
//! [`load`] reads and checks both files at start-up, so a missing, unreadable or
//! invalid file, or a key that does not belong to the certificate, stops the server
//! with the config key named. [`TlsListener`] is an `axum::serve::Listener`: a task
//! accepts TCP connections and runs each TLS handshake in its own task (bounded by
//! [`HANDSHAKE_TIMEOUT`]), so a slow or broken client never holds up the others.
//! Only HTTP/1.1 is offered (ALPN `http/1.1`): WebSocket signaling upgrades over it.

use anyhow::{anyhow, Context as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// A TLS handshake that takes longer than this is abandoned.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the HTTP server to take them.
const ACCEPT_QUEUE: usize = 64;

/// Reads the certificate chain (`server.tls_cert`, PEM, leaf first) and private key
/// (`server.tls_key`, PEM: PKCS#8, PKCS#1 or SEC1) and builds the rustls server
/// configuration (ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`).
///
/// # Errors
/// Each names its config key and the file: the file cannot be read; it holds no
/// certificate / no private key, or malformed PEM; the key does not match the
/// certificate (`server.tls_key`).
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert_path)
        .with_context(|| format!("config key `server.tls_cert`: cannot read {}", cert_path.display()))?;
    let key_pem = std::fs::read(key_path)
        .with_context(|| format!("config key `server.tls_key`: cannot read {}", key_path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("config key `server.tls_cert`: {} is not valid PEM: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("config key `server.tls_cert`: {} holds no CERTIFICATE", cert_path.display()));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "config key `server.tls_key`: {} holds no usable private key (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY): {e}",
            key_path.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS set-up: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "config key `server.tls_key`: {} cannot be used with the certificate in {}: {e}",
                key_path.display(),
                cert_path.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A TCP listener that hands out TLS streams (see the module docs). Dropping it
/// stops the accept task.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` (already bound) with `config`.
    ///
    /// # Errors
    /// The bound address cannot be read.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = tx.closed() => return,
                    a = tcp.accept() => a,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // e.g. EMFILE: back off instead of spinning.
                        warn!("accepting a TCP connection: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
