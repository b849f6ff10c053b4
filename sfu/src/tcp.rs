//! ICE-TCP (RFC 6544), passive side, on one TCP port (`media.tcp_port`).
//!
//! Browsers behind firewalls that block UDP connect to the SFU's passive TCP host
//! candidate. Each connection carries RFC 4571 framing (a 16-bit big-endian length
//! before every STUN, DTLS, SRTP or SRTCP packet). The tasks here only move frames:
//! one accept task, and per connection a reader and a writer. The media task gets
//! [`TcpEvent`]s on one bounded channel and feeds each frame to the same `rtc` peer
//! connections as UDP datagrams (`TransportProtocol::TCP`), demultiplexed the same way
//! (STUN by ufrag, then by the connection's remote address). Outgoing packets go to
//! the connection's writer through a bounded queue with `try_send`: a full queue is
//! a refused send, like a full UDP socket buffer, and never blocks the media task.

use bytes::Bytes;
use rtc::shared::tcp_framing::{frame_packet, TcpFrameDecoder};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Packets queued for one TCP connection's writer before sends are refused.
pub(crate) const WRITE_QUEUE: usize = 512;
/// Frames and connection events queued for the media task.
pub(crate) const EVENT_QUEUE: usize = 4096;
/// Largest frame accepted (RFC 4571 allows 65535; WebRTC packets are < 1500).
const MAX_FRAME: usize = 1500;
/// Bytes buffered from one connection without a whole frame before it is closed.
const MAX_BUFFERED: usize = 2 * (MAX_FRAME + 2);
/// A connection that sends nothing for this long is closed (ICE consent checks
/// come every few seconds on a live one).
const IDLE: Duration = Duration::from_secs(60);
/// Open ICE-TCP connections at most; further ones are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 4096;

/// What the TCP tasks tell the media task.
#[derive(Debug)]
pub(crate) enum TcpEvent {
    /// A connection was accepted; `tx` takes whole (unframed) packets for it.
    Open { peer: SocketAddr, tx: mpsc::Sender<Bytes> },
    /// One RFC 4571 frame's payload from `peer`.
    Frame { peer: SocketAddr, data: Vec<u8> },
    /// The connection ended (closed, reset, idle, or sent an oversized frame).
    Closed { peer: SocketAddr },
}

/// Accepts connections on `listener` until `events` closes.
pub(crate) fn spawn_acceptor(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let open = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                _ = events.closed() => return,
                a = listener.accept() => match a {
                    Ok(x) => x,
                    Err(e) => {
                        warn!("ICE-TCP accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                warn!(%peer, "ICE-TCP: {MAX_CONNECTIONS} connections open; refusing another");
                drop(stream);
                continue;
            }
            open.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let (mut rd, mut wr) = stream.into_split();
            let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
            if events.send(TcpEvent::Open { peer, tx }).await.is_err() {
                return;
            }
            debug!(%peer, "ICE-TCP connection accepted");
            // Writer: frames each packet; ends when the media task drops the sender.
            tokio::spawn(async move {
                while let Some(p) = rx.recv().await {
                    if wr.write_all(&frame_packet(&p)).await.is_err() {
                        break;
                    }
                }
                let _ = wr.shutdown().await;
            });
            // Reader: splits the stream into frames.
            let (events, open) = (events.clone(), open.clone());
            tokio::spawn(async move {
                let _count = OpenGuard(open);
                let mut dec = TcpFrameDecoder::new();
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match tokio::time::timeout(IDLE, rd.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => n,
                        _ => break,
                    };
                    dec.extend_from_slice(&buf[..n]);
                    let mut bad = false;
                    while let Some(p) = dec.next_packet() {
                        if p.len() > MAX_FRAME {
                            bad = true;
                            break;
                        }
                        if events.send(TcpEvent::Frame { peer, data: p }).await.is_err() {
                            return;
                        }
                    }
                    if bad || dec.buffered_len() > MAX_BUFFERED {
                        debug!(%peer, "ICE-TCP: oversized frame; closing");
                        break;
                    }
                }
                let _ = events.send(TcpEvent::Closed { peer }).await;
            });
        }
    });
}

/// Counts one open connection until the reader ends.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
