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
use std::time::{Duration, Instant};
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
    peer_connection_with_timeouts(ufrag, pwd, Duration::from_secs(5), Duration::from_secs(25))
}

/// [`peer_connection`] with the ICE consent timeouts of `media.ice_*_timeout_ms`:
/// `disconnected` without traffic from the peer, then `failed` more.
///
/// # Errors
/// [`SfuError::Rtc`](crate::SfuError::Rtc) if `rtc` refuses the configuration.
pub fn peer_connection_with_timeouts(
    ufrag: &str,
    pwd: &str,
    disconnected: Duration,
    failed: Duration,
) -> Result<RTCPeerConnection, crate::SfuError> {
    let err = |e: rtc::shared::error::Error| crate::SfuError::Rtc(e.to_string());
    let mut me = MediaEngine::default();
    register_codecs(&mut me).map_err(err)?;
    let registry = register_default_interceptors(Registry::new(), &mut me)
        .map_err(err)?
        .with(Slot::from(TAP_SLOT), KeyframeRequestTap::sfu());
    let setting = SettingEngineBuilder::new()
        .with_lite(true)
        .with_ice_credentials(ufrag.to_owned(), pwd.to_owned())
        .with_ice_timeouts(Some(disconnected), Some(failed), None)
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

    #[test]
    fn high_profile_does_not_match_constrained_baseline() {
        assert_eq!(h264_profile("640032"), Some(H264Profile::High));
        let cb = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        let high = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=640032";
        assert!(!h264_fmtp_compatible(high, cb));
        assert!(!h264_fmtp_compatible(cb, high));
        assert!(h264_fmtp_compatible(high, "packetization-mode=1;profile-level-id=64001f"));
    }

    // Offer/answer through the real `rtc` peer connection, read back with `rtc::sdp`.
    // The fuller suite over every fixture is `sfu/tests/sdp.rs`.

    use rtc::peer_connection::sdp::RTCSessionDescription;
    use rtc::sdp::{MediaDescription, SessionDescription};

    const GST_H264: &str = include_str!("../../tests/fixtures/sdp/gstreamer-webrtcbin-h264-offer.sdp");
    const CHROME: &str = include_str!("../../tests/fixtures/sdp/chromium-sendrecv-offer.sdp");
    const CHROME_SIMULCAST: &str = include_str!("../../tests/fixtures/sdp/chromium-simulcast-offer.sdp");
    const UNSUPPORTED: &str =
        include_str!("../../tests/fixtures/sdp/synthetic-chromium-unsupported-codecs-offer.sdp");

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::unmarshal(&mut std::io::Cursor::new(text.as_bytes())).expect("SDP parses")
    }

    fn answer(offer: &str) -> SessionDescription {
        let mut pc = peer_connection("unitufrag", "unitpasswordunitpassword").expect("pc");
        pc.set_remote_description(Instant::now(), RTCSessionDescription::offer(offer.into()).expect("offer"))
            .expect("set_remote_description");
        let a = pc.create_answer(None).expect("create_answer");
        pc.set_local_description(Instant::now(), a).expect("set_local_description");
        parse(&pc.local_description().expect("answer").sdp)
    }

    fn attr<'a>(m: &'a MediaDescription, key: &str) -> Vec<&'a str> {
        m.attributes.iter().filter(|a| a.key == key).map(|a| a.value.as_deref().unwrap_or("")).collect()
    }

    fn mids(sd: &SessionDescription) -> Vec<(String, String)> {
        sd.media_descriptions
            .iter()
            .map(|m| (m.media_name.media.clone(), attr(m, "mid").concat()))
            .collect()
    }

    /// Properties 1 and 3: every m-line answered in order; GStreamer's
    /// `bundle-only` port-0 audio is accepted on the bundle, with OPUS and H.264 42c015.
    #[test]
    fn gstreamer_offer_is_answered_in_order_with_bundle_only_accepted() {
        let a = answer(GST_H264);
        assert_eq!(mids(&a), mids(&parse(GST_H264)));
        let bundle = a.attributes.iter().find(|x| x.key == "group").and_then(|x| x.value.as_deref());
        assert_eq!(bundle, Some("BUNDLE video0 audio1"));
        assert!(a.media_descriptions.iter().all(|m| m.media_name.port.value != 0));
        let video = a.media_descriptions[0].codecs();
        let profile = video.get(&102).and_then(|c| h264_profile(fmtp_param(&c.fmtp, "profile-level-id")?));
        assert_eq!(profile, Some(H264Profile::ConstrainedBaseline));
    }

    /// Property 2: a section with no codec we forward is rejected with port 0 and keeps `c=`.
    #[test]
    fn rejected_sections_keep_a_c_line() {
        let a = answer(UNSUPPORTED);
        assert_eq!(mids(&a), mids(&parse(UNSUPPORTED)));
        for m in &a.media_descriptions[..2] {
            assert_eq!(m.media_name.port.value, 0);
            assert!(m.connection_information.is_some());
        }
    }

    /// Property 5: the whole codec table, as the server offers it, stays within 7 bits
    /// and out of the RTCP-reserved 64–95 (RFC 5761 §4).
    #[test]
    fn server_offer_payload_types_fit_seven_bits() {
        use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
        let mut pc = peer_connection("unitufrag", "unitpasswordunitpassword").expect("pc");
        for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
            let direction = RTCRtpTransceiverDirection::Recvonly;
            let init = RTCRtpTransceiverInit { direction, ..Default::default() };
            pc.add_transceiver_from_kind(kind, Some(init)).expect("transceiver");
        }
        let o = parse(&pc.create_offer(None).expect("offer").sdp);
        let mut n = 0;
        for m in &o.media_descriptions {
            for f in &m.media_name.formats {
                let pt: u32 = f.parse().expect("numeric payload type");
                assert!(pt <= 127 && !(64..=95).contains(&pt), "payload type {pt}");
                n += 1;
            }
        }
        assert_eq!(n, 3 + 2 * H264_FORMS.len(), "opus, vp8+rtx, each H.264 form+rtx");
    }

    /// Property 6: offered extmap ids are echoed (Chromium: audio-level 1, mid 4).
    #[test]
    fn extmap_ids_are_echoed() {
        let a = answer(CHROME);
        let audio = attr(&a.media_descriptions[0], "extmap");
        assert!(audio.contains(&"1 urn:ietf:params:rtp-hdrext:ssrc-audio-level"), "{audio:?}");
        assert!(audio.contains(&"4 urn:ietf:params:rtp-hdrext:sdes:mid"), "{audio:?}");
        let video = attr(&a.media_descriptions[1], "extmap");
        assert!(video.contains(&"4 urn:ietf:params:rtp-hdrext:sdes:mid"), "{video:?}");
    }

    /// Property 7: Chromium's three simulcast layers are named back as `recv`.
    #[test]
    fn simulcast_rids_are_answered() {
        let a = answer(CHROME_SIMULCAST);
        let video = &a.media_descriptions[1];
        assert_eq!(attr(video, "rid"), ["q recv", "h recv", "f recv"]);
        assert_eq!(attr(video, "simulcast"), ["recv q;h;f"]);
    }
}
