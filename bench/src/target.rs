//! The server under test: where it listens, how to mint its invites, and how to
//! read its CPU (/proc/<pid>/stat) and its /metrics counters.

use fengqiao_signaling::invite::InviteKey;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which server a [`Target`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ours,
    Janus,
}

pub struct Target {
    pub kind: Kind,
    /// Our server: its HTTP address (WebSocket at `/ws`, `/metrics`). Janus: its
    /// WebSocket transport (`ws://<http>`, subprotocol `janus-protocol`).
    pub http: SocketAddr,
    pub key: InviteKey,
    /// The server's process id when it is a separate process (CPU is read from
    /// its /proc); `None` when it runs inside this process.
    pub pid: Option<u32>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// A server already running (e.g. in this process, in tests).
    pub fn existing(http: SocketAddr, key: InviteKey, pid: Option<u32>) -> Self {
        Self { kind: Kind::Ours, http, key, pid, child: None, _dir: None }
    }

    /// A started child process (`crate::janus` uses it).
    pub(crate) fn child(kind: Kind, http: SocketAddr, pid: u32, child: Child, dir: tempfile::TempDir) -> Self {
        // Janus needs no invite key; a throwaway one keeps the field simple.
        let key = InviteKey::load_or_create(&dir.path().join("keys")).expect("temp folder is writable");
        Self { kind, http, key, pid: Some(pid), child: Some(child), _dir: Some(dir) }
    }

    /// Starts `bin serve` as a child process on `bind_ip` (HTTP and media) with free
    /// ports, a temp data folder and the invite key written there first (so this
    /// process mints admitted invites with the server's own key). `taskset` pins it
    /// when given.
    pub fn spawn(bin: &Path, bind_ip: &str, max_participants: usize, cpus: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = InviteKey::load_or_create(&dir.path().join("keys"))?;
        let mut cmd = match cpus {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.arg("-c").arg(c).arg(bin);
                t
            }
            None => Command::new(bin),
        };
        cmd.arg("serve")
            .env("FENGQIAO_DATA_DIR", dir.path())
            .env("FENGQIAO_SERVER__HTTP_ADDR", format!("{bind_ip}:0"))
            .env("FENGQIAO_MEDIA__BIND_IP", bind_ip)
            .env("FENGQIAO_MEDIA__UDP_PORT", "0")
            .env("FENGQIAO_MEDIA__MAX_PARTICIPANTS", max_participants.to_string())
            .env("FENGQIAO_LOG__FORMAT", "json")
            .env("FENGQIAO_LOG__LEVEL", "warn,fengqiao::server=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("{}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log until EOF (the process ends), so the pipe never fills.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(t) = &tx {
                    if line.contains("fengqiao listening") {
                        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                        let _ = t.send(v["fields"]["http"].as_str().map(str::to_owned));
                        tx = None;
                    }
                } else if line.contains("\"ERROR\"") {
                    eprintln!("server: {line}");
                }
            }
        });
        let http = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(h)) => h.parse()?,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("server did not report its address: {other:?}")
            }
        };
        Ok(Self { kind: Kind::Ours, http, key, pid: Some(pid), child: Some(child), _dir: Some(dir) })
    }

    pub fn ws_url(&self) -> String {
        match self.kind {
            Kind::Ours => format!("ws://{}/ws", self.http),
            Kind::Janus => format!("ws://{}", self.http),
        }
    }

    /// The server's UDP sockets from `ss -uanp` (local address:port), to check
    /// that no media socket listens outside the namespace address / loopback.
    pub fn udp_sockets(&self) -> Vec<String> {
        let Some(pid) = self.pid else { return Vec::new() };
        let Ok(out) = Command::new("ss").arg("-uanp").output() else { return Vec::new() };
        let needle = format!("pid={pid},");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&needle))
            .filter_map(|l| l.split_whitespace().nth(3).map(str::to_owned))
            .collect()
    }

    /// CPU seconds (user + system) of the server process, if it is separate.
    pub fn cpu_secs(&self) -> Option<f64> {
        proc_cpu_secs(self.pid?)
    }

    pub fn rss_kb(&self) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    /// (`fengqiao_rtp_packets_out_total`, `fengqiao_media_bytes_out_total`) of our
    /// server; `None` for Janus (no such counters without its admin API).
    pub async fn counters(&self) -> anyhow::Result<Option<(f64, f64)>> {
        if self.kind == Kind::Janus {
            return Ok(None);
        }
        let text = http_get(self.http, "/metrics").await?;
        Ok(Some((metric(&text, "fengqiao_rtp_packets_out_total")?, metric(&text, "fengqiao_media_bytes_out_total")?)))
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// utime + stime of `pid` in seconds (fields 14 and 15 of /proc/<pid>/stat).
pub fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is f[0]; utime is field 14 → f[11].
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

pub fn self_cpu_secs() -> f64 {
    proc_cpu_secs(std::process::id()).unwrap_or(0.0)
}

fn metric(text: &str, name: &str) -> anyhow::Result<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = if rest.starts_with('{') { &rest[rest.find('}')? + 1..] } else { rest };
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .ok_or_else(|| anyhow::anyhow!("metric {name} not found"))
}

/// A minimal HTTP/1.1 GET (loopback only, bounded to 5 s).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        anyhow::ensure!(text.starts_with("HTTP/1.1 200"), "GET {path}: {}", text.lines().next().unwrap_or(""));
        Ok::<_, anyhow::Error>(text)
    };
    tokio::time::timeout(Duration::from_secs(5), fut).await?
}
