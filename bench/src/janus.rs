//! Janus 1.1.2 (Debian package `janus`) as the peer server: [`spawn`] starts it
//! with a config written to a temp folder, and [`Janus`] joins its videoroom
//! plugin over the WebSocket transport (Janus API, JSON; one session per
//! participant, a publisher handle and one multistream subscriber handle).
//!
//! Janus's ICE code skips loopback interfaces, so it runs inside the private
//! namespace of [`crate::netns`], on the interface [`crate::netns::IFACE`] only
//! (`ice_enforce_list`), its WebSocket on the same address.

use crate::adapter::{Adapter, Session};
use crate::client::{Pc, PcFactory, Publisher};
use crate::target::{Kind, Target};
use async_trait::async_trait;
use futures_util::{SinkExt, StreamExt};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const STEP: Duration = Duration::from_secs(20);
const PLUGINS: &str = "/usr/lib/x86_64-linux-gnu/janus";

/// Starts `bin` (normally `/usr/bin/janus`) with only the videoroom plugin and the
/// WebSocket transport (symlinked into a temp folder), ICE on `iface` only, the
/// WebSocket on `ip:port`, RTP ports 20000–60000, stdout logging at level 3 into
/// a pipe that is drained. Waits (≤ 15 s) until the WebSocket port accepts.
/// `taskset -c cpus` pins it when given.
pub fn spawn(bin: &Path, ip: &str, iface: &str, port: u16, cpus: Option<&str>) -> anyhow::Result<Target> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    for sub in ["conf", "plugins", "transports", "none"] {
        std::fs::create_dir_all(d.join(sub))?;
    }
    let lib = |kind: &str, name: &str| -> anyhow::Result<std::path::PathBuf> {
        let p = Path::new(PLUGINS).join(kind).join(format!("{name}.so.1.1.2"));
        anyhow::ensure!(p.exists(), "{} missing: is the Debian package janus 1.1.2 installed?", p.display());
        Ok(p)
    };
    std::os::unix::fs::symlink(lib("plugins", "libjanus_videoroom")?, d.join("plugins/libjanus_videoroom.so"))?;
    std::os::unix::fs::symlink(lib("transports", "libjanus_websockets")?, d.join("transports/libjanus_websockets.so"))?;
    let conf = d.join("conf");
    std::fs::write(
        conf.join("janus.jcfg"),
        format!(
            "general: {{\n  configs_folder = \"{c}\"\n  plugins_folder = \"{p}\"\n  transports_folder = \"{t}\"\n  \
             events_folder = \"{n}\"\n  loggers_folder = \"{n}\"\n  debug_level = 3\n  session_timeout = 60\n}}\n\
             media: {{\n  rtp_port_range = \"20000-60000\"\n}}\n\
             nat: {{\n  ice_enforce_list = \"{iface}\"\n}}\n",
            c = conf.display(),
            p = d.join("plugins").display(),
            t = d.join("transports").display(),
            n = d.join("none").display(),
        ),
    )?;
    std::fs::write(
        conf.join("janus.transport.websockets.jcfg"),
        format!(
            "general: {{\n  json = \"plain\"\n  ws = true\n  ws_port = {port}\n  ws_ip = \"{ip}\"\n  wss = false\n}}\n\
             admin: {{\n  admin_ws = false\n}}\n"
        ),
    )?;
    std::fs::write(conf.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    let mut cmd = match cpus {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.arg("-c").arg(c).arg(bin);
            t
        }
        None => Command::new(bin),
    };
    cmd.arg("-F").arg(&conf).arg("-C").arg(conf.join("janus.jcfg")).arg("-i").arg(ip).arg("-o");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| anyhow::anyhow!("{}: {e}", bin.display()))?;
    let pid = child.id();
    let out = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if line.contains("[ERR]") && !line.contains("already exists") {
                eprintln!("janus: {line}");
            }
        }
    });
    let http: SocketAddr = format!("{ip}:{port}").parse()?;
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
        if t0.elapsed() > Duration::from_secs(15) || child.try_wait()?.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("janus did not open its WebSocket on {http}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Target::child(Kind::Janus, http, pid, child, dir))
}

/// A numeric Janus room id from a room name (FNV-1a, 52 bits so JSON readers
/// that use doubles keep it exact).
pub fn room_id(room: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in room.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h & ((1 << 52) - 1)).max(1)
}

/// The Janus videoroom adapter (Janus API over WebSocket).
pub struct Janus {
    pub ws_url: String,
}

type Replies = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>;

/// One Janus WebSocket connection: a writer task, a reader task that routes
/// replies by transaction (acks dropped) and everything else (plugin events
/// without a pending transaction, trickle, hangup) to `events`.
struct Conn {
    out: mpsc::UnboundedSender<Value>,
    replies: Replies,
    next: AtomicU64,
    session: AtomicU64,
}

