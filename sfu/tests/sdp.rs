//! Issue 2, test 5: "SDP that real browsers send must work".
//!
//! Every offer in `tests/fixtures/sdp/` (Chromium, Firefox and GStreamer
//! `webrtcbin` captures, plus the `synthetic-*` ones derived from them, see the
//! README there) is answered by the SFU-side peer connection exactly as
//! `engine.rs` `client_offer` does it: [`fengqiao_sfu::sdp::peer_connection`],
//! `set_remote_description(offer)`, one host candidate (127.0.0.1:40000),
//! `create_answer`, `set_local_description`. The answer is then read back with
//! `rtc`'s SDP parser (`rtc::sdp`), never with regular expressions.
//!
//! The renegotiation test then plays `maybe_offer`/`add_consumer`: it adds one
//! audio and one video Consumer track with `add_track`, takes the server's offer,
//! answers it from the client's side (an answer built from the server's offer
//! and the client's own ICE/DTLS parameters, see [`client_answer`]) and repeats.

use fengqiao_sfu::sdp::{codec_compatible, fmtp_param, h264_profile, peer_connection, H264Profile};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sdp::description::common::{Address, Attribute, ConnectionInformation};
use rtc::sdp::extmap::ExtMap;
use rtc::sdp::{MediaDescription, SessionDescription};
use std::collections::HashMap;
use std::io::Cursor;
use std::time::Instant;

const UFRAG: &str = "fqtestufrag0";
const PWD: &str = "fqtestpasswordfqtestpassword";
const HOST: (&str, u16) = ("127.0.0.1", 40000);
const MID_URI: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";

// ------------------------------------------------------------------ fixtures

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sdp")
}

fn fixture(name: &str) -> String {
    let p = fixture_dir().join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every `*.sdp` offer in the fixture directory, sorted by name.
fn all_offers() -> Vec<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with("-offer.sdp"))
        .collect();
    names.sort();
    assert!(
        names.len() >= 8,
        "expected the 8 captured offers at least, found {names:?}"
    );
    names
        .into_iter()
        .map(|n| {
            let t = fixture(&n);
            (n, t)
        })
        .collect()
}

// ------------------------------------------------------------ SDP reading

fn parse(what: &str, text: &str) -> SessionDescription {
    SessionDescription::unmarshal(&mut Cursor::new(text.as_bytes()))
        .unwrap_or_else(|e| panic!("{what}: SDP does not parse: {e}\n{text}"))
}

fn values<'a>(m: &'a MediaDescription, key: &str) -> Vec<&'a str> {
    m.attributes
        .iter()
        .filter(|a| a.key == key)
        .map(|a| a.value.as_deref().unwrap_or(""))
        .collect()
}

fn mid(m: &MediaDescription) -> String {
    values(m, "mid")
        .first()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

fn port(m: &MediaDescription) -> isize {
    m.media_name.port.value
}

fn kind(m: &MediaDescription) -> &str {
    &m.media_name.media
}

fn is_rtp(m: &MediaDescription) -> bool {
    m.media_name.protos.iter().any(|p| p == "RTP")
}

fn section<'a>(sd: &'a SessionDescription, mid_value: &str) -> &'a MediaDescription {
    sd.media_descriptions
        .iter()
        .find(|m| mid(m) == mid_value)
        .unwrap_or_else(|| panic!("no m-section with mid {mid_value}"))
}

fn bundle_mids(sd: &SessionDescription) -> Vec<String> {
    sd.attributes
        .iter()
        .filter(|a| a.key == "group")
        .filter_map(|a| a.value.as_deref())
        .filter_map(|v| v.strip_prefix("BUNDLE"))
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn direction(m: &MediaDescription) -> &'static str {
    for d in ["sendrecv", "sendonly", "recvonly", "inactive"] {
        if m.attributes.iter().any(|a| a.key == d) {
            return d;
        }
    }
    "sendrecv"
}

/// `(id, uri)` of every `a=extmap`, parsed with `rtc::sdp::extmap::ExtMap`.
fn extmaps(m: &MediaDescription) -> Vec<(u16, String)> {
    values(m, "extmap")
        .into_iter()
        .map(|v| {
            let e = ExtMap::unmarshal(&mut Cursor::new(format!("extmap:{v}")))
                .unwrap_or_else(|err| panic!("bad extmap {v:?}: {err}"));
            (e.value, e.uri.map(|u| u.to_string()).unwrap_or_default())
        })
        .collect()
}

