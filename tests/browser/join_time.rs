//! Bench, not a test (issue 6): Chromium join time → first decoded frame, over N
//! samples (default 20). Selected only by `FQ_BROWSER_CASES=join_time`; `make test`
//! never runs it (see `main`). Shares the harness's namespace, drivers and browser
//! set-up (`super::*`).
//!
//! One room on a fresh server. A publisher tab (Chromium, fake camera and microphone,
//! mediator `m1`) joins first and sends. Then, per sample, a new tab in a second
//! Chromium opens a fresh invite link (applicant `s<i>`); a script in the page waits
//! until the join button is enabled (the lobby's getUserMedia done), clicks it and
//! polls the page's `RTCPeerConnection.getStats()` every 10 ms. Times, in ms from
//! the click, measured with the page's own `performance.now()` (no WebDriver latency):
//!
//! - `joined`: the `joined` signaling message handled (`window.fq.state.joinedAt`);
//! - `ice_connected`: `iceConnectionState` became `connected` (a candidate pair works);
//! - `connected`: the peer connection's `connectionState` became `connected` (ICE and
//!   DTLS done);
//! - `first_rtp`: the first poll whose `inbound-rtp` shows `packetsReceived > 0`
//!   (any kind);
//! - `first_frame`: the first poll whose video `inbound-rtp` shows `framesDecoded > 0`;
//! - `presented`: `requestVideoFrameCallback` of the remote `<video>` fired (first
//!   frame composited), as a cross-check;
//! - `nav_to_frame`: from the navigation start of the invite link to `first_frame`
//!   (page load, lobby getUserMedia, join, media).
//!
//! A poll figure is the time its `getStats()` promise resolved, i.e. an upper bound;
//! the previous poll (≤ 10 ms + one `getStats()` earlier) had not seen it. The subscriber
//! then clicks leave and the tab is closed.
//!
//! The server is a separate `fengqiao serve` process (`fengqiao_bench::target::Target`):
//! `FQ_JOIN_SERVER_BIN` if set, else `target/release/fengqiao` if it exists, else this
//! build's dev binary. With `FQ_JOIN_SERVERS=ours,janus` the same is measured against
//! Janus 1.1.2 (`fengqiao_bench::janus`, on the namespace's `fq0`) with a small page
//! speaking its videoroom API (`join_janus.html`), served by this process; servers
//! alternate sample by sample.
//!
//! Environment: `FQ_JOIN_SAMPLES` (default 20), `FQ_JOIN_SERVERS` (default `ours`),
//! `FQ_JOIN_OUT` (default `bench/results/chromium-join.json`).

use super::{open_with, start_driver, Driver, NS_IP};
use fantoccini::Client;
use fengqiao_bench::target::Target;
use fengqiao_signaling::invite::Role;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The figures per sample, in the order printed.
const FIGURES: [&str; 7] = ["joined", "ice_connected", "connected", "first_rtp", "first_frame", "presented", "nav_to_frame"];

/// Runs in the subscriber's page right after the invite page loaded: waits for the
/// join button, clicks it, and records the figures in `window.__jt` (`done` when the
/// first frame was decoded or after 30 s). `window.fq.state` (`pc`, `joinedAt`) is
/// what our page and the Janus page both expose.
const PROBE: &str = r#"
const r = { t0: null, enabled: null, joined: null, ice_connected: null, connected: null, first_rtp: null, first_rtp_poll: null, first_frame: null,
            first_frame_poll: null, presented: null, nav_to_frame: null, unmute_missed: false,
            polls: 0, max_gap: 0, stats_lag: 0, done: false, error: null };
