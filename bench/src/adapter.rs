//! Signaling adapters: how one bench participant joins a room on a server.
//!
//! An adapter gets a [`PcFactory`] (it may build as many peer connections as its
//! server needs: one for ours; one publisher handle plus subscriber handles for a
//! Janus videoroom) and the participant's [`Publisher`] tracks, and returns a
//! [`Session`] that keeps answering renegotiation until it is closed.

use crate::client::{PcFactory, Publisher};
use async_trait::async_trait;
use fengqiao_signaling::invite::{random_id, unix_now, InviteClaims, InviteKey, Role};
use futures_util::{SinkExt, StreamExt};
use rtc::peer_connection::sdp::RTCSessionDescription;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::peer_connection::PeerConnection;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const STEP: Duration = Duration::from_secs(20);

/// A joined participant: its peer connections and signaling task.
pub struct Session {
    pub pcs: Vec<Arc<dyn PeerConnection>>,
    pub connected: Vec<Arc<AtomicBool>>,
    leave: Option<mpsc::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    /// A session whose signaling `task` leaves when `leave` receives.
    pub fn new(
        pcs: Vec<Arc<dyn PeerConnection>>,
        connected: Vec<Arc<AtomicBool>>,
        leave: mpsc::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Self {
        Self { pcs, connected, leave: Some(leave), task: Some(task) }
    }

    pub fn connected(&self) -> bool {
        self.connected.iter().all(|c| c.load(Ordering::Relaxed))
    }

    /// Leaves (bounded: 3 s for the signaling goodbye), closes the peer connections.
    pub async fn close(mut self) {
        if let Some(l) = self.leave.take() {
            let _ = l.try_send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        for pc in &self.pcs {
            let _ = tokio::time::timeout(Duration::from_secs(3), pc.close()).await;
        }
    }
}

#[async_trait]
pub trait Adapter: Send + Sync {
    fn name(&self) -> &'static str;
    /// Joins `room` as `pid`, publishing `publisher`'s tracks (it sends media only
    /// once the caller runs it). `sends` is false for receive-only participants
    /// (ours still offers sendrecv, as our signaling wants; Janus does not publish).
    async fn join(&self, room: &str, pid: &str, factory: &PcFactory, publisher: &Publisher, sends: bool)
        -> anyhow::Result<Session>;
}

/// Our signaling (docs/signaling.md): `join {v:1, token}` with an admitted invite
/// minted with the server's invite key, one sendrecv offer, then answer every
/// server offer.
pub struct Fengqiao {
    pub ws_url: String,
    pub key: InviteKey,
    /// The server's name in the reports: [`OURS`], or [`BASELINE`] for an older build
    /// measured beside it (`loadgen --baseline-bin`).
    pub label: &'static str,
}

/// Report name of our server built from the working tree.
pub const OURS: &str = "fengqiao";
/// Report name of our server from `--baseline-bin` (the before of a before/after).
pub const BASELINE: &str = "baseline";

impl Fengqiao {
    fn token(&self, room: &str, pid: &str) -> String {
        self.key.mint(&InviteClaims {
            tid: random_id(),
            room: room.to_owned(),
            pid: pid.to_owned(),
            name: pid.to_owned(),
            role: Role::Applicant,
            exp: unix_now() + 3600,
            case_id: None,
            session_id: None,
            admitted: true,
        })
    }
}

async fn recv_json(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        let m = tokio::time::timeout(STEP, ws.next()).await.map_err(|_| anyhow::anyhow!("signaling timeout"))?;
        match m {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] == "active_speaker" || v["type"] == "pong" {
                    continue;
                }
                return Ok(v);
            }
            Some(Ok(Message::Close(_))) | None => anyhow::bail!("signaling closed"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn send_json(ws: &mut Ws, v: Value) -> anyhow::Result<()> {
    ws.send(Message::Text(v.to_string().into())).await?;
    Ok(())
}

#[async_trait]
impl Adapter for Fengqiao {
    fn name(&self) -> &'static str {
        self.label
    }

    async fn join(
        &self,
        room: &str,
        pid: &str,
        factory: &PcFactory,
        publisher: &Publisher,
        _sends: bool,
    ) -> anyhow::Result<Session> {
        let (mut ws, _) = tokio::time::timeout(STEP, tokio_tungstenite::connect_async(&self.ws_url)).await??;
        send_json(&mut ws, json!({"type": "join", "v": 1, "token": self.token(room, pid)})).await?;
        let joined = recv_json(&mut ws).await?;
        anyhow::ensure!(joined["type"] == "joined", "join reply: {joined}");
        let mut built = factory.make().await?;
        let pc = built.pc.clone();
        publisher.attach(&pc).await?;
        let offer = pc.create_offer(None).await?;
        pc.set_local_description(offer).await?;
        let _ = tokio::time::timeout(Duration::from_secs(5), built.gathered.recv()).await;
        let sdp = pc.local_description().await.ok_or_else(|| anyhow::anyhow!("no local description"))?.sdp;
        send_json(&mut ws, json!({"type": "offer", "sdp": sdp})).await?;
        let mut pending = Vec::new();
        let answer = loop {
            let m = recv_json(&mut ws).await?;
            match m["type"].as_str() {
                Some("answer") => break m,
                Some("error") => anyhow::bail!("offer refused: {m}"),
                _ => pending.push(m),
            }
        };
        pc.set_remote_description(RTCSessionDescription::answer(answer["sdp"].as_str().unwrap_or("").to_owned())?)
            .await?;
        let (ltx, mut lrx) = mpsc::channel::<()>(1);
        let spc = pc.clone();
        let task = tokio::spawn(async move {
            // Server offers that arrived before the answer are handled first.
            let mut queue: std::collections::VecDeque<Value> = pending.into();
            loop {
                let v = if let Some(v) = queue.pop_front() {
                    v
                } else {
                    tokio::select! {
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => match serde_json::from_str::<Value>(&t) { Ok(v) => v, Err(_) => continue },
                            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                            _ => break,
                        },
                        _ = lrx.recv() => {
                            let _ = send_json(&mut ws, json!({"type": "leave"})).await;
                            while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
                                if m.is_close() { break }
                            }
                            break;
                        }
                    }
                };
                if v["type"] == "offer" {
                    let sdp = v["sdp"].as_str().unwrap_or("").to_owned();
                    let Ok(o) = RTCSessionDescription::offer(sdp) else { break };
                    if spc.set_remote_description(o).await.is_err() {
                        break;
                    }
                    let Ok(a) = spc.create_answer(None).await else { break };
                    if spc.set_local_description(a).await.is_err() {
                        break;
                    }
                    let Some(l) = spc.local_description().await else { break };
                    if send_json(&mut ws, json!({"type": "answer", "sdp": l.sdp})).await.is_err() {
                        break;
                    }
                } else if v["type"] == "closed" {
                    break;
                }
            }
        });
        Ok(Session { pcs: vec![pc], connected: vec![built.connected], leave: Some(ltx), task: Some(task) })
    }
}