/// Every payload type a section names: the m-line formats and the numbers of
/// its `rtpmap`/`fmtp`/`rtcp-fb` lines (parsed as u32 so >255 cannot hide).
fn payload_types(m: &MediaDescription) -> Vec<u32> {
    if !is_rtp(m) {
        return vec![];
    }
    let mut pts: Vec<u32> = m
        .media_name
        .formats
        .iter()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("non-numeric RTP format {f}"))
        })
        .collect();
    for key in ["rtpmap", "fmtp", "rtcp-fb"] {
        for v in values(m, key) {
            let n = v.split_whitespace().next().unwrap_or("");
            pts.push(n.parse().unwrap_or_else(|_| panic!("bad a={key}:{v}")));
        }
    }
    pts
}

/// (payload type, fmtp) of every H.264 format of a section.
fn h264_formats(m: &MediaDescription) -> Vec<(u8, String)> {
    let mut v: Vec<(u8, String)> = m
        .codecs()
        .into_values()
        .filter(|c| c.name.eq_ignore_ascii_case("H264"))
        .map(|c| (c.payload_type, c.fmtp))
        .collect();
    v.sort();
    v
}

fn has_c_line(sd: &SessionDescription, m: &MediaDescription) -> bool {
    m.connection_information.is_some() || sd.connection_information.is_some()
}

// --------------------------------------------------------- the server side

/// Applies `offer` to a fresh SFU-side peer connection the way
/// `Engine::client_offer` does and returns it with its answer.
fn server_answer(name: &str, offer: &str) -> (RTCPeerConnection, String) {
    let mut pc = peer_connection(UFRAG, PWD).expect("peer_connection");
    let desc = RTCSessionDescription::offer(offer.to_owned())
        .unwrap_or_else(|e| panic!("{name}: offer rejected by RTCSessionDescription: {e}"));
    pc.set_remote_description(Instant::now(), desc)
        .unwrap_or_else(|e| panic!("{name}: set_remote_description(offer): {e}"));
    let cand = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: HOST.0.to_owned(),
            port: HOST.1,
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .expect("host candidate");
    let init = RTCIceCandidate::from(&cand)
        .to_json()
        .expect("candidate json");
    pc.add_local_candidate(init).expect("add_local_candidate");
    let answer = pc
        .create_answer(None)
        .unwrap_or_else(|e| panic!("{name}: create_answer: {e}"));
    pc.set_local_description(Instant::now(), answer)
        .unwrap_or_else(|e| panic!("{name}: set_local_description(answer): {e}"));
    let sdp = pc.local_description().expect("local description").sdp;
    (pc, sdp)
}

/// The codecs a Consumer of each kind would carry towards this client: the
/// Producer's codec as `add_consumer` passes it (Opus; VP8, or Chromium's H.264
/// when the client took no VP8), `None` when the client accepted no codec of
/// that kind (then no Producer of that kind can be forwarded to it).
fn consumer_codecs(answer: &SessionDescription) -> (Option<RTCRtpCodec>, Option<RTCRtpCodec>) {
    let names = |k: &str| -> Vec<String> {
        answer
            .media_descriptions
            .iter()
            .filter(|m| kind(m) == k && port(m) != 0)
            .flat_map(|m| {
                m.codecs()
                    .into_values()
                    .map(|c| c.name.to_ascii_lowercase())
            })
            .collect()
    };
    let audio = names("audio").iter().any(|n| n == "opus").then(opus);
    let v = names("video");
    let video = if v.iter().any(|n| n == "vp8") {
        Some(vp8())
    } else if v.iter().any(|n| n == "h264") {
        Some(h264(CHROME_CB))
    } else {
        None
    };
    (audio, video)
}

fn opus() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/opus".into(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn vp8() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/VP8".into(),
        clock_rate: 90000,
        ..Default::default()
    }
}