window.__jt = r;
(async () => {
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
  try {
    let btn = null;
    const until = performance.now() + 30000;
    while (!(btn = document.querySelector("[data-action=join]:not([disabled])"))) {
      if (performance.now() > until) throw new Error("join button never enabled");
      await sleep(5);
    }
    r.enabled = performance.now();
    r.t0 = performance.now();
    btn.click();
    const st = window.fq.state;
    const end = r.t0 + 30000;
    const hookedTracks = new Set();
    let last = r.t0, hookedVideo = false, hookedPc = null;
    while (performance.now() < end && r.first_frame === null) {
      if (r.joined === null && st.joinedAt) r.joined = st.joinedAt - r.t0;
      if (!hookedVideo) {
        const v = document.querySelector("video[data-participant-id]");
        if (v && v.requestVideoFrameCallback) {
          hookedVideo = true;
          v.requestVideoFrameCallback(() => { if (r.presented === null) r.presented = performance.now() - r.t0; });
        }
      }
      const pc = st.pc;
      if (pc && hookedPc !== pc) {
        hookedPc = pc;
        const seen = () => {
          const now = performance.now() - r.t0;
          if (r.ice_connected === null && ["connected", "completed"].includes(pc.iceConnectionState)) r.ice_connected = now;
          if (r.connected === null && pc.connectionState === "connected") r.connected = now;
        };
        pc.addEventListener("iceconnectionstatechange", seen);
        pc.addEventListener("connectionstatechange", seen);
        seen();
      }
      if (pc) {
        // A remote track unmutes when its first RTP packet arrives.
        for (const rc of pc.getReceivers()) {
          const tr = rc.track;
          if (!tr || hookedTracks.has(tr.id)) continue;
          hookedTracks.add(tr.id);
          if (!tr.muted) r.unmute_missed = true;
          tr.addEventListener("unmute", () => { if (r.first_rtp === null) r.first_rtp = performance.now() - r.t0; });
        }
        const before = performance.now();
        const rep = await pc.getStats();
        const now = performance.now();
        r.polls += 1; r.max_gap = Math.max(r.max_gap, now - last); last = now;
        rep.forEach((s) => {
          if (s.type !== "inbound-rtp") return;
          // The report's own clock (ms since the epoch): when these counters were read.
          const at = Math.min(now, Math.max(before, s.timestamp - performance.timeOrigin)) - r.t0;
          r.stats_lag = Math.max(r.stats_lag, now - r.t0 - at);
          if (r.first_rtp_poll === null && s.packetsReceived > 0) r.first_rtp_poll = at;
          if (r.first_frame === null && s.kind === "video" && s.framesDecoded > 0) { r.first_frame = at; r.first_frame_poll = now - r.t0; }
        });
      }
      await sleep(10);
    }
    if (r.joined === null && st.joinedAt) r.joined = st.joinedAt - r.t0;
    if (r.first_rtp === null) r.first_rtp = r.first_rtp_poll;
    if (r.first_frame !== null) r.nav_to_frame = r.t0 + r.first_frame;
    // rVFC fires on the next composited frame: give it a moment.
    for (let i = 0; i < 50 && r.presented === null && r.first_frame !== null; i++) await sleep(10);
  } catch (e) {
    r.error = String(e);
  }
  r.done = true;
})();
return true;
"#;

/// Which server a sample ran against.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Server {
    Ours,
    Janus,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Ours => "fengqiao",
            Server::Janus => "janus",
        }
    }
}

/// A server with its publisher tab already sending, ready for subscribers.
struct Room {
    server: Server,
    /// The subscriber invite URL for sample `i`.
    url: Box<dyn Fn(usize) -> String + Send>,
    /// The page's origin (treated as secure in the subscriber's browser).
    origin: String,
    _publisher: Client,
    _keep: Vec<Box<dyn std::any::Any + Send>>,
}

/// The `fengqiao` binary to run and what build it is.
fn our_binary() -> (PathBuf, &'static str) {
    if let Some(p) = std::env::var_os("FQ_JOIN_SERVER_BIN") {
        return (PathBuf::from(p), "given by FQ_JOIN_SERVER_BIN");
    }
    let release = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/fengqiao");
    if release.exists() {
        (release, "release")
    } else {
        (PathBuf::from(env!("CARGO_BIN_EXE_fengqiao")), "dev (test profile)")
    }
}

/// Starts a browser (its own driver and profile) that treats `origins` as secure
/// and does not throttle tabs that are not focused.
async fn browser(origins: &[String]) -> Result<Client, String> {
    let driver = start_driver("chromium").await?;
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let extra = vec![
        "--disable-background-timer-throttling".into(),
        "--disable-renderer-backgrounding".into(),
        "--disable-backgrounding-occluded-windows".into(),
        // The last one given wins: all origins in one.
        format!("--unsafely-treat-insecure-origin-as-secure={}", origins.join(",")),
    ];
    let c = open_with("chromium", &driver, profile.path(), &origins[0], &extra).await?;
    OPENED.lock().unwrap_or_else(|e| e.into_inner()).push((c.clone(), driver, profile));
    Ok(c)
}

/// Every browser session [`browser`] opened, with its driver and profile: [`run`] ends
/// the sessions, then stops the drivers, however it ends (a session that is not ended
/// leaves its Chromium running after its driver is killed).
static OPENED: std::sync::Mutex<Vec<(Client, Driver, tempfile::TempDir)>> = std::sync::Mutex::new(Vec::new());

