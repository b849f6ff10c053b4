//! Keyframe detection on RTP payloads, without depacketising.
//!
//! - VP8: RFC 7741 §4.2 (payload descriptor) and §4.3 (payload header, bit P = 0
//!   on a key frame), checked on the first packet of a frame (S = 1, PID = 0).
//! - H.264: RFC 6184 §5.4 (NAL unit types 5 = IDR and 7 = SPS), in a single NAL
//!   unit packet, a STAP-A aggregate (type 24, §5.7.1) or the first fragment of an
//!   FU-A (type 28, §5.8).

/// The video codecs the SFU understands well enough to find keyframes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264 (RFC 6184), packetization-mode 0 or 1.
    H264,
}

impl VideoCodec {
    /// The codec for a MIME type such as `video/VP8` (case-insensitive).
    pub fn from_mime(mime: &str) -> Option<Self> {
        let m = mime.to_ascii_lowercase();
        match m.as_str() {
            "video/vp8" => Some(Self::Vp8),
            "video/h264" => Some(Self::H264),
            _ => None,
        }
    }
}

/// Whether this RTP payload starts a keyframe. Malformed or truncated payloads
/// answer `false` (never panic on peer input).
pub fn is_keyframe_start(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe_start(payload),
        VideoCodec::H264 => h264_has_keyframe(payload),
    }
}

fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&b1) = p.get(i) else { return false };
        i += 1;
        if b1 & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if b1 & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if b1 & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    match p.get(i) {
        Some(&h) => h & 0x01 == 0,
        None => false,
    }
}

fn h264_is_key_nal(t: u8) -> bool {
    t == 5 || t == 7
}

fn h264_has_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        24 => {
            // STAP-A: [hdr][size16][nal]...
            let mut i = 1;
            while i + 2 < p.len() {
                let size = u16::from_be_bytes([p[i], p[i + 1]]) as usize;
                i += 2;
                if size == 0 || i >= p.len() {
                    return false;
                }
                if h264_is_key_nal(p[i] & 0x1f) {
                    return true;
                }
                i += size;
            }
            false
        }
        28 => match p.get(1) {
            Some(&fu) => fu & 0x80 != 0 && h264_is_key_nal(fu & 0x1f),
            None => false,
        },
        t => h264_is_key_nal(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        // S=1, PID=0, no X; payload header with P=0 → key.
        assert!(is_keyframe_start(VideoCodec::Vp8, &[0x10, 0x00, 0x9d, 0x01, 0x2a]));
        // P=1 → interframe.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x10, 0x01]));
        // S=0 → continuation.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x00, 0x00]));
        // X=1, I=1 with 15-bit picture id, then key header.
        assert!(is_keyframe_start(VideoCodec::Vp8, &[0x90, 0x80, 0x81, 0x23, 0x00]));
        // Truncated.
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!is_keyframe_start(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn h264() {
        assert!(is_keyframe_start(VideoCodec::H264, &[0x65, 0x88])); // IDR
        assert!(is_keyframe_start(VideoCodec::H264, &[0x67, 0x42])); // SPS
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x41, 0x9a])); // non-IDR slice
        // STAP-A with SPS first.
        assert!(is_keyframe_start(VideoCodec::H264, &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x01, 0x68]));
        // FU-A start of IDR; FU-A middle of IDR is not a start.
        assert!(is_keyframe_start(VideoCodec::H264, &[0x7c, 0x85]));
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x7c, 0x05]));
        // Malformed STAP-A.
        assert!(!is_keyframe_start(VideoCodec::H264, &[0x78, 0xff, 0xff]));
    }
}
