//! Codec table and SDP rules the SFU negotiates with.
//!
//! - Payload types are all ≤ 127 (RFC 3550 §5.1 leaves 7 bits; RFC 5761 §4 keeps
//!   64–95 away from RTCP); answers echo the offerer's numbers.
//! - H.264 is matched by *profile*, never by level (RFC 6184 §8.2.2: the level
//!   part of `profile-level-id` may differ between offer and answer). A profile is
//!   read from `profile_idc` and the constraint flags of `profile-iop` as libwebrtc
//!   does, so `42e01f`, `42c015` and `42e034` are all Constrained Baseline.

use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use crate::tap::{KeyframeRequestTap, TAP_SLOT};
use rtc::interceptor::{Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use std::time::Instant;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};

/// RFC 6464 client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// H.264 profiles as WebRTC endpoints distinguish them (RFC 6184 §8.1, and the
/// profile table of RFC 6184 Table 5 with the constraint-flag patterns libwebrtc uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Profile {
    /// Constrained Baseline (what browsers send by default).
    ConstrainedBaseline,
    /// Baseline.
    Baseline,
    /// Main.
    Main,
    /// Constrained High.
    ConstrainedHigh,
    /// High.
    High,
}

/// Reads the profile from a `profile-level-id` (6 hex digits). `None` when it is
/// malformed or names a profile WebRTC does not use.
pub fn h264_profile(profile_level_id: &str) -> Option<H264Profile> {
    let s = profile_level_id.trim();
    if s.len() != 6 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let idc = u8::from_str_radix(&s[0..2], 16).ok()?;
    let iop = u8::from_str_radix(&s[2..4], 16).ok()?;
    // (idc, mask, value, profile): iop & mask == value.
    const TABLE: &[(u8, u8, u8, H264Profile)] = &[
        (0x42, 0x4f, 0x40, H264Profile::ConstrainedBaseline),
        (0x4d, 0x8f, 0x80, H264Profile::ConstrainedBaseline),
        (0x58, 0xcf, 0xc0, H264Profile::ConstrainedBaseline),
        (0x42, 0x4f, 0x00, H264Profile::Baseline),
        (0x58, 0xcf, 0x80, H264Profile::Baseline),
        (0x4d, 0xaf, 0x00, H264Profile::Main),
        (0x64, 0xff, 0x00, H264Profile::High),
        (0x64, 0xff, 0x0c, H264Profile::ConstrainedHigh),
    ];
    TABLE
        .iter()
        .find(|(i, mask, val, _)| *i == idc && iop & mask == *val)
        .map(|t| t.3)
}

/// A parameter of an `a=fmtp` line (`key=value;key=value`), case-insensitive key.
pub fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Whether two H.264 fmtp lines can talk to each other: same profile and same
/// packetization-mode (absent means 0); the level is free (RFC 6184 §8.2.2).
pub fn h264_fmtp_compatible(a: &str, b: &str) -> bool {
    let pm = |f: &str| fmtp_param(f, "packetization-mode").unwrap_or("0").to_owned();
    let prof = |f: &str| fmtp_param(f, "profile-level-id").map(h264_profile).unwrap_or(Some(H264Profile::Baseline));
    pm(a) == pm(b) && prof(a).is_some() && prof(a) == prof(b)
}

/// Whether a Producer's codec can be sent on a Consumer's negotiated codec.
pub fn codec_compatible(producer: &RTCRtpCodec, consumer: &RTCRtpCodec) -> bool {
    if !producer.mime_type.eq_ignore_ascii_case(&consumer.mime_type) {
        return false;
    }
    if producer.mime_type.eq_ignore_ascii_case(MIME_TYPE_H264) {
        return h264_fmtp_compatible(&producer.sdp_fmtp_line, &consumer.sdp_fmtp_line);
    }
    true
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [("goog-remb", ""), ("ccm", "fir"), ("nack", ""), ("nack", "pli")]
        .iter()
        .map(|(t, p)| RTCPFeedback { typ: (*t).into(), parameter: (*p).into() })
        .collect()
}

fn codec(mime: &str, clock: u32, ch: u16, fmtp: &str, pt: u8, fb: Vec<RTCPFeedback>) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate: clock,
            channels: ch,
            sdp_fmtp_line: fmtp.into(),
            rtcp_feedback: fb,
        },
        payload_type: pt,
    }
}

