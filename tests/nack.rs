//! Loss repair through the SFU (sfu/RTCP.md). A lossy UDP relay sits between
//! the clients and the SFU (the SFU advertises the relay's address with
//! `media.public_ip`) and drops video datagrams in both directions:
//! - upstream losses are repaired because the SFU NACKs the publisher
//!   (its NackGenerator) and forwards the retransmissions;
//! - downstream losses are repaired because the SFU answers the subscriber's
//!   NACKs from its own send cache (NackResponder);
//! - the publisher receives the SFU's own receiver reports.
//! Nothing leaves 127.0.0.0/8.

mod common;

use common::*;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// Drops every `EVERY`th video-sized SRTP datagram in each direction.
const EVERY: u64 = 25;

fn droppable(d: &[u8]) -> bool {
    d.len() > 500 && matches!(d.first(), Some(128..=191))
}

struct Relay {
    up_dropped: Arc<AtomicU64>,
    down_dropped: Arc<AtomicU64>,
}

/// Listens on `listen` (what the SFU advertises) and relays each client through
/// its own socket to `sfu`, so the SFU still sees one address per client.
async fn relay(listen: SocketAddr, sfu: SocketAddr) -> Relay {
    let main = Arc::new(UdpSocket::bind(listen).await.expect("relay binds"));
    let up_dropped = Arc::new(AtomicU64::new(0));
    let down_dropped = Arc::new(AtomicU64::new(0));
    let (up, down) = (up_dropped.clone(), down_dropped.clone());
    tokio::spawn(async move {
        let mut per_client: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let (mut n_up, mut buf) = (0u64, vec![0u8; 2048]);
        while let Ok((n, from)) = main.recv_from(&mut buf).await {
            let sock = match per_client.get(&from) {
                Some(s) => s.clone(),
                None => {
                    let s = Arc::new(UdpSocket::bind((listen.ip(), 0)).await.unwrap());
                    per_client.insert(from, s.clone());
                    let (s2, main2, down) = (s.clone(), main.clone(), down.clone());
                    tokio::spawn(async move {
                        let (mut n_down, mut b) = (0u64, vec![0u8; 2048]);
                        while let Ok((n, _)) = s2.recv_from(&mut b).await {
                            if droppable(&b[..n]) {
                                n_down += 1;
                                if n_down % EVERY == 0 {
                                    down.fetch_add(1, Ordering::SeqCst);
                                    continue;
                                }
                            }
                            let _ = main2.send_to(&b[..n], from).await;
                        }
                    });
                    s
                }
            };
            if droppable(&buf[..n]) {
                n_up += 1;
                if n_up % EVERY == 0 {
                    up.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            }
            let _ = sock.send_to(&buf[..n], sfu).await;
        }
    });
    Relay { up_dropped, down_dropped }
}

/// Sequence numbers missing between the first and the `settle`-th last received.
fn gaps(seqs: &[u16], settle: usize) -> Vec<u16> {
    // Unwrap 16-bit sequence numbers relative to the first one.
    let first = seqs[0];
    let rel: BTreeSet<i64> = seqs.iter().map(|s| s.wrapping_sub(first) as i16 as i64).collect();
    let last = *rel.iter().next_back().unwrap() - settle as i64;
    (0..=last).filter(|r| !rel.contains(r)).map(|r| first.wrapping_add(r as u16)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_video_is_repaired_upstream_and_downstream() {
    let (srv, _dir) = start_server_with(|c| c.media.public_ip = Some("127.0.0.2".parse().unwrap())).await;
    let listen = SocketAddr::new("127.0.0.2".parse().unwrap(), srv.media_addr.port());
    let r = relay(listen, srv.media_addr).await;
    let a = Client::join(&srv, "alice", token(&srv, "l-room", "alice", "甲")).await;
    let b = Client::join(&srv, "bob", token(&srv, "l-room", "bob", "乙")).await;
    wait_for("losses in both directions and 300 video packets at bob", Duration::from_secs(30), || {
        r.up_dropped.load(Ordering::SeqCst) >= 5
            && r.down_dropped.load(Ordering::SeqCst) >= 5
            && b.count("alice", RtpCodecKind::Video) > 300
    })
    .await;
    // Give the last repairs time to land, then every gap must have been filled.
    let key = ("alice".to_owned(), RtpCodecKind::Video);
    wait_for("every lost packet to be repaired", Duration::from_secs(10), || {
        let rx = b.received.lock().unwrap();
        gaps(&rx.seqs[&key], 20).is_empty()
    })
    .await;
    // Bob's NACKs for the downstream losses reached the SFU and are counted (/metrics
    // `fengqiao_nack_packets_in`): at least one packet per datagram the relay dropped
    // downstream was asked for again.
    let nacked = fengqiao_sfu::tap::nack_packets_in();
    assert!(nacked >= 5, "NACKed packets counted at the SFU: {nacked}");
    // The SFU terminates RTCP and reports reception itself (RFC 3550 §6.4.2).
    wait_for("the SFU's receiver reports at the publisher", Duration::from_secs(10), || {
        a.receiver_reports.load(Ordering::SeqCst) >= 2
    })
    .await;
    eprintln!(
        "relay dropped {} upstream and {} downstream video datagrams; all repaired",
        r.up_dropped.load(Ordering::SeqCst),
        r.down_dropped.load(Ordering::SeqCst)
    );
    a.leave().await;
    b.leave().await;
    srv.shutdown().await;
}