/// Waits until the page's peer connection is connected and sending.
async fn publishing(c: &Client, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let v = c
            .execute(
                "return (async () => { const pc = window.fq && window.fq.state.pc; \
                 if (!pc || pc.connectionState !== 'connected') return 0; \
                 const rep = await pc.getStats(); let n = 0; \
                 rep.forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'video') n += s.framesEncoded || 0; }); \
                 return n; })()",
                vec![],
            )
            .await
            .map_err(|e| format!("publisher stats: {e}"))?;
        if v.as_u64().unwrap_or(0) > 30 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the publisher tab never connected and sent video".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click_join(c: &Client) -> Result<(), String> {
    super::click(c, "[data-action=join]:not([disabled])", Duration::from_secs(20)).await
}

/// Our server as a child process, with mediator `m1` publishing from its own browser.
async fn our_room(samples: usize, info: &mut Value) -> Result<Room, String> {
    let (bin, build) = our_binary();
    let target = Target::spawn(&bin, NS_IP, samples + 4, None).map_err(|e| format!("server: {e:#}"))?;
    info["fengqiao_binary"] = json!(bin.display().to_string());
    info["fengqiao_build"] = json!(build);
    info["fengqiao_binary_built"] = json!(sh(&format!("date -u -r '{}' +%FT%TZ", bin.display())));
    let origin = format!("http://{}", target.http);
    let room = "bench-join";
    let mut pub_claims = fengqiao::server::claims(room, "m1", "王调解员", Role::Mediator, 3600);
    pub_claims.admitted = true;
    let publisher = browser(std::slice::from_ref(&origin)).await?;
    publisher.goto(&format!("{origin}/join/{}", target.key.mint(&pub_claims))).await.map_err(|e| format!("goto: {e}"))?;
    click_join(&publisher).await?;
    publishing(&publisher, Duration::from_secs(30)).await?;
    let key = target.key.clone();
    let origin2 = origin.clone();
    let url = move |i: usize| {
        let mut cl = fengqiao::server::claims(room, &format!("s{i}"), &format!("当事人{i}"), Role::Applicant, 3600);
        cl.admitted = true;
        format!("{origin}/join/{}", key.mint(&cl))
    };
    Ok(Room { server: Server::Ours, url: Box::new(url), origin: origin2, _publisher: publisher, _keep: vec![Box::new(target)] })
}