/// A Consumer's track, built as `Engine::add_consumer` builds it.
fn consumer_track(n: u32, kind: RtpCodecKind, codec: RTCRtpCodec) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("producer{n}"),
        format!("producer{n}-track"),
        format!("producer{n} {kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(0x1000_0000 + n),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

// -------------------------------------------------------- the client side

/// The client's answer to a server offer, as a browser would build it: same
/// m-sections in order, the offered codecs and extmaps echoed, direction
/// reversed (the client sends only where it sent in its own offer), and the
/// client's own ICE credentials, fingerprint and DTLS role (`passive`: the
/// ICE-lite server answered `active`).
fn client_answer(
    client_offer: &SessionDescription,
    server_offer: &SessionDescription,
    version: u64,
) -> String {
    let session_attr = |key: &str| {
        client_offer
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
    };
    let mut ans = server_offer.clone();
    ans.origin = client_offer.origin.clone();
    ans.origin.session_version += version;
    ans.attributes.retain(|a| {
        matches!(
            a.key.as_str(),
            "group" | "msid-semantic" | "extmap-allow-mixed"
        )
    });
    for m in ans.media_descriptions.iter_mut() {
        let mid_value = mid(m);
        let orig = client_offer
            .media_descriptions
            .iter()
            .find(|o| mid(o) == mid_value);
        let attr = |key: &str| -> Option<String> {
            orig.and_then(|o| values(o, key).first().map(|s| s.to_string()))
                .or_else(|| session_attr(key))
                .or_else(|| {
                    client_offer
                        .media_descriptions
                        .iter()
                        .find_map(|o| values(o, key).first().map(|s| s.to_string()))
                })
        };
        let offered = m.attributes.clone();
        let offered_dir = direction(m);
        let mut out = vec![Attribute::new("mid".into(), Some(mid_value.clone()))];
        m.connection_information = Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: "IP4".into(),
            address: Some(Address {
                address: "0.0.0.0".into(),
                ttl: None,
                range: None,
            }),
        });
        if port(m) == 0 {
            m.attributes = out;
            continue;
        }
        for key in ["ice-ufrag", "ice-pwd", "fingerprint"] {
            out.push(Attribute::new(key.into(), Some(attr(key).expect(key))));
        }
        out.push(Attribute::new("setup".into(), Some("passive".into())));
        if !is_rtp(m) {
            out.extend(
                offered
                    .into_iter()
                    .filter(|a| matches!(a.key.as_str(), "sctp-port" | "max-message-size")),
            );
            m.attributes = out;
            continue;
        }
        out.extend(
            offered
                .iter()
                .filter(|a| {
                    matches!(
                        a.key.as_str(),
                        "rtcp-mux" | "rtcp-rsize" | "rtpmap" | "fmtp" | "rtcp-fb" | "extmap"
                    )
                })
                .cloned(),
        );
        let client_sends = orig.is_some_and(|o| matches!(direction(o), "sendrecv" | "sendonly"));
        let recv = matches!(offered_dir, "sendrecv" | "sendonly");
        let send = client_sends && matches!(offered_dir, "sendrecv" | "recvonly");
        let dir = match (send, recv) {
            (true, true) => "sendrecv",
            (true, false) => "sendonly",
            (false, true) => "recvonly",
            (false, false) => "inactive",
        };
        out.push(Attribute::new(dir.into(), None));
        if send {
            let o = orig.expect("sending section has an original");
            let mut keys = vec!["msid", "ssrc", "ssrc-group"];
            if offered.iter().any(|a| a.key == "simulcast") {
                keys.extend(["rid", "simulcast"]);
            }
            out.extend(
                o.attributes
                    .iter()
                    .filter(|a| keys.contains(&a.key.as_str()))
                    .cloned(),
            );
        }
        m.attributes = out;
    }
    ans.marshal()
}

// ------------------------------------------------------------- the checks