impl Conn {
    async fn open(url: &str) -> anyhow::Result<(Arc<Conn>, mpsc::UnboundedReceiver<Value>)> {
        let mut req = url.into_client_request()?;
        req.headers_mut().insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(req)).await??;
        let (mut sink, mut stream) = ws.split();
        let (otx, mut orx) = mpsc::unbounded_channel::<Value>();
        let (etx, erx) = mpsc::unbounded_channel::<Value>();
        let replies: Replies = Arc::default();
        tokio::spawn(async move {
            while let Some(v) = orx.recv().await {
                if sink.send(Message::Text(v.to_string().into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let r2 = replies.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                let Message::Text(t) = m else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else { continue };
                if v["janus"] == "ack" {
                    continue;
                }
                let tx = v["transaction"].as_str().and_then(|t| r2.lock().unwrap().get(t).cloned());
                match tx {
                    Some(tx) => {
                        let _ = tx.send(v);
                    }
                    None => {
                        let _ = etx.send(v);
                    }
                }
            }
        });
        Ok((Arc::new(Conn { out: otx, replies, next: AtomicU64::new(1), session: AtomicU64::new(0) }), erx))
    }

    /// Sends `msg` (adds transaction and session) and waits (≤ 20 s) for the first
    /// non-ack reply with the same transaction; a Janus or plugin error is an error.
    async fn call(&self, mut msg: Value) -> anyhow::Result<Value> {
        let t = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        msg["transaction"] = json!(t);
        let s = self.session.load(Ordering::Relaxed);
        if s != 0 {
            msg["session_id"] = json!(s);
        }
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.replies.lock().unwrap().insert(t.clone(), tx);
        let sent = self.out.send(msg.clone());
        let r = async {
            sent.map_err(|_| anyhow::anyhow!("janus connection closed"))?;
            let v = tokio::time::timeout(STEP, rx.recv())
                .await
                .map_err(|_| anyhow::anyhow!("janus: no reply to {}", msg["janus"]))?
                .ok_or_else(|| anyhow::anyhow!("janus connection closed"))?;
            anyhow::ensure!(v["janus"] != "error", "janus error: {}", v["error"]);
            let data = &v["plugindata"]["data"];
            anyhow::ensure!(data["error_code"].is_null(), "videoroom error: {data}");
            Ok(v)
        }
        .await;
        self.replies.lock().unwrap().remove(&t);
        r
    }

    fn fire(&self, mut msg: Value) {
        msg["transaction"] = json!(format!("t{}", self.next.fetch_add(1, Ordering::Relaxed)));
        msg["session_id"] = json!(self.session.load(Ordering::Relaxed));
        let _ = self.out.send(msg);
    }

    async fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut m = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        self.call(m).await
    }
}

/// Waits for ICE gathering (≤ 5 s) and returns the local SDP (with candidates).
async fn local_sdp(pc: &mut Pc) -> anyhow::Result<String> {
    let _ = tokio::time::timeout(Duration::from_secs(5), pc.gathered.recv()).await;
    Ok(pc.pc.local_description().await.ok_or_else(|| anyhow::anyhow!("no local description"))?.sdp)
}

fn feeds(v: &Value) -> Vec<u64> {
    v["plugindata"]["data"]["publishers"].as_array().map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect()).unwrap_or_default()
}

/// The subscriber side of one participant: one multistream handle and peer
/// connection, created at the first feed, updated (`subscribe` → Janus offer →
/// `start` with our answer) for later ones.
struct Subscriber {
    conn: Arc<Conn>,
    factory: PcFactory,
    room: u64,
    handle: u64,
    pc: Option<Pc>,
    connected: Arc<AtomicBool>,
}

