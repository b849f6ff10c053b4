//! The originals writer on synthetic RTP made by real GStreamer pipelines
//! (vp8enc + rtpvp8pay, opusenc + rtpopuspay), played back with GStreamer.

use fengqiao_recorder::{
    verify, Codec, EvidenceKey, FileStatus, ManifestWriter, Pushed, SegmentEvent, SessionHeader, Timestamp,
    TrackKind, TrackWriter, TrackWriterConfig,
};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FINISH: Duration = Duration::from_secs(60);

/// Runs `desc` (ending in `appsink name=out`) to EOS and returns every buffer.
fn pull_all(desc: &str) -> Vec<gst::Buffer> {
    gst::init().unwrap();
    let p = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    sink.set_sync(false);
    p.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    while let Ok(s) = sink.pull_sample() {
        out.push(s.buffer_owned().unwrap());
    }
    let bus = p.bus().unwrap();
    if let Some(m) = bus.pop_filtered(&[gst::MessageType::Error]) {
        panic!("{desc}: {m:?}");
    }
    p.set_state(gst::State::Null).unwrap();
    out
}

/// RTP packets with their arrival times taken from the RTP timestamps.
fn rtp(desc: &str, clock: u32) -> Vec<(Vec<u8>, Duration)> {
    let bufs = pull_all(desc);
    let mut ts0 = None;
    bufs.iter()
        .map(|b| {
            let m = b.map_readable().unwrap();
            let ts = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
            let d = ts.wrapping_sub(*ts0.get_or_insert(ts));
            (m.to_vec(), Duration::from_nanos(u64::from(d) * 1_000_000_000 / u64::from(clock)))
        })
        .collect()
}

/// 150 VP8 frames at 30 fps (5 s), 640×480, a keyframe every 30 frames; frames
/// span several packets.
fn vp8_packets() -> Vec<(Vec<u8>, Duration)> {
    rtp(
        "videotestsrc num-buffers=150 pattern=snow ! video/x-raw,width=640,height=480,framerate=30/1 ! \
         vp8enc keyframe-max-dist=30 deadline=1 target-bitrate=1500000 ! rtpvp8pay pt=96 mtu=1200 ! appsink name=out",
        90_000,
    )
}

/// 5 s of a 440 Hz tone as Opus, 20 ms per packet.
fn opus_packets() -> Vec<(Vec<u8>, Duration)> {
    rtp(
        "audiotestsrc num-buffers=250 samplesperbuffer=960 freq=440 ! audio/x-raw,rate=48000,channels=1 ! \
         opusenc frame-size=20 ! rtpopuspay pt=111 ! appsink name=out",
        48_000,
    )
}

/// Decodes `file` and returns (frames, span from first PTS to last PTS + last duration or `step`).
fn play(file: &Path, decoder: &str, step: Duration) -> (usize, Duration) {
    let bufs = pull_all(&format!(
        "filesrc location={} ! matroskademux ! {decoder} ! appsink name=out",
        file.display()
    ));
    assert!(!bufs.is_empty(), "{} decodes to nothing", file.display());
    let first = bufs.first().unwrap().pts().unwrap();
    let last = bufs.last().unwrap();
    let end = last.pts().unwrap() + last.duration().unwrap_or(gst::ClockTime::from_nseconds(step.as_nanos() as u64));
    (bufs.len(), Duration::from_nanos((end - first).nseconds()))
}

fn segments(events: &[SegmentEvent]) -> Vec<String> {
    events.iter().filter_map(|e| if let SegmentEvent::Closed(p) = e { Some(p.clone()) } else { None }).collect()
}

#[test]
fn vp8_is_written_in_segments_cut_at_keyframes_and_plays_back() {
    let d = tempfile::tempdir().unwrap();
    let pkts = vp8_packets();
    let mut cfg = TrackWriterConfig::new(d.path(), "tracks/m1-video", Codec::Vp8, 96);
    cfg.segment = Duration::from_secs(2);
    // 5 s of packets arrive here at once rather than over 5 s: room for all.
    cfg.queue_packets = 1 << 20;
    let mut w = TrackWriter::start(cfg).unwrap();
    let mut events = Vec::new();
    for (p, at) in &pkts {
        assert_eq!(w.push_rtp_at(p, *at), Pushed::Queued);
        events.extend(w.poll_events().unwrap());
    }
    assert_eq!(w.dropped(), 0);
    assert!(pkts.len() > 300, "{} packets: frames should span several", pkts.len());
    events.extend(w.finish(FINISH).unwrap());
    let segs = segments(&events);
    assert!(segs.len() >= 2, "{events:?}");
    assert_eq!(segs[0], "tracks/m1-video-00000.mkv");
    let step = Duration::from_nanos(1_000_000_000 / 30);
    let (mut frames, mut span) = (0, Duration::ZERO);
    for s in &segs {
        // Each segment decodes on its own: it starts with a keyframe.
        let (f, sp) = play(&d.path().join(s), "vp8dec", step);
        frames += f;
        span += sp;
    }
    assert!((147..=153).contains(&frames), "{frames} frames of 150 ({segs:?})");
    let err = span.abs_diff(Duration::from_secs(5));
    assert!(err <= Duration::from_millis(100), "duration {span:?}");
}