/// The H.264 `profile-level-id` forms registered, one per profile-iop spelling
/// seen from real senders (`rtc` compares the first two bytes literally).
const H264_FORMS: &[(&str, u8)] = &[
    ("42e01f", 102),
    ("42c01f", 104),
    ("42001f", 106),
    ("4d001f", 108),
    ("640c1f", 112),
    ("64001f", 114),
];

/// Registers what the SFU forwards: Opus, VP8 and H.264 (packetization-mode 1),
/// each video codec with its RTX twin, and the header extensions it reads.
///
/// # Errors
/// Whatever `rtc` reports for a bad registration (a bug, not peer input).
pub fn register_codecs(me: &mut MediaEngine) -> Result<(), rtc::shared::error::Error> {
    me.register_codec(
        codec(MIME_TYPE_OPUS, 48000, 2, "minptime=10;useinbandfec=1", 111, vec![]),
        RtpCodecKind::Audio,
    )?;
    me.register_codec(codec(MIME_TYPE_VP8, 90000, 0, "", 96, video_feedback()), RtpCodecKind::Video)?;
    me.register_codec(codec("video/rtx", 90000, 0, "apt=96", 97, vec![]), RtpCodecKind::Video)?;
    for (plid, pt) in H264_FORMS {
        let fmtp = format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={plid}");
        me.register_codec(codec(MIME_TYPE_H264, 90000, 0, &fmtp, *pt, video_feedback()), RtpCodecKind::Video)?;
        me.register_codec(
            codec("video/rtx", 90000, 0, &format!("apt={pt}"), pt + 1, vec![]),
            RtpCodecKind::Video,
        )?;
    }
    for (uri, kind) in [
        (AUDIO_LEVEL_URI, RtpCodecKind::Audio),
        ("urn:ietf:params:rtp-hdrext:sdes:mid", RtpCodecKind::Audio),
        ("urn:ietf:params:rtp-hdrext:sdes:mid", RtpCodecKind::Video),
    ] {
        me.register_header_extension(RTCRtpHeaderExtensionCapability { uri: uri.into() }, kind, None)?;
    }
    Ok(())
}

/// Builds one SFU-side peer connection (a Transport's engine): ICE-lite with the
/// given credentials (known up front so STUN can be routed by ufrag), the codec
/// table above, `rtc`'s default interceptors (NACK generator and responder, RTCP
/// reports, TWCC receiver) and the keyframe-request tap.
///
/// # Errors
/// [`SfuError::Rtc`](crate::SfuError::Rtc) if `rtc` refuses the configuration.
pub fn peer_connection(ufrag: &str, pwd: &str) -> Result<RTCPeerConnection, crate::SfuError> {
    let err = |e: rtc::shared::error::Error| crate::SfuError::Rtc(e.to_string());
    let mut me = MediaEngine::default();
    register_codecs(&mut me).map_err(err)?;
    let registry = register_default_interceptors(Registry::new(), &mut me)
        .map_err(err)?
        .with(Slot::from(TAP_SLOT), KeyframeRequestTap::default());
    let setting = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        .build();
    RTCPeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_setting_engine(setting)
        .with_media_engine(me)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h264_profiles_rfc6184() {
        assert_eq!(h264_profile("42e01f"), Some(H264Profile::ConstrainedBaseline));
        assert_eq!(h264_profile("42c015"), Some(H264Profile::ConstrainedBaseline));
        assert_eq!(h264_profile("42E034"), Some(H264Profile::ConstrainedBaseline));
        assert_eq!(h264_profile("42001f"), Some(H264Profile::Baseline));
        assert_eq!(h264_profile("4d001f"), Some(H264Profile::Main));
        assert_eq!(h264_profile("640c1f"), Some(H264Profile::ConstrainedHigh));
        assert_eq!(h264_profile("64001f"), Some(H264Profile::High));
        assert_eq!(h264_profile("zz0000"), None);
        assert_eq!(h264_profile("42e0"), None);
    }

    #[test]
    fn level_is_not_matched() {
        let ours = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        assert!(h264_fmtp_compatible("profile-level-id=42e034;packetization-mode=1", ours));
        assert!(h264_fmtp_compatible("packetization-mode=1;profile-level-id=42c015", ours));
        assert!(!h264_fmtp_compatible("profile-level-id=42e01f;packetization-mode=0", ours));
        assert!(!h264_fmtp_compatible("profile-level-id=640c1f;packetization-mode=1", ours));
    }

    #[test]
    fn registered_payload_types_fit_seven_bits() {
        for (_, pt) in H264_FORMS {
            assert!(*pt + 1 <= 127);
        }
    }
}
