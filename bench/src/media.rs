//! Synthetic media shaped like a 720p VP8 camera at 1.2 Mbps / 30 fps (frames split
//! into packets of at most 1200 bytes, a bigger keyframe every 2 s) and Opus audio
//! (one ~100-byte packet every 20 ms). Every payload carries a bench header at
//! [`HDR_OFF`]: magic, publisher index, stream kind, sequence, send time.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const MAX_PACKET: usize = 1200;
pub const FPS: u32 = 30;
pub const VIDEO_BPS: usize = 1_200_000;
pub const KEYFRAME_EVERY: u32 = 60; // frames: 2 s at 30 fps
pub const KEYFRAME_BYTES: usize = 25_000;
pub const AUDIO_BYTES: usize = 100;
pub const AUDIO_PTIME: Duration = Duration::from_millis(20);

/// Bytes before the bench header: VP8 payload descriptor (1) + frame tag (3) +
/// keyframe start code and size (7); audio packets start with an Opus TOC byte.
pub const HDR_OFF: usize = 12;
pub const HDR_LEN: usize = 25;
const MAGIC: [u8; 4] = *b"FQBN";

pub const KIND_VIDEO: u8 = 1;
pub const KIND_AUDIO: u8 = 2;

/// Average delta-frame size so that one 2 s GOP carries exactly 1.2 Mbit/s.
pub fn delta_frame_bytes() -> usize {
    let gop = VIDEO_BPS / 8 * (KEYFRAME_EVERY / FPS) as usize;
    (gop - KEYFRAME_BYTES) / (KEYFRAME_EVERY as usize - 1)
}

/// The shared monotonic clock of this process (publishers and receivers live in
/// the same process, so one-way latency needs no clock sync).
pub fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchHeader {
    pub publisher: u32,
    pub kind: u8,
    pub seq: u64,
    pub sent_us: u64,
}

fn put_header(p: &mut [u8], h: &BenchHeader) {
    let b = &mut p[HDR_OFF..HDR_OFF + HDR_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&h.publisher.to_be_bytes());
    b[8] = h.kind;
    b[9..17].copy_from_slice(&h.seq.to_be_bytes());
    b[17..25].copy_from_slice(&h.sent_us.to_be_bytes());
}

pub fn parse_header(p: &[u8]) -> Option<BenchHeader> {
    let b = p.get(HDR_OFF..HDR_OFF + HDR_LEN)?;
    if b[0..4] != MAGIC {
        return None;
    }
    Some(BenchHeader {
        publisher: u32::from_be_bytes(b[4..8].try_into().ok()?),
        kind: b[8],
        seq: u64::from_be_bytes(b[9..17].try_into().ok()?),
        sent_us: u64::from_be_bytes(b[17..25].try_into().ok()?),
    })
}

/// Payloads of one video frame of `size` bytes (VP8 payload descriptor with S=1 on
/// the first packet; the frame tag's P bit is 0 on a keyframe). The send time and
/// sequence are stamped later by [`stamp`].
pub fn video_frame(size: usize, key: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut left = size.max(HDR_OFF + HDR_LEN);
    let mut first = true;
    while left > 0 {
        let n = left.min(MAX_PACKET).max(HDR_OFF + HDR_LEN);
        let mut p = vec![0x5au8; n];
        p[0] = if first { 0x10 } else { 0x00 };
        if first {
            p[1] = if key { 0x00 } else { 0x01 };
            p[2] = 0x00;
            p[3] = 0x00;
            if key {
                p[4..7].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                p[7..9].copy_from_slice(&1280u16.to_le_bytes());
                p[9..11].copy_from_slice(&720u16.to_le_bytes());
            }
        }
        out.push(p);
        left = left.saturating_sub(n);
        first = false;
    }
    out
}

pub fn audio_packet() -> Vec<u8> {
    let mut p = vec![0x33u8; AUDIO_BYTES];
    p[0] = 0xfc; // Opus TOC: SILK/CELT hybrid, 20 ms
    p
}

/// Writes the bench header (with the current time) into `p`.
pub fn stamp(p: &mut [u8], publisher: u32, kind: u8, seq: u64) {
    put_header(p, &BenchHeader { publisher, kind, seq, sent_us: now_us() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gop_is_1_2_mbps_and_packets_fit() {
        let d = delta_frame_bytes();
        let gop: usize = KEYFRAME_BYTES + d * (KEYFRAME_EVERY as usize - 1);
        let bps = gop * 8 / 2;
        assert!((1_190_000..=1_210_000).contains(&bps), "{bps}");
        let key = video_frame(KEYFRAME_BYTES, true);
        assert!(key.iter().all(|p| p.len() <= MAX_PACKET));
        assert_eq!(key.iter().map(Vec::len).sum::<usize>(), KEYFRAME_BYTES);
        assert!(fengqiao_sfu::keyframe::is_keyframe_start(fengqiao_sfu::keyframe::VideoCodec::Vp8, &key[0]));
        let delta = video_frame(d, false);
        assert!(!fengqiao_sfu::keyframe::is_keyframe_start(fengqiao_sfu::keyframe::VideoCodec::Vp8, &delta[0]));
        let mut p = delta[1].clone();
        stamp(&mut p, 7, KIND_VIDEO, 42);
        let h = parse_header(&p).unwrap();
        assert_eq!((h.publisher, h.kind, h.seq), (7, KIND_VIDEO, 42));
    }
}
