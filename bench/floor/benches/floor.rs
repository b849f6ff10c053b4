//! The floor: the work no SFU can skip per forwarded packet, on this CPU.
//!
//! - `srtp_protect/<profile>`: SRTP protect (encrypt + tag) of one 1,100-byte RTP
//!   packet (12-byte header + 1,088-byte payload) with `rtc`'s srtp context and
//!   its default crypto provider, for AEAD_AES_128_GCM (what webrtc-rs peers
//!   negotiate first, so what our SFU uses with the bench clients) and
//!   AES128_CM_HMAC_SHA1_80 (the profile every WebRTC stack has).
//! - `sendmmsg_loopback/32`: one `sendmmsg` of 32 datagrams of 1,116 bytes (a
//!   protected GCM packet) to a UDP socket on 127.0.0.1 that a thread drains;
//!   criterion reports the time per batch, ÷ 32 is the per-packet cost.
//!
//! `cargo bench -p fengqiao-floor --bench floor` (results in target/criterion).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

const PACKET: usize = 1100;

fn rtp_packet() -> Vec<u8> {
    let mut p = vec![0x5au8; PACKET];
    p[0] = 0x80; // V=2
    p[1] = 96; // PT
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes()); // SSRC
    p
}

fn srtp(c: &mut Criterion) {
    let provider = rtc::crypto::default_provider().expect("a crypto provider");
    let mut g = c.benchmark_group("srtp_protect");
    g.throughput(Throughput::Elements(1));
    for (name, profile) in
        [("aead_aes_128_gcm", ProtectionProfile::AeadAes128Gcm), ("aes128_cm_hmac_sha1_80", ProtectionProfile::Aes128CmHmacSha1_80)]
    {
        let key = vec![7u8; profile.key_len()];
        let salt = vec![9u8; profile.salt_len()];
        let mut ctx = Context::new(&key, &salt, profile, None, None, provider.crypto()).expect("srtp context");
        let mut pkt = rtp_packet();
        let mut seq: u16 = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                ctx.encrypt_rtp(std::hint::black_box(&pkt)).expect("protect")
            })
        });
    }
    g.finish();
}

fn sendmmsg(c: &mut Criterion) {
    const BATCH: usize = 32;
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let to = rx.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    rx.set_read_timeout(Some(std::time::Duration::from_millis(100))).unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s2.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = rx.recv(&mut buf);
        }
    });
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    tx.connect(to).unwrap();
    let data = vec![0x5au8; PACKET + 16];
    let mut iov: Vec<libc::iovec> =
        (0..BATCH).map(|_| libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() }).collect();
    // SAFETY: mmsghdr is plain data; zeroed is a valid empty header.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
        m.msg_hdr.msg_iov = v;
        m.msg_hdr.msg_iovlen = 1;
    }
    let mut g = c.benchmark_group("sendmmsg_loopback");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("32", |b| {
        b.iter(|| {
            // SAFETY: msgs point at iov/data, which outlive the call; the socket is connected.
            let n = unsafe { libc::sendmmsg(tx.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
            assert!(n > 0, "sendmmsg: {}", std::io::Error::last_os_error());
        })
    });
    g.finish();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = drain.join();
}

criterion_group!(floor, srtp, sendmmsg);
criterion_main!(floor);