/// Properties 1, 2, 3, 5 and 6 (echo) for one offer/answer pair.
fn check_answer(
    name: &str,
    offer: &SessionDescription,
    answer: &SessionDescription,
    answer_text: &str,
) {
    let ctx = |what: String| format!("{name}: {what}\n--- answer ---\n{answer_text}");
    // 1. every offered m-line, in order, same kind and mid.
    assert_eq!(
        offer.media_descriptions.len(),
        answer.media_descriptions.len(),
        "{}",
        ctx("answer has a different number of m-lines".into())
    );
    let bundle = bundle_mids(answer);
    let offer_bundle = bundle_mids(offer);
    for (i, (o, a)) in offer
        .media_descriptions
        .iter()
        .zip(&answer.media_descriptions)
        .enumerate()
    {
        assert_eq!(kind(o), kind(a), "{}", ctx(format!("m-line {i}: kind")));
        assert_eq!(mid(o), mid(a), "{}", ctx(format!("m-line {i}: mid")));
        assert!(
            !mid(a).is_empty(),
            "{}",
            ctx(format!("m-line {i} has no mid"))
        );
        // 2. a rejected section: port 0, still a c= line, not in the BUNDLE group.
        if port(a) == 0 {
            assert!(
                has_c_line(answer, a),
                "{}",
                ctx(format!("rejected m-line {i} has no c= line"))
            );
            assert!(
                !bundle.contains(&mid(a)),
                "{}",
                ctx(format!("rejected mid {} is bundled", mid(a)))
            );
        } else if offer_bundle.contains(&mid(o)) {
            assert!(
                bundle.contains(&mid(a)),
                "{}",
                ctx(format!("accepted mid {} left out of BUNDLE", mid(a)))
            );
        }
        // 3. bundle-only (port 0 in the offer) is accepted on the shared transport.
        if port(o) == 0 && values(o, "bundle-only").len() == 1 {
            assert_ne!(
                port(a),
                0,
                "{}",
                ctx(format!("bundle-only mid {} was rejected", mid(o)))
            );
            assert!(
                bundle.contains(&mid(a)),
                "{}",
                ctx(format!("bundle-only mid {} not bundled", mid(o)))
            );
        }
        assert!(
            values(a, "bundle-only").is_empty(),
            "{}",
            ctx("answers never carry bundle-only".into())
        );
        if port(a) == 0 || !is_rtp(a) {
            continue;
        }
        // 5. payload types: 7 bits, and the offerer's own numbers.
        let offered_pts = payload_types(o);
        for pt in payload_types(a) {
            assert!(
                pt <= 127,
                "{}",
                ctx(format!("mid {}: payload type {pt} > 127", mid(a)))
            );
            assert!(
                offered_pts.contains(&pt),
                "{}",
                ctx(format!("mid {}: payload type {pt} was not offered", mid(a)))
            );
        }
        assert!(
            !a.media_name.formats.is_empty(),
            "{}",
            ctx(format!("mid {}: no formats", mid(a)))
        );
        // 6. extmap ids are echoed: every answered (id, uri) was offered so, and
        //    the extensions the SFU reads are kept when offered.
        let offered_ext = extmaps(o);
        let answered_ext = extmaps(a);
        for e in &answered_ext {
            assert!(
                offered_ext.contains(e),
                "{}",
                ctx(format!("mid {}: extmap {e:?} not offered", mid(a)))
            );
        }
        let mut must_keep = vec![MID_URI];
        if kind(a) == "audio" {
            must_keep.push(fengqiao_sfu::sdp::AUDIO_LEVEL_URI);
        }
        for uri in must_keep {
            if let Some(e) = offered_ext.iter().find(|(_, u)| u == uri) {
                assert!(
                    answered_ext.contains(e),
                    "{}",
                    ctx(format!("mid {}: offered extmap {e:?} dropped", mid(a)))
                );
            }
        }
    }
    // The answer is ICE-lite and carries the host candidate client_offer adds.
    assert!(
        answer.attributes.iter().any(|a| a.key == "ice-lite"),
        "{}",
        ctx("no a=ice-lite".into())
    );
    let host = format!(" {} {} typ host", HOST.0, HOST.1);
    assert!(
        answer
            .media_descriptions
            .iter()
            .any(|m| values(m, "candidate").iter().any(|c| c.contains(&host))),
        "{}",
        ctx("host candidate missing".into())
    );
}

/// Extension ids seen on one transport; an id must never name two URIs (and a
/// URI never two ids): BUNDLE makes every m-section one RTP session (RFC 8843 §9.2).
#[derive(Default)]
struct ExtIds {
    by_id: HashMap<u16, (String, String)>,
    by_uri: HashMap<String, (u16, String)>,
}