impl Subscriber {
    async fn add(&mut self, feeds: &[u64]) -> anyhow::Result<()> {
        if feeds.is_empty() {
            return Ok(());
        }
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let reply = if self.handle == 0 {
            let a = self.conn.call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
            self.handle = a["data"]["id"].as_u64().ok_or_else(|| anyhow::anyhow!("attach: {a}"))?;
            self.conn
                .message(self.handle, json!({"request": "join", "ptype": "subscriber", "room": self.room, "streams": streams}), None)
                .await?
        } else {
            self.conn.message(self.handle, json!({"request": "subscribe", "streams": streams}), None).await?
        };
        let Some(sdp) = reply["jsep"]["sdp"].as_str() else {
            // No offer: Janus had nothing new to send (e.g. a feed already left).
            return Ok(());
        };
        if self.pc.is_none() {
            let pc = self.factory.make().await?;
            let c = pc.connected.clone();
            let me = self.connected.clone();
            tokio::spawn(async move {
                while !c.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                me.store(true, Ordering::Relaxed);
            });
            self.pc = Some(pc);
        }
        let pc = self.pc.as_mut().expect("set above");
        pc.pc.set_remote_description(RTCSessionDescription::offer(sdp.to_owned())?).await?;
        let answer = pc.pc.create_answer(None).await?;
        pc.pc.set_local_description(answer).await?;
        let sdp = local_sdp(pc).await?;
        self.conn
            .message(self.handle, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": sdp, "trickle": false})))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Adapter for Janus {
    fn name(&self) -> &'static str {
        "janus"
    }

    async fn join(
        &self,
        room: &str,
        pid: &str,
        factory: &PcFactory,
        publisher: &Publisher,
        sends: bool,
    ) -> anyhow::Result<Session> {
        let (conn, mut events) = Conn::open(&self.ws_url).await?;
        let s = conn.call(json!({"janus": "create"})).await?;
        conn.session.store(s["data"]["id"].as_u64().ok_or_else(|| anyhow::anyhow!("create: {s}"))?, Ordering::Relaxed);
        let a = conn.call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"})).await?;
        let ph = a["data"]["id"].as_u64().ok_or_else(|| anyhow::anyhow!("attach: {a}"))?;
        let rid = room_id(room);
        // The first participant creates the room; later ones get "already exists" (427).
        let created = conn
            .message(
                ph,
                json!({"request": "create", "room": rid, "publishers": 100, "audiocodec": "opus", "videocodec": "vp8",
                       "bitrate": 0, "notify_joining": false}),
                None,
            )
            .await;
        if let Err(e) = &created {
            anyhow::ensure!(e.to_string().contains("427"), "create room: {e}");
        }
        let joined =
            conn.message(ph, json!({"request": "join", "ptype": "publisher", "room": rid, "display": pid}), None).await?;
        anyhow::ensure!(joined["plugindata"]["data"]["videoroom"] == "joined", "join: {joined}");
        let existing = feeds(&joined);

        // Publisher peer connection: our offer with all candidates (no trickle).
        // Receive-only participants stay joined as (silent) publishers, for the
        // notifications of new feeds, but publish nothing.
        let mut pcs = Vec::new();
        let mut connected = Vec::new();
        if sends {
            let mut pubpc = factory.make().await?;
            publisher.attach(&pubpc.pc).await?;
            let offer = pubpc.pc.create_offer(None).await?;
            pubpc.pc.set_local_description(offer).await?;
            let sdp = local_sdp(&mut pubpc).await?;
            let r = conn
                .message(
                    ph,
                    json!({"request": "publish", "audio": true, "video": true}),
                    Some(json!({"type": "offer", "sdp": sdp, "trickle": false})),
                )
                .await?;
            let answer = r["jsep"]["sdp"].as_str().ok_or_else(|| anyhow::anyhow!("publish: no answer: {r}"))?;
            pubpc.pc.set_remote_description(RTCSessionDescription::answer(answer.to_owned())?).await?;
            pcs.push(pubpc.pc);
            connected.push(pubpc.connected);
        }
        let pub_pc = pcs.first().cloned();

        let sub_connected = Arc::new(AtomicBool::new(existing.is_empty()));
        let mut sub = Subscriber {
            conn: conn.clone(),
            factory: factory.clone(),
            room: rid,
            handle: 0,
            pc: None,
            connected: sub_connected.clone(),
        };
        sub.add(&existing).await?;

        let (ltx, mut lrx) = mpsc::channel::<()>(1);
        let conn2 = conn.clone();
        let task = tokio::spawn(async move {
            let mut keepalive = tokio::time::interval(Duration::from_secs(20));
            loop {
                tokio::select! {
                    _ = keepalive.tick() => conn2.fire(json!({"janus": "keepalive"})),
                    ev = events.recv() => {
                        let Some(ev) = ev else { break };
                        match ev["janus"].as_str() {
                            Some("event") if ev["sender"].as_u64() == Some(ph) => {
                                let new = feeds(&ev);
                                if !new.is_empty() {
                                    if let Err(e) = sub.add(&new).await {
                                        eprintln!("janus: subscribe failed: {e:#}");
                                    }
                                }
                            }
                            Some("trickle") => {
                                let c = &ev["candidate"];
                                let Some(line) = c["candidate"].as_str() else { continue };
                                let init = RTCIceCandidateInit {
                                    candidate: line.to_owned(),
                                    sdp_mid: c["sdpMid"].as_str().map(str::to_owned),
                                    sdp_mline_index: c["sdpMLineIndex"].as_u64().map(|i| i as u16),
                                    ..Default::default()
                                };
                                let target = if ev["sender"].as_u64() == Some(ph) { pub_pc.as_ref() } else { sub.pc.as_ref().map(|p| &p.pc) };
                                if let Some(pc) = target {
                                    let _ = pc.add_ice_candidate(init).await;
                                }
                            }
                            Some("hangup") | Some("detached") if ev["sender"].as_u64() == Some(ph) => break,
                            _ => {}
                        }
                    }
                    _ = lrx.recv() => {
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn2.message(ph, json!({"request": "leave"}), None)).await;
                        let _ = tokio::time::timeout(Duration::from_secs(2), conn2.call(json!({"janus": "destroy"}))).await;
                        break;
                    }
                }
            }
            if let Some(p) = sub.pc.take() {
                let _ = tokio::time::timeout(Duration::from_secs(3), p.pc.close()).await;
            }
        });
        connected.push(sub_connected);
        Ok(Session::new(pcs, connected, ltx, task))
    }
}