/// One sample: a new tab in `sub` opens `url`, joins, and reports the figures.
async fn sample(sub: &Client, home: &fantoccini::wd::WindowHandle, url: &str) -> Result<Value, String> {
    let tab = sub.new_window(true).await.map_err(|e| format!("new tab: {e}"))?;
    sub.switch_to_window(tab.handle).await.map_err(|e| format!("switch tab: {e}"))?;
    let r = async {
        sub.goto(url).await.map_err(|e| format!("goto: {e}"))?;
        sub.execute(PROBE, vec![]).await.map_err(|e| format!("probe: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let r = sub.execute("return window.__jt", vec![]).await.map_err(|e| format!("poll: {e}"))?;
            if r["done"] == json!(true) {
                if let Some(e) = r["error"].as_str() {
                    return Err(format!("in the page: {e}"));
                }
                if r["first_frame"].is_null() {
                    return Err(format!("no decoded frame within 30 s: {r}"));
                }
                return Ok(r);
            }
            if Instant::now() > deadline {
                return Err(format!("the probe never finished: {r}"));
            }
        }
    }
    .await;
    // Leave cleanly (the server would otherwise keep the participant for its resume
    // window), then close the tab.
    let _ = sub.execute("const b = document.querySelector('[data-action=leave]'); if (b) b.click(); return true", vec![]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = sub.close_window().await;
    let _ = sub.switch_to_window(home.clone()).await;
    r
}

/// Linear-interpolated percentile `p` (0–100) of sorted `v`.
fn percentile(v: &[f64], p: f64) -> f64 {
    if v.len() == 1 {
        return v[0];
    }
    let x = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// Per figure: n, median, p90, min, max over the successful samples.
fn summarize(samples: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for f in FIGURES {
        let mut v: Vec<f64> = samples.iter().filter_map(|s| s[f].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            out.insert(f.into(), json!({ "n": 0 }));
            continue;
        }
        out.insert(
            f.into(),
            json!({
                "n": v.len(),
                "median_ms": (percentile(&v, 50.0) * 10.0).round() / 10.0,
                "p90_ms": (percentile(&v, 90.0) * 10.0).round() / 10.0,
                "min_ms": (v[0] * 10.0).round() / 10.0,
                "max_ms": (v[v.len() - 1] * 10.0).round() / 10.0,
            }),
        );
    }
    Value::Object(out)
}

/// The bench case: `FQ_JOIN_SAMPLES` samples per server, printed and written as JSON.
/// Sampling stops after `FQ_JOIN_BUDGET_SECS` (default 900 s; the samples taken are
/// kept and the shortfall reported). Every browser session is ended before it returns.
pub async fn run() -> Result<(), String> {
    let r = run_samples().await;
    let opened = std::mem::take(&mut *OPENED.lock().unwrap_or_else(|e| e.into_inner()));
    for (c, _driver, _profile) in opened {
        let _ = tokio::time::timeout(Duration::from_secs(10), c.close()).await;
    }
    r
}

async fn run_samples() -> Result<(), String> {
    let budget = Duration::from_secs(std::env::var("FQ_JOIN_BUDGET_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(900));
    let t_start = Instant::now();
    let n: usize = std::env::var("FQ_JOIN_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let servers: Vec<Server> = std::env::var("FQ_JOIN_SERVERS")
        .unwrap_or_else(|_| "ours".into())
        .split(',')
        .filter_map(|s| match s.trim() {
            "ours" | "fengqiao" => Some(Server::Ours),
            "janus" => Some(Server::Janus),
            _ => None,
        })
        .collect();
    if servers.is_empty() || n == 0 {
        return Err("FQ_JOIN_SERVERS names no server (ours, janus) or FQ_JOIN_SAMPLES is 0".into());
    }
    let out = std::env::var_os("FQ_JOIN_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/results/chromium-join.json"));
    let started = sh("date -u +%FT%TZ");
    let load_before = loadavg();
    let mut info = json!({});
    let mut rooms = Vec::new();
    for s in &servers {
        rooms.push(match s {
            Server::Ours => our_room(n, &mut info).await?,
            Server::Janus => janus_room(&mut info).await?,
        });
    }
    let origins: Vec<String> = rooms.iter().map(|r| r.origin.clone()).collect();
    let sub = browser(&origins).await?;
    let home = sub.window().await.map_err(|e| e.to_string())?;
    // One unmeasured join per server first: the subscriber browser's first page load,
    // codec and network set-up are not what a user's second click pays.
    for room in &rooms {
        if let Err(e) = sample(&sub, &home, &(room.url)(1000)).await {
            eprintln!("join_time: warm-up against {} failed: {e}", room.server.name());
        }
    }
    let mut per: Vec<Vec<Value>> = vec![Vec::new(); rooms.len()];
    let mut failures: Vec<Vec<String>> = vec![Vec::new(); rooms.len()];
    let mut stopped_early = None;
    for i in 0..n {
        if t_start.elapsed() > budget {
            eprintln!("join_time: budget of {budget:?} spent after {i} rounds: stopping");
            stopped_early = Some(i);
            break;
        }
        for (k, room) in rooms.iter().enumerate() {
            let t = Instant::now();
            match sample(&sub, &home, &(room.url)(i)).await {
                Ok(r) => {
                    eprintln!(
                        "join_time {} sample {i}: joined {:.0} ms, ICE {:.0} ms, connected {:.0} ms, first RTP {:.0} ms, first frame {:.0} ms, presented {} ({:?} wall)",
                        room.server.name(),
                        r["joined"].as_f64().unwrap_or(f64::NAN),
                        r["ice_connected"].as_f64().unwrap_or(f64::NAN),
                        r["connected"].as_f64().unwrap_or(f64::NAN),
                        r["first_rtp"].as_f64().unwrap_or(f64::NAN),
                        r["first_frame"].as_f64().unwrap_or(f64::NAN),
                        r["presented"].as_f64().map(|p| format!("{p:.0} ms")).unwrap_or_else(|| "-".into()),
                        t.elapsed()
                    );
                    per[k].push(r);
                }
                Err(e) => {
                    eprintln!("join_time {} sample {i}: FAILED: {e}", room.server.name());
                    failures[k].push(e);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let load_after = loadavg();
    let mut results = serde_json::Map::new();
    for (k, room) in rooms.iter().enumerate() {
        let summary = summarize(&per[k]);
        println!("join_time: {} ({} of {n} samples ok), ms from the click:", room.server.name(), per[k].len());
        println!("  {:<13} {:>8} {:>8} {:>8} {:>8}", "figure", "median", "p90", "min", "max");
        for f in FIGURES {
            let s = &summary[f];
            if s["n"].as_u64().unwrap_or(0) > 0 {
                println!(
                    "  {f:<13} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                    s["median_ms"].as_f64().unwrap_or(0.0),
                    s["p90_ms"].as_f64().unwrap_or(0.0),
                    s["min_ms"].as_f64().unwrap_or(0.0),
                    s["max_ms"].as_f64().unwrap_or(0.0)
                );
            }
        }
        let samples: Vec<Value> = per[k]
            .iter()
            .map(|r| {
                json!({
                    "joined": r["joined"], "ice_connected": r["ice_connected"], "connected": r["connected"], "first_rtp": r["first_rtp"], "first_frame": r["first_frame"],
                    "presented": r["presented"], "nav_to_frame": r["nav_to_frame"], "lobby_ms": r["enabled"],
                    "first_rtp_poll": r["first_rtp_poll"], "first_frame_poll_returned": r["first_frame_poll"],
                    "unmute_missed": r["unmute_missed"], "polls": r["polls"], "max_poll_gap_ms": r["max_gap"],
                    "max_stats_lag_ms": r["stats_lag"],
                })
            })
            .collect();
        results.insert(
            room.server.name().into(),
            json!({ "ok": per[k].len(), "failed": failures[k].len(), "failures": failures[k], "summary": summary, "samples": samples }),
        );
    }
    println!("join_time: load average {load_before} before, {load_after} after");
    let doc = json!({
        "bench": "chromium join → first decoded frame (tests/browser/join_time.rs)",
        "started": started,
        "commit": sh("git -C \"$CARGO_MANIFEST_DIR\" rev-parse --short HEAD 2>/dev/null || true"),
        "uncommitted_changes": !sh("git -C \"$CARGO_MANIFEST_DIR\" status --porcelain 2>/dev/null | head -1").is_empty(),
        "machine": { "cpus": sh("nproc"), "model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"), "load_before": load_before, "load_after": load_after },
        "chromium": sh("chromium --version 2>/dev/null"),
        "samples_requested": n,
        "stopped_early_after_rounds": stopped_early,
        "servers": info,
        "units": "ms from the in-page click on join, except nav_to_frame (from navigation start of the invite link) and lobby_ms (navigation start → join button enabled)",
        "results": results,
    });
    if let Some(dir) = out.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap_or_default()).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("join_time: wrote {}", out.display());
    let failed: usize = failures.iter().map(Vec::len).sum();
    if failed > 0 || stopped_early.is_some() {
        return Err(format!("{failed} sample(s) failed, stopped early after {stopped_early:?} rounds (see above)"));
    }
    Ok(())
}

/// The Janus bench page, served by [`PageServer`].
const JANUS_PAGE: &str = include_str!("join_janus.html");

/// A minimal HTTP server for [`JANUS_PAGE`] (any path), stopped on drop.
struct PageServer(tokio::task::JoinHandle<()>);

impl Drop for PageServer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve_page() -> Result<(PageServer, std::net::SocketAddr), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind((NS_IP, 0)).await.map_err(|e| format!("page server: {e}"))?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 2048];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let (status, body) = if buf.starts_with(b"GET /janus.html") { ("200 OK", JANUS_PAGE) } else { ("404 Not Found", "") };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok((PageServer(task), addr))
}

/// Janus 1.1.2 (Debian) in this namespace on `fq0`, a videoroom created by the
/// publisher tab, which publishes from its own browser.
async fn janus_room(info: &mut Value) -> Result<Room, String> {
    let port = std::net::TcpListener::bind((NS_IP, 0)).and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let janus = fengqiao_bench::janus::spawn(std::path::Path::new("/usr/bin/janus"), NS_IP, "fq0", port, None)
        .map_err(|e| format!("janus: {e:#}"))?;
    info["janus"] = json!(sh("dpkg-query -W -f '${Version}' janus"));
    let (page, addr) = serve_page().await?;
    let origin = format!("http://{addr}");
    let room = fengqiao_bench::janus::room_id("bench-join");
    let base = format!("{origin}/janus.html?ws=ws://{NS_IP}:{port}&room={room}");
    let publisher = browser(std::slice::from_ref(&origin)).await?;
    publisher.goto(&format!("{base}&role=pub")).await.map_err(|e| format!("goto: {e}"))?;
    click_join(&publisher).await?;
    let published = publishing(&publisher, Duration::from_secs(30)).await;
    let feed = publisher.execute("return window.fq.state.feedId", vec![]).await.map_err(|e| e.to_string())?;
    if let Err(e) = published {
        let err = publisher.execute("return window.fq.state.error", vec![]).await.unwrap_or_default();
        return Err(format!("{e} (page error: {err})"));
    }
    let feed = feed.as_u64().ok_or_else(|| format!("the publisher page has no feed id: {feed}"))?;
    let url = move |_i: usize| format!("{base}&role=sub&feed={feed}");
    Ok(Room { server: Server::Janus, url: Box::new(url), origin, _publisher: publisher, _keep: vec![Box::new(janus), Box::new(page)] })
}