impl ExtIds {
    fn record(&mut self, what: &str, sd: &SessionDescription, text: &str) {
        for m in sd
            .media_descriptions
            .iter()
            .filter(|m| port(m) != 0 || values(m, "bundle-only").len() == 1)
        {
            for (id, uri) in extmaps(m) {
                let here = format!("{what} mid {}", mid(m));
                let (prev_uri, prev_where) = self
                    .by_id
                    .entry(id)
                    .or_insert((uri.clone(), here.clone()))
                    .clone();
                assert_eq!(
                    prev_uri, uri,
                    "extmap id {id} reused: {prev_where} had {prev_uri}, {here} has {uri}\n{text}"
                );
                let (prev_id, prev_where) = self
                    .by_uri
                    .entry(uri.clone())
                    .or_insert((id, here.clone()))
                    .clone();
                assert_eq!(
                    prev_id, id,
                    "{uri} moved from id {prev_id} ({prev_where}) to {id} ({here})\n{text}"
                );
            }
        }
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn every_fixture_offer_is_answered() {
    for (name, text) in all_offers() {
        assert!(
            text.contains("\r\n"),
            "{name}: fixtures keep the browsers' CRLF line endings"
        );
        let offer = parse(&name, &text);
        let (_pc, answer_text) = server_answer(&name, &text);
        let answer = parse(&format!("{name} answer"), &answer_text);
        check_answer(&name, &offer, &answer, &answer_text);
    }
}

#[test]
fn captured_offers_accept_all_audio_and_video() {
    // The real captures carry codecs the SFU forwards in every audio/video
    // section, so none of those may be rejected.
    for (name, text) in all_offers()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("synthetic-"))
    {
        let (_pc, answer_text) = server_answer(&name, &text);
        let answer = parse(&name, &answer_text);
        for m in answer.media_descriptions.iter().filter(|m| is_rtp(m)) {
            assert_ne!(port(m), 0, "{name}: mid {} rejected\n{answer_text}", mid(m));
            let codecs = m.codecs();
            let main = codecs
                .values()
                .find(|c| !c.name.eq_ignore_ascii_case("rtx"))
                .expect("a media codec");
            assert!(
                ["opus", "vp8", "h264"].contains(&main.name.to_ascii_lowercase().as_str()),
                "{name}: mid {} negotiated {}",
                mid(m),
                main.name
            );
        }
    }
}

#[test]
fn data_channel_section_is_kept() {
    for name in ["chromium-sendrecv-offer.sdp", "firefox-sendrecv-offer.sdp"] {
        let (_pc, answer_text) = server_answer(name, &fixture(name));
        let answer = parse(name, &answer_text);
        let app = section(&answer, "2");
        assert_eq!(kind(app), "application");
        assert_ne!(port(app), 0, "{name}: data channel rejected\n{answer_text}");
        assert_eq!(values(app, "sctp-port"), ["5000"], "{name}\n{answer_text}");
        assert!(
            bundle_mids(&answer).contains(&"2".to_owned()),
            "{name}\n{answer_text}"
        );
    }
}

#[test]
fn unsupported_codecs_are_rejected_with_port_0_and_a_c_line() {
    let name = "synthetic-chromium-unsupported-codecs-offer.sdp";
    let (_pc, answer_text) = server_answer(name, &fixture(name));
    let answer = parse(name, &answer_text);
    for mid_value in ["0", "1"] {
        let m = section(&answer, mid_value);
        assert_eq!(
            port(m),
            0,
            "mid {mid_value} should be rejected\n{answer_text}"
        );
        let c = m
            .connection_information
            .as_ref()
            .expect("media-level c= on a rejected section");
        assert_eq!(
            (c.network_type.as_str(), c.address_type.as_str()),
            ("IN", "IP4")
        );
    }
    assert_ne!(
        port(section(&answer, "2")),
        0,
        "data channel still accepted\n{answer_text}"
    );
    assert_eq!(bundle_mids(&answer), ["2"], "{answer_text}");
}

#[test]
fn gstreamer_bundle_only_section_is_accepted() {
    for name in [
        "gstreamer-webrtcbin-vp8-offer.sdp",
        "gstreamer-webrtcbin-h264-offer.sdp",
    ] {
        let text = fixture(name);
        let offer = parse(name, &text);
        assert_eq!(port(section(&offer, "audio1")), 0);
        assert_eq!(values(section(&offer, "audio1"), "bundle-only").len(), 1);
        let (_pc, answer_text) = server_answer(name, &text);
        let answer = parse(name, &answer_text);
        assert_eq!(
            bundle_mids(&answer),
            ["video0", "audio1"],
            "{name}\n{answer_text}"
        );
        let audio = section(&answer, "audio1");
        assert_ne!(port(audio), 0, "{name}\n{answer_text}");
        // Upper-case OPUS is matched case-insensitively, on the offerer's PT.
        let codecs = audio.codecs();
        assert!(
            codecs
                .get(&111)
                .is_some_and(|c| c.name.eq_ignore_ascii_case("opus")),
            "{name}\n{answer_text}"
        );
    }
}

fn answered_h264(name: &str) -> (Vec<(u8, String)>, String) {
    let (_pc, answer_text) = server_answer(name, &fixture(name));
    let answer = parse(name, &answer_text);
    let video = answer
        .media_descriptions
        .iter()
        .find(|m| kind(m) == "video")
        .expect("video m-line");
    let formats = if port(video) == 0 {
        vec![]
    } else {
        h264_formats(video)
    };
    (formats, answer_text)
}

fn profile_of(fmtp: &str) -> Option<H264Profile> {
    fmtp_param(fmtp, "profile-level-id").and_then(h264_profile)
}

fn h264(fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "video/H264".into(),
        clock_rate: 90000,
        sdp_fmtp_line: fmtp.into(),
        ..Default::default()
    }
}

