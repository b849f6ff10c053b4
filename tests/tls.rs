//! HTTPS and WSS served directly with rustls (issue 5; `server.tls_cert`,
//! `server.tls_key`). A self-signed certificate for `localhost` is made with
//! `rcgen`; the clients trust exactly that certificate. Also: a key that cannot be
//! read, is not a key, or belongs to another certificate stops start-up with
//! `server.tls_key` named, in-process and from the `fengqiao serve` command line.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::Message;

struct Pems {
    cert: PathBuf,
    key: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files.
fn self_signed(dir: &Path, name: &str) -> Pems {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("rcgen");
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Pems { cert, key, der: ck.cert.der().clone() }
}

fn client_config(trust: &rustls::pki_types::CertificateDer<'static>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // As browsers do: offer h2 and http/1.1; the server picks http/1.1.
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    cfg: Arc<ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(cfg).connect(ServerName::try_from("localhost").unwrap(), tcp).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_join_with_a_configured_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let pems = self_signed(certs.path(), "server");
    let (cert, key) = (pems.cert.clone(), pems.key.clone());
    let (srv, _dir) = start_server_with(move |c| {
        c.server.tls_cert = Some(cert);
        c.server.tls_key = Some(key);
    })
    .await;
    assert!(srv.public_url.starts_with("https://"), "public_url {}", srv.public_url);
    let cfg = client_config(&pems.der);

    // HTTPS: the health check answers over TLS, with ALPN http/1.1.
    let mut tls = tls_connect(srv.http_addr, cfg.clone()).await.expect("TLS handshake with the server");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut resp = String::new();
    let _ = tls.read_to_string(&mut resp).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "HTTPS /healthz: {resp:?}");

    // WSS: signaling over TLS, a real join with an invite token.
    let stream = tls_connect(srv.http_addr, cfg.clone()).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/ws", stream).await.expect("WSS upgrade");
    let tok = token(&srv, "tls-room", "alice", "甲");
    ws.send(Message::Text(json!({"type": "join", "v": 1, "token": tok}).to_string().into())).await.unwrap();
    let joined: Value = loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a reply in time") {
            Some(Ok(Message::Text(t))) => break serde_json::from_str(&t).unwrap(),
            Some(Ok(_)) => continue,
            other => panic!("WSS closed: {other:?}"),
        }
    };
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["me"]["id"], "alice", "{joined}");
    let _ = ws.close(None).await;

    // Cleartext HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(srv.http_addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/1.1 200"), "cleartext HTTP was served on the TLS port");

    // A client that does not trust this certificate fails the handshake.
    let other = self_signed(certs.path(), "other");
    assert!(tls_connect(srv.http_addr, client_config(&other.der)).await.is_err(), "an untrusted certificate was accepted");
    srv.shutdown().await;
}

async fn start_error(cert: PathBuf, key: PathBuf) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fengqiao::config::Config::default();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse().unwrap();
    cfg.media.udp_port = 0;
    cfg.server.tls_cert = Some(cert);
    cfg.server.tls_key = Some(key);
    match fengqiao::server::start(cfg).await {
        Ok(s) => {
            s.shutdown().await;
            panic!("the server started with a bad TLS key");
        }
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tls_key_fails_start_up_naming_server_tls_key() {
    let d = tempfile::tempdir().unwrap();
    let good = self_signed(d.path(), "good");
    let other = self_signed(d.path(), "other");
    let garbage = d.path().join("garbage.key");
    std::fs::write(&garbage, "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n").unwrap();
    let cases = [
        ("missing file", d.path().join("nope.key")),
        ("a directory (unreadable as a file)", d.path().to_path_buf()),
        ("not a key", garbage),
        ("a certificate, not a key", good.cert.clone()),
        ("the key of another certificate", other.key.clone()),
    ];
    for (what, key) in cases {
        let e = start_error(good.cert.clone(), key).await;
        assert!(e.contains("server.tls_key"), "{what}: the error does not name server.tls_key: {e}");
        eprintln!("{what}: {e}");
    }
    let e = start_error(d.path().join("nope.crt"), good.key.clone()).await;
    assert!(e.contains("server.tls_cert"), "missing certificate: {e}");

    // Only one of the two set: the config itself is refused, naming the missing key.
    let toml = d.path().join("half.toml");
    std::fs::write(&toml, format!("[server]\ntls_cert = {:?}\n", good.cert.display().to_string())).unwrap();
    let e = format!("{:#}", fengqiao::config::Config::load(Some(&toml)).expect_err("half a TLS config loads"));
    assert!(e.contains("server.tls_key"), "{e}");

    // From the command line: `fengqiao serve` exits non-zero with the key named.
    let conf = d.path().join("bad.toml");
    std::fs::write(
        &conf,
        format!(
            "data_dir = {:?}\n[server]\nhttp_addr = \"127.0.0.1:0\"\ntls_cert = {:?}\ntls_key = {:?}\n[media]\nudp_port = 0\n",
            d.path().join("data").display().to_string(),
            good.cert.display().to_string(),
            other.key.display().to_string()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fengqiao"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FENGQIAO_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .args(["serve", "--config"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fengqiao runs");
    let status = wait_timeout::ChildExt::wait_timeout(&mut child, Duration::from_secs(30)).unwrap();
    let Some(status) = status else {
        let _ = child.kill();
        panic!("fengqiao serve kept running with a key of another certificate");
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(!status.success(), "fengqiao serve exited 0");
    assert!(err.contains("server.tls_key"), "stderr does not name server.tls_key: {err}");
}