#[test]
fn opus_is_written_and_plays_back_for_its_full_length() {
    let d = tempfile::tempdir().unwrap();
    let pkts = opus_packets();
    let mut w = TrackWriter::start(TrackWriterConfig::new(d.path(), "a1-audio", Codec::Opus, 111)).unwrap();
    for (p, at) in &pkts {
        assert_eq!(w.push_rtp_at(p, *at), Pushed::Queued);
    }
    let segs = segments(&w.finish(FINISH).unwrap());
    assert_eq!(segs, vec!["a1-audio-00000.mkv".to_owned()]);
    let (_, span) = play(&d.path().join(&segs[0]), "opusdec", Duration::from_millis(20));
    assert!(span.abs_diff(Duration::from_secs(5)) <= Duration::from_millis(100), "duration {span:?}");
}

#[test]
fn segments_go_into_the_manifest_and_verify() {
    let d = tempfile::tempdir().unwrap();
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let hdr = SessionHeader { room: "r".into(), case_id: None, session_id: "s".into() };
    let mut m = ManifestWriter::create(d.path(), key.clone(), hdr, Timestamp::now()).unwrap();
    let mut cfg = TrackWriterConfig::new(d.path(), "m1-video", Codec::Vp8, 96);
    cfg.segment = Duration::from_secs(2);
    cfg.queue_packets = 1 << 20;
    let mut w = TrackWriter::start(cfg).unwrap();
    let record = |m: &mut ManifestWriter, evs: Vec<SegmentEvent>| {
        for e in evs {
            match e {
                SegmentEvent::Opened(p) => m.open_file(Timestamp::now(), &p, Some("m1"), TrackKind::Video, Some("VP8")),
                SegmentEvent::Closed(p) => m.close_file(Timestamp::now(), &p, FileStatus::Closed),
            }
            .unwrap();
        }
    };
    for (p, at) in vp8_packets() {
        w.push_rtp_at(&p, at);
        let evs = w.poll_events().unwrap();
        record(&mut m, evs);
    }
    let evs = w.finish(FINISH).unwrap();
    record(&mut m, evs);
    assert_eq!(m.open_files().count(), 0);
    m.finish(Timestamp::now()).unwrap();
    let r = verify(d.path(), key.public_key());
    assert!(r.is_ok(), "{r}");
    assert!(r.files_ok.len() >= 2, "{r}");
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let d = tempfile::tempdir().unwrap();
    let pkts = vp8_packets();
    let mut cfg = TrackWriterConfig::new(d.path(), "v", Codec::Vp8, 96);
    cfg.queue_packets = 2;
    let mut w = TrackWriter::start(cfg).unwrap();
    let t0 = Instant::now();
    let mut dropped = 0;
    for _ in 0..20 {
        for (p, at) in &pkts {
            if w.push_rtp_at(p, *at) == Pushed::Dropped {
                dropped += 1;
            }
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(20), "pushing blocked: {:?}", t0.elapsed());
    assert_eq!(w.dropped(), dropped);
    assert_eq!(w.push_rtp_at(&[0u8; 5], Duration::ZERO), Pushed::Dropped, "a runt is dropped");
    assert_eq!(w.dropped(), dropped + 1);
    w.finish(FINISH).unwrap();
}

#[test]
fn bad_settings_are_errors() {
    let d = tempfile::tempdir().unwrap();
    assert!(TrackWriter::start(TrackWriterConfig::new(d.path(), "../x", Codec::Vp8, 96)).is_err());
    assert!(TrackWriter::start(TrackWriterConfig::new(d.path(), "x", Codec::Vp8, 200)).is_err());
}