/// What a Chromium subscriber negotiates: Constrained Baseline, mode 1.
const CHROME_CB: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

#[test]
fn h264_level_is_free_42e034_matches_42e01f() {
    let (formats, answer_text) = answered_h264("synthetic-chromium-h264-level52-offer.sdp");
    assert_eq!(
        formats.len(),
        1,
        "H.264 42e034 must be accepted\n{answer_text}"
    );
    let (pt, fmtp) = &formats[0];
    assert_eq!(*pt, 108, "the offerer's payload type is kept");
    assert_eq!(
        profile_of(fmtp),
        Some(H264Profile::ConstrainedBaseline),
        "{fmtp}"
    );
    assert_eq!(fmtp_param(fmtp, "packetization-mode"), Some("1"));
    // A level 5.2 producer can be forwarded to a level 3.1 subscriber's codec.
    assert!(codec_compatible(&h264(fmtp), &h264(CHROME_CB)));
}

#[test]
fn gstreamer_h264_42c015_is_accepted_as_constrained_baseline() {
    let (formats, answer_text) = answered_h264("gstreamer-webrtcbin-h264-offer.sdp");
    assert_eq!(
        formats.len(),
        1,
        "GStreamer's H.264 must be accepted\n{answer_text}"
    );
    let (pt, fmtp) = &formats[0];
    assert_eq!(*pt, 102);
    assert_eq!(
        profile_of(fmtp),
        Some(H264Profile::ConstrainedBaseline),
        "{fmtp}"
    );
    // The mediator rig's stream goes to Chromium subscribers.
    assert!(codec_compatible(&h264(fmtp), &h264(CHROME_CB)));
}

#[test]
fn h264_high_only_offer_does_not_match_constrained_baseline() {
    let (formats, answer_text) = answered_h264("synthetic-chromium-h264-high-only-offer.sdp");
    // Either rejected, or answered as High; never as Constrained Baseline.
    for (_, fmtp) in &formats {
        assert_eq!(
            profile_of(fmtp),
            Some(H264Profile::High),
            "{fmtp}\n{answer_text}"
        );
        assert!(!codec_compatible(&h264(fmtp), &h264(CHROME_CB)));
        assert!(!codec_compatible(&h264(CHROME_CB), &h264(fmtp)));
    }
}

