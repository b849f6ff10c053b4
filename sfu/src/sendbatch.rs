//! Batched UDP sends: the datagrams one [`Engine`](crate::engine) flush produces, handed
//! to the kernel with `sendmmsg(2)` up to [`BATCH`] at a time instead of one
//! `sendto(2)` each.
//!
//! A forwarded packet fans out to every Consumer of its Producer, so one inbound burst
//! yields tens of outgoing datagrams; one system call for up to 64 of them saves the
//! per-call entry, socket lookup and lock (measured in `bench/README.md`, "Before and
//! after"). Linux only: elsewhere each datagram goes out with its own `send_to`.
//!
//! Failure semantics are those of a non-blocking `send_to` per datagram: a datagram the
//! kernel refuses (full socket buffer: `EWOULDBLOCK`, or any other error) is dropped and
//! reported back with its Transport, so the engine counts it and applies the
//! slow-consumer policy; the datagrams after it are still tried.

use std::net::SocketAddr;

use bytes::BytesMut;
use tokio::net::UdpSocket;

use crate::ids::TransportId;

/// Datagrams per `sendmmsg(2)` call (Linux's `UIO_MAXIOV` allows 1024; 64 keeps the
/// headers on the stack, 4 KiB + 1 KiB).
pub(crate) const BATCH: usize = 64;

/// One queued datagram: the Transport it belongs to (for failure accounting), the
/// destination and the bytes (SRTP/DTLS/STUN, ≤ 1,500 bytes).
struct Queued {
    transport: TransportId,
    to: socket2::SockAddr,
    bytes: BytesMut,
}

/// Outcome of [`SendBatch::send`]: datagrams and bytes the kernel took, and the
/// Transports that had a datagram refused (each listed once per refused datagram).
#[derive(Default)]
pub(crate) struct Sent {
    /// Datagrams accepted by the kernel.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Datagrams refused.
    pub refused: u64,
}

/// Datagrams queued during one flush, in order. Bounded: [`SendBatch::push`] reports
/// when [`BATCH`] are waiting so the caller sends before queueing more.
#[derive(Default)]
pub(crate) struct SendBatch {
    queued: Vec<Queued>,
}

impl SendBatch {
    /// Queues `bytes` for `to`; returns `true` when the batch is full and must be sent.
    pub(crate) fn push(&mut self, transport: TransportId, to: SocketAddr, bytes: BytesMut) -> bool {
        self.queued.push(Queued { transport, to: socket2::SockAddr::from(to), bytes });
        self.queued.len() >= BATCH
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    /// Sends everything queued, in order, and empties the batch (its memory is kept).
    /// Transports that had a datagram refused are appended to `failed`.
    pub(crate) fn send(&mut self, socket: &UdpSocket, failed: &mut Vec<TransportId>) -> Sent {
        let mut out = Sent::default();
        let mut start = 0;
        while start < self.queued.len() {
            let end = (start + BATCH).min(self.queued.len());
            match send_some(socket, &self.queued[start..end]) {
                Ok(n) if n > 0 => {
                    out.datagrams += n as u64;
                    out.bytes += self.queued[start..start + n].iter().map(|q| q.bytes.len() as u64).sum::<u64>();
                    start += n;
                }
                // Nothing sent: the first datagram is refused, the rest are tried.
                _ => {
                    out.refused += 1;
                    failed.push(self.queued[start].transport);
                    start += 1;
                }
            }
        }
        self.queued.clear();
        out
    }
}

/// One `sendmmsg(2)` of `batch` (≤ [`BATCH`] datagrams): how many the kernel took,
/// from the front. `Err` when it took none (its error is that of the first datagram).
#[cfg(target_os = "linux")]
fn send_some(socket: &UdpSocket, batch: &[Queued]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    debug_assert!(batch.len() <= BATCH);
    // SAFETY: all-zero is a valid `iovec` / `mmsghdr` (null pointers, zero lengths).
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut hdr: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, q) in batch.iter().enumerate() {
        iov[i] = libc::iovec { iov_base: q.bytes.as_ptr() as *mut libc::c_void, iov_len: q.bytes.len() };
        let h = &mut hdr[i].msg_hdr;
        h.msg_name = q.to.as_ptr() as *mut libc::c_void;
        h.msg_namelen = q.to.len();
        h.msg_iov = &mut iov[i];
        h.msg_iovlen = 1;
    }
    let fd = socket.as_raw_fd();
    socket.try_io(tokio::io::Interest::WRITABLE, || {
        // SAFETY: `hdr[..len]` point into `iov`, `batch`'s bytes and addresses, all alive
        // and unmoved for the duration of the call; the kernel only reads them (and
        // writes `msg_len`, which is ours).
        let n = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), batch.len() as libc::c_uint, libc::MSG_DONTWAIT) };
        if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    })
}

/// Not Linux: one `send_to` per datagram.
#[cfg(not(target_os = "linux"))]
fn send_some(socket: &UdpSocket, batch: &[Queued]) -> std::io::Result<usize> {
    let mut n = 0;
    for q in batch {
        let to = q.to.as_socket().ok_or(std::io::ErrorKind::InvalidInput)?;
        match socket.try_send_to(&q.bytes, to) {
            Ok(_) => n += 1,
            Err(e) if n == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u64) -> TransportId {
        TransportId(n)
    }

    #[tokio::test]
    async fn sends_every_datagram_in_order_to_its_destination() {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = std::net::UdpSocket::bind("[::1]:0").ok();
        // As for `try_send_to`, a send is only tried once the reactor saw the socket writable.
        tx.writable().await.unwrap();
        let mut batch = SendBatch::default();
        let mut failed = Vec::new();
        // 150 datagrams: three sendmmsg calls (64 + 64 + 22).
        for i in 0..150u32 {
            let mut m = BytesMut::new();
            m.extend_from_slice(&i.to_be_bytes());
            m.resize(100 + (i as usize % 7), 0xab);
            if batch.push(tid(1), a.local_addr().unwrap(), m) {
                assert_eq!(batch.send(&tx, &mut failed).datagrams, BATCH as u64);
            }
        }
        let s = batch.send(&tx, &mut failed);
        assert_eq!(s.datagrams, 150 - 2 * BATCH as u64);
        assert!(failed.is_empty() && batch.is_empty());
        let mut buf = [0u8; 2048];
        for i in 0..150u32 {
            let (n, from) = a.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            assert_eq!(u32::from_be_bytes(buf[..4].try_into().unwrap()), i);
            assert_eq!(n, 100 + (i as usize % 7));
        }
        // An IPv6 destination from an IPv4 socket is refused; the datagrams around it go.
        if let Some(b) = b {
            let mut m = BytesMut::new();
            m.extend_from_slice(b"x");
            batch.push(tid(1), a.local_addr().unwrap(), m.clone());
            batch.push(tid(2), b.local_addr().unwrap(), m.clone());
            batch.push(tid(3), a.local_addr().unwrap(), m);
            let s = batch.send(&tx, &mut failed);
            assert_eq!((s.datagrams, s.refused), (2, 1));
            assert_eq!(failed, vec![tid(2)]);
            for _ in 0..2 {
                assert_eq!(a.recv_from(&mut buf).await.unwrap().0, 1);
            }
        }
    }
}