#[test]
fn simulcast_rids_are_named_in_the_answer() {
    for (name, video_mid) in [
        ("chromium-simulcast-offer.sdp", "1"),
        ("firefox-simulcast-offer.sdp", "1"),
    ] {
        let text = fixture(name);
        let offer = parse(name, &text);
        assert_eq!(
            values(section(&offer, video_mid), "simulcast"),
            ["send q;h;f"]
        );
        let (_pc, answer_text) = server_answer(name, &text);
        let answer = parse(name, &answer_text);
        let video = section(&answer, video_mid);
        assert_ne!(port(video), 0, "{name}\n{answer_text}");
        let rids = values(video, "rid");
        let simulcast = values(video, "simulcast");
        if rids.is_empty() && simulcast.is_empty() {
            continue; // cleanly declined: one layer
        }
        assert_eq!(
            rids,
            ["q recv", "h recv", "f recv"],
            "{name}\n{answer_text}"
        );
        assert_eq!(simulcast, ["recv q;h;f"], "{name}\n{answer_text}");
        // The rid extensions are echoed on the offerer's ids so layers can be told apart.
        let offered = extmaps(section(&offer, video_mid));
        for uri in ["urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"] {
            let e = offered
                .iter()
                .find(|(_, u)| u == uri)
                .expect("offered rid extmap");
            assert!(
                extmaps(video).contains(e),
                "{name}: {e:?} not echoed\n{answer_text}"
            );
        }
    }
}

/// Properties 5 and 6 across renegotiations: the answer, then two server offers
/// (each after one audio and one video Consumer is added), each answered by the
/// client. No payload type > 127, earlier m-lines stay in place, and no extmap
/// id ever names two URIs on the transport.
#[test]
fn renegotiation_keeps_extmap_ids_and_payload_types() {
    for (name, text) in all_offers() {
        let client_offer = parse(&name, &text);
        let (mut pc, answer_text) = server_answer(&name, &text);
        let mut ids = ExtIds::default();
        ids.record(&format!("{name} client offer"), &client_offer, &text);
        let mut previous = parse(&name, &answer_text);
        ids.record(&format!("{name} answer"), &previous, &answer_text);
        let (audio, video) = consumer_codecs(&previous);
        let mut added = 0;
        for round in 0..2u32 {
            let what = format!("{name} server offer {}", round + 1);
            for (n, kind, codec) in [
                (2 * round, RtpCodecKind::Audio, &audio),
                (2 * round + 1, RtpCodecKind::Video, &video),
            ] {
                let track = consumer_track(
                    n,
                    kind,
                    codec.clone().unwrap_or_else(|| {
                        if kind == RtpCodecKind::Audio {
                            opus()
                        } else {
                            vp8()
                        }
                    }),
                );
                let r = pc.add_track(track);
                match codec {
                    Some(_) => {
                        r.unwrap_or_else(|e| panic!("{what}: add_track({kind}): {e}"));
                        added += 1;
                    }
                    // The client took no codec of this kind: rtc refuses the track
                    // (add_consumer then logs and creates no Consumer).
                    None => assert!(
                        r.is_err(),
                        "{what}: add_track({kind}) without a negotiated codec succeeded"
                    ),
                }
            }
            if added == 0 {
                break; // nothing to send: add_consumer never sets needs_offer
            }
            let offer = pc
                .create_offer(None)
                .unwrap_or_else(|e| panic!("{what}: create_offer: {e}"));
            pc.set_local_description(Instant::now(), offer)
                .unwrap_or_else(|e| panic!("{what}: set_local_description: {e}"));
            let offer_text = pc.local_description().expect("local offer").sdp;
            let offer = parse(&what, &offer_text);
            // Earlier m-lines keep their place, kind and mid (RFC 9429 §5.2.2).
            assert!(
                offer.media_descriptions.len() >= previous.media_descriptions.len(),
                "{what}\n{offer_text}"
            );
            for (p, o) in previous
                .media_descriptions
                .iter()
                .zip(&offer.media_descriptions)
            {
                assert_eq!((kind(p), mid(p)), (kind(o), mid(o)), "{what}\n{offer_text}");
            }
            for m in &offer.media_descriptions {
                for pt in payload_types(m) {
                    assert!(
                        pt <= 127,
                        "{what}: mid {}: payload type {pt} > 127\n{offer_text}",
                        mid(m)
                    );
                }
            }
            ids.record(&what, &offer, &offer_text);
            // The Consumer tracks are offered for sending.
            let sending = offer
                .media_descriptions
                .iter()
                .filter(|m| port(m) != 0 && matches!(direction(m), "sendrecv" | "sendonly"))
                .filter(|m| !values(m, "msid").is_empty())
                .count();
            assert!(
                sending >= added,
                "{what}: Consumer tracks not offered\n{offer_text}"
            );
            let answer_text = client_answer(&client_offer, &offer, u64::from(round) + 1);
            let answer = parse(&format!("{what}: client answer"), &answer_text);
            ids.record(&format!("{what}: client answer"), &answer, &answer_text);
            let desc = RTCSessionDescription::answer(answer_text.clone()).expect("answer");
            pc.set_remote_description(Instant::now(), desc)
                .unwrap_or_else(|e| {
                    panic!("{what}: set_remote_description(client answer): {e}\n{answer_text}")
                });
            previous = offer;
        }
    }
}

// The checks above must be able to fail: two mutations they have to catch.

#[test]
#[should_panic(expected = "has no c= line")]
fn check_answer_catches_a_rejected_section_without_c_line() {
    let name = "synthetic-chromium-unsupported-codecs-offer.sdp";
    let text = fixture(name);
    let (_pc, answer_text) = server_answer(name, &text);
    let mut answer = parse(name, &answer_text);
    answer.media_descriptions[0].connection_information = None;
    check_answer(name, &parse(name, &text), &answer, &answer.marshal());
}

#[test]
#[should_panic(expected = "extmap id 4 reused")]
fn ext_ids_catch_an_id_reused_for_another_uri() {
    let name = "chromium-sendrecv-offer.sdp";
    let text = fixture(name);
    let (_pc, answer_text) = server_answer(name, &text);
    let mut ids = ExtIds::default();
    ids.record("offer", &parse(name, &text), &text);
    let changed = answer_text.replace(
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:toffset",
    );
    assert_ne!(changed, answer_text);
    ids.record("answer", &parse(name, &changed), &changed);
}

/// GStreamer's H.264 (42c015) Producer forwarded to subscribers, as
/// `add_consumer` + `resolve_consumers` do it: on a Chromium transport the
/// Consumer's sender ends up with Chromium's Constrained Baseline payload type
/// (108, 42e01f) among its codecs; the captured Firefox offers carry no H.264
/// at all, so `rtc` refuses the track there.
#[test]
fn gstreamer_h264_producer_resolves_on_chromium_subscribers() {
    let gst = "packetization-mode=1;sprop-parameter-sets=Z0LAFdoFB+wFqDAwNSgAAAMACAAAAwHkeLF1,aM48gA==;profile-level-id=42c015;level-asymmetry-allowed=1";
    for sub in [
        "chromium-sendrecv-offer.sdp",
        "chromium-recvonly-offer.sdp",
        "firefox-sendrecv-offer.sdp",
    ] {
        let text = fixture(sub);
        let client_offer = parse(sub, &text);
        let (mut pc, _) = server_answer(sub, &text);
        let added = pc.add_track(consumer_track(9, RtpCodecKind::Video, h264(gst)));
        if sub.starts_with("firefox") {
            assert!(
                added.is_err(),
                "{sub}: no H.264 was negotiated, yet add_track succeeded"
            );
            continue;
        }
        let id = added.unwrap_or_else(|e| panic!("{sub}: add_track: {e}"));
        let offer = pc.create_offer(None).expect("create_offer");
        pc.set_local_description(Instant::now(), offer)
            .expect("set_local_description");
        let offer = parse(sub, &pc.local_description().expect("offer").sdp);
        let answer = client_answer(&client_offer, &offer, 1);
        pc.set_remote_description(
            Instant::now(),
            RTCSessionDescription::answer(answer).expect("answer"),
        )
        .expect("set_remote_description(answer)");
        let mut sender = pc.rtp_sender(id).expect("sender");
        let pts: Vec<u8> = sender
            .get_parameters()
            .rtp_parameters
            .codecs
            .iter()
            .filter(|c| codec_compatible(&h264(gst), &c.rtp_codec))
            .map(|c| c.payload_type)
            .collect();
        assert_eq!(
            pts,
            [108],
            "{sub}: Consumer payload type for GStreamer's H.264"
        );
    }
}
