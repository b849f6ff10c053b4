//! The review video (`fengqiao render`, docs/evidence.md § Review video) on
//! session folders made here with real GStreamer encoders (VP8, Opus in
//! Matroska segments laid out as the originals writer does) and a manifest
//! written with `ManifestWriter`; the MP4s are decoded back with GStreamer
//! (qtdemux, avdec_h264, faad) and checked by their pixels and samples.

mod common;

use fengqiao_recorder::render::{render, RenderOptions};
use fengqiao_recorder::{Body, EvidenceKey, FileStatus, ManifestWriter, SessionHeader, Timestamp, TrackKind};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;


/// 2026-11-29T16:00:00.000Z, the timeline zero of session A.
const T0: i64 = 1_795_968_000_000;
const W: u32 = 320;
const H: u32 = 240;
const FPS: u32 = 10;
const DUR_MS: u64 = 8000;

fn run(desc: &str) {
    gst::init().unwrap();
    let p = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let m = bus.timed_pop_filtered(gst::ClockTime::from_seconds(900), &[gst::MessageType::Eos, gst::MessageType::Error]);
    p.set_state(gst::State::Null).unwrap();
    match m.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        other => panic!("{desc}: {other:?}"),
    }
}

/// One recorded track: runs of `(start_ms, len_ms)` of media timestamps (a
/// gap between runs is a pause), one Matroska segment per run named
/// `<stem>-NNNNN.mkv`. Video: VP8 `pattern`; audio: Opus sine of `freq` Hz.
struct Track {
    stem: String,
    pid: &'static str,
    kind: TrackKind,
    room: &'static str,
    offset_ms: u64,
    runs: Vec<(u64, u64)>,
    freq: u32,
    pattern: &'static str,
}

/// A session to build: participants `(pid, name, role)`, tracks, an optional
/// pause `(from_ms, to_ms)` on the timeline, and the stop position.
struct Session {
    people: Vec<(&'static str, &'static str, &'static str)>,
    tracks: Vec<Track>,
    pause: Option<(i64, i64)>,
    /// `moved` entries: (timeline ms, pid, room).
    moves: Vec<(i64, &'static str, &'static str)>,
    dur_ms: u64,
    /// Camera caps of the synthetic publishers.
    camera: &'static str,
}

impl Track {
    fn write(&self, dir: &Path, camera: &str) -> Vec<String> {
        std::fs::create_dir_all(dir.join("tracks")).unwrap();
        let mut out = Vec::new();
        for (i, (start, len)) in self.runs.iter().enumerate() {
            let rel = format!("{}-{i:05}.mkv", self.stem);
            let loc = dir.join(&rel);
            let off = start * 1_000_000;
            let src = match self.kind {
                TrackKind::Video => format!(
                    "videotestsrc pattern={} timestamp-offset={off} num-buffers={} ! \
                     {camera},framerate=15/1 ! vp8enc deadline=1 keyframe-max-dist=15 threads=2 ! mux.",
                    self.pattern,
                    len * 15 / 1000
                ),
                _ => format!(
                    "audiotestsrc wave=sine freq={} volume=0.5 timestamp-offset={off} samplesperbuffer=960 num-buffers={} ! \
                     audio/x-raw,rate=48000,channels=1 ! opusenc ! mux.",
                    self.freq,
                    len / 20
                ),
            };
            run(&format!("matroskamux name=mux ! filesink location={} {src}", loc.display()));
            out.push(rel);
        }
        out
    }
}

fn track(pid: &'static str, kind: TrackKind, room: &'static str, offset_ms: u64, runs: &[(u64, u64)], freq: u32, pattern: &'static str) -> Track {
    let k = if kind == TrackKind::Video { "video" } else { "audio" };
    Track { stem: format!("tracks/{pid}-{k}-0"), pid, kind, room, offset_ms, runs: runs.to_vec(), freq, pattern }
}

/// Session A: a1 (张三, 440 Hz) from 0 s, m1 (王调解员, 660 Hz) from 1 s,
/// r1 (李四, 1000 Hz) in side room `respondent-room`; paused 3–5 s; m1 moves
/// to `respondent-room` at 6 s; 8 s.
fn session_a() -> Session {
    let (a, m) = (&[(0, 3000), (5000, 3000)][..], &[(0, 2000), (4000, 3000)][..]);
    Session {
        people: vec![("m1", "王调解员", "mediator"), ("a1", "张三", "applicant"), ("r1", "李四", "respondent")],
        tracks: vec![
            track("a1", TrackKind::Video, "main", 0, a, 0, "smpte"),
            track("a1", TrackKind::Audio, "main", 0, a, 440, ""),
            track("m1", TrackKind::Video, "main", 1000, m, 0, "ball"),
            track("m1", TrackKind::Audio, "main", 1000, m, 660, ""),
            track("r1", TrackKind::Video, "respondent-room", 0, a, 0, "snow"),
            track("r1", TrackKind::Audio, "respondent-room", 0, a, 1000, ""),
        ],
        pause: Some((3000, 5000)),
        moves: vec![(6000, "m1", "respondent-room")],
        dur_ms: DUR_MS,
        camera: "video/x-raw,width=320,height=240",
    }
}

/// Writes media (or copies it from `media_from`) and a finished manifest with
/// timeline zero at `t0` into `dir`, signed by `key`.
fn make_session(dir: &Path, key: Arc<EvidenceKey>, t0: i64, media_from: Option<&Path>, sess: &Session) {
    let t = |ms: i64| Timestamp::from_unix_millis(t0 + ms).unwrap();
    let hdr = SessionHeader { room: "room-7".into(), case_id: Some("(2026)枫调字第00007号".into()), session_id: "s-7".into() };
    let mut w = ManifestWriter::create(dir, key, hdr, t(-2000)).unwrap();
    for (pid, name, role) in &sess.people {
        w.append(t(-1500), None, Body::Participant { pid: (*pid).into(), name: (*name).into(), role: (*role).into() }).unwrap();
    }
    for (pid, _, _) in &sess.people {
        w.append(t(-1000), Some(pid), Body::Consent { answer: fengqiao_recorder::Answer::Accept }).unwrap();
    }
    w.append(t(0), Some("m1"), Body::Start {}).unwrap();
    for tr in &sess.tracks {
        let files = match media_from {
            None => tr.write(dir, sess.camera),
            Some(src) => (0..tr.runs.len())
                .map(|i| {
                    let rel = format!("{}-{i:05}.mkv", tr.stem);
                    std::fs::create_dir_all(dir.join("tracks")).unwrap();
                    std::fs::copy(src.join(&rel), dir.join(&rel)).unwrap();
                    rel
                })
                .collect(),
        };
        let codec = if tr.kind == TrackKind::Video { "VP8" } else { "Opus" };
        for f in &files {
            w.open_file(t(10), f, Some(tr.pid), tr.kind, Some(codec)).unwrap();
        }
        let clock = if tr.kind == TrackKind::Video { 90_000 } else { 48_000 };
        w.append(
            t(tr.offset_ms as i64 + 20),
            None,
            Body::Track {
                track: tr.stem.clone(),
                pid: tr.pid.into(),
                kind: tr.kind,
                codec: codec.into(),
                room: tr.room.into(),
                clock_rate: clock,
                rtp_ts: 1234,
                offset_ms: tr.offset_ms,
                sync: "sr".into(),
            },
        )
        .unwrap();
        for f in &files {
            w.close_file(t(7000), f, FileStatus::Closed).unwrap();
        }
    }
    if let Some((from, to)) = sess.pause {
        w.append(t(from), Some("m1"), Body::Pause { reason: "休息".into() }).unwrap();
        w.append(t(to), Some("m1"), Body::Resume {}).unwrap();
    }
    for (at, pid, room) in &sess.moves {
        w.append(t(*at), Some("m1"), Body::Moved { pid: (*pid).into(), room: (*room).into() }).unwrap();
    }
    w.append(t(sess.dur_ms as i64), Some("m1"), Body::Stop {}).unwrap();
    w.finish(t(sess.dur_ms as i64)).unwrap();
}

fn opts(key: &EvidenceKey) -> RenderOptions {
    RenderOptions { width: W, height: H, fps: FPS, video_kbps: 800, speed_preset: "veryfast".into(), ..RenderOptions::new(*key.public_key()) }
}

/// Decoded MP4: grey frames (pts ns, W×H luma) and mono 48 kHz samples.
struct Decoded {
    frames: Vec<(u64, Vec<u8>)>,
    frame_end_ns: u64,
    audio: Vec<i16>,
}

fn decode(mp4: &Path) -> Decoded {
    gst::init().unwrap();
    let desc = format!(
        "filesrc location={} ! qtdemux name=d \
         d.video_0 ! queue ! decodebin ! videoconvert ! video/x-raw,format=GRAY8 ! appsink name=v sync=false \
         d.audio_0 ! queue ! decodebin ! audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! appsink name=a sync=false",
        mp4.display()
    );
    let p = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let v = p.by_name("v").unwrap().downcast::<gst_app::AppSink>().unwrap();
    let a = p.by_name("a").unwrap().downcast::<gst_app::AppSink>().unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let (mut frames, mut frame_end_ns, mut audio) = (Vec::new(), 0, Vec::new());
    while let Ok(s) = v.pull_sample() {
        let b = s.buffer().unwrap();
        let pts = b.pts().unwrap().nseconds();
        frame_end_ns = frame_end_ns.max(pts + b.duration().map_or(0, |d| d.nseconds()));
        frames.push((pts, b.map_readable().unwrap().to_vec()));
    }
    while let Ok(s) = a.pull_sample() {
        let m = s.buffer().unwrap().map_readable().unwrap();
        audio.extend(m.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
    }
    if let Some(m) = p.bus().unwrap().pop_filtered(&[gst::MessageType::Error]) {
        panic!("decoding {}: {m:?}", mp4.display());
    }
    p.set_state(gst::State::Null).unwrap();
    Decoded { frames, frame_end_ns, audio }
}

/// Relative power of `freq` Hz in `x` (Goertzel), 0…~0.25 for a full-scale-normalised sine.
fn goertzel(x: &[i16], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = f64::from(v) / 32768.0 + c * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
}

fn slice(a: &[i16], from_ms: u64, to_ms: u64) -> &[i16] {
    &a[(from_ms * 48) as usize..(to_ms * 48) as usize]
}

/// Top-level MP4 box types in order.
fn boxes(path: &Path) -> Vec<String> {
    let b = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut i = 0usize;
    while i + 8 <= b.len() {
        let mut size = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as u64;
        let ty = String::from_utf8_lossy(&b[i + 4..i + 8]).into_owned();
        if size == 1 {
            size = u64::from_be_bytes(b[i + 8..i + 16].try_into().unwrap());
        } else if size == 0 {
            size = (b.len() - i) as u64;
        }
        out.push(ty);
        i += size as usize;
    }
    out
}

fn frame_at(d: &Decoded, ms: u64) -> &[u8] {
    let ns = ms * 1_000_000;
    &d.frames.iter().min_by_key(|(p, _)| p.abs_diff(ns)).unwrap().1
}

/// Largest mean absolute difference over 8×8 blocks in the top `rows` rows.
fn band_diff(a: &[u8], b: &[u8], rows: usize) -> f64 {
    let w = W as usize;
    let mut worst = 0.0f64;
    for by in (0..rows - 7).step_by(8) {
        for bx in (0..w - 7).step_by(8) {
            let mut s = 0u32;
            for y in by..by + 8 {
                for x in bx..bx + 8 {
                    s += u32::from(a[y * w + x].abs_diff(b[y * w + x]));
                }
            }
            worst = worst.max(f64::from(s) / 64.0);
        }
    }
    worst
}

#[test]
fn render_session_with_pause_and_caucus() {
    let d = tempfile::tempdir().unwrap();
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let a = d.path().join("a");
    make_session(&a, key.clone(), T0, None, &session_a());
    let mut seen = Vec::new();
    let t = std::time::Instant::now();
    let out = render(&a, &opts(&key), |p| seen.push(p)).unwrap();
    eprintln!("render A: {:?}, progress {seen:?}", t.elapsed());
    assert_eq!(out.iter().map(|o| o.path.as_str()).collect::<Vec<_>>(), ["review/main.mp4", "review/caucus-respondent-room.mp4"]);
    assert_eq!(seen.last(), Some(&100));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("review/render.json")).unwrap()).unwrap();
    assert_eq!(st["state"], "done");
    assert_eq!(st["percent"], 100);
    for o in &out {
        let dg = fengqiao_recorder::hash_file(&a.join(&o.path)).unwrap();
        assert_eq!(dg.sha256_hex(), o.sha256);
        let listed = st["outputs"].as_array().unwrap().iter().find(|x| x["path"] == o.path.as_str()).unwrap();
        assert_eq!(listed["sha256"], o.sha256.as_str());
        let bx = boxes(&a.join(&o.path));
        let (moov, mdat) = (bx.iter().position(|b| b == "moov").unwrap(), bx.iter().position(|b| b == "mdat").unwrap());
        assert!(moov < mdat, "faststart: moov before mdat, got {bx:?}");
        let bytes = std::fs::read(a.join(&o.path)).unwrap();
        assert!(bytes.windows(4).any(|w| w == b"avc1") && bytes.windows(4).any(|w| w == b"mp4a"), "H.264 + AAC");
    }
    let main = decode(&a.join("review/main.mp4"));
    let caucus = decode(&a.join("review/caucus-respondent-room.mp4"));
    for (name, m) in [("main", &main), ("caucus", &caucus)] {
        let v_ms = m.frame_end_ns / 1_000_000;
        let a_ms = m.audio.len() as u64 / 48;
        eprintln!("{name}: video {v_ms} ms ({} frames, first {}), audio {a_ms} ms", m.frames.len(), m.frames[0].0);
        assert!(v_ms.abs_diff(DUR_MS) <= 100, "{name} video {v_ms} ms");
        assert!(a_ms.abs_diff(DUR_MS) <= 100, "{name} audio {a_ms} ms");
    }
    let p = |x: &[i16], f: f64| goertzel(x, f);
    // Both joint-room participants are in the mix; the caucus tone is not.
    let early = slice(&main.audio, 1500, 2800);
    eprintln!("main 1.5–2.8 s: 440 {:.2e} 660 {:.2e} 1000 {:.2e}", p(early, 440.0), p(early, 660.0), p(early, 1000.0));
    assert!(p(early, 440.0) > 1e-3 && p(early, 660.0) > 1e-3, "both tones in main");
    assert!(p(early, 1000.0) < 1e-5, "caucus tone leaked into main");
    // m1 starts at its offset, 1 s.
    let first = slice(&main.audio, 100, 900);
    assert!(p(first, 440.0) > 1e-3 && p(first, 660.0) < 1e-5, "m1 placed at 1 s: 660 {:.2e}", p(first, 660.0));
    // The pause is silence; after the resume both are back.
    let pause = slice(&main.audio, 3200, 4800);
    assert!(p(pause, 440.0) < 1e-5 && p(pause, 660.0) < 1e-5, "pause is silent");
    let late = slice(&main.audio, 5200, 5900);
    assert!(p(late, 440.0) > 1e-3 && p(late, 660.0) > 1e-3);
    let c = slice(&caucus.audio, 1500, 2800);
    assert!(p(c, 1000.0) > 1e-3 && p(c, 440.0) < 1e-5 && p(c, 660.0) < 1e-5, "caucus holds only its own tone");
    // m1 moved into the side room at 6 s: heard there from then on, no longer in main.
    let (after_main, after_caucus) = (slice(&main.audio, 6200, 7800), slice(&caucus.audio, 6200, 7800));
    assert!(p(after_main, 440.0) > 1e-3 && p(after_main, 660.0) < 1e-5, "m1 left main: 660 {:.2e}", p(after_main, 660.0));
    assert!(p(after_caucus, 660.0) > 1e-3 && p(after_caucus, 1000.0) > 1e-3 && p(after_caucus, 440.0) < 1e-5);

    // Session B: the same media and manifest, timeline zero 1 s later. A frame
    // at position p of B was recorded at the same instant as A's at p + 1 s, so
    // the band must match; A at 1.5 s and 2.5 s differ (one second apart).
    let b = d.path().join("b");
    make_session(&b, key.clone(), T0 + 1000, Some(&a), &session_a());
    std::thread::sleep(std::time::Duration::from_millis(1100));
    render(&b, &opts(&key), |_| {}).unwrap();
    let mb = decode(&b.join("review/main.mp4"));
    let band = 24usize;
    let same = band_diff(frame_at(&main, 2500), frame_at(&mb, 1500), band);
    let same2 = band_diff(frame_at(&main, 6500), frame_at(&mb, 5500), band);
    let differ = band_diff(frame_at(&main, 1500), frame_at(&main, 2500), band);
    let differ_b = band_diff(frame_at(&main, 1500), frame_at(&mb, 1500), band);
    eprintln!("band diffs: same {same:.1} {same2:.1}, differ {differ:.1} {differ_b:.1}");
    assert!(same < 1.5 && same2 < 1.5, "same recording time, same overlay: {same} {same2}");
    assert!(differ > 3.0 && differ_b > 3.0, "one second apart, different overlay: {differ} {differ_b}");
}

/// The binary with a clean `FENGQIAO_*` environment and `data_dir` = `dir/data`.
fn fengqiao(dir: &Path, args: &[&str]) -> Output {
    common::run_fengqiao(dir, args)
}

fn mp4s(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("review"))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".mp4")).collect())
        .unwrap_or_default()
}

fn status(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("review/render.json")).unwrap()).unwrap()
}

#[test]
fn cli_renders_and_refuses_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let key = Arc::new(EvidenceKey::load_or_generate(&d.path().join("data/keys")).unwrap());
    let s = d.path().join("data/sessions/s-7");
    make_session(&s, key, T0, None, &session_a());
    let sdir = s.to_str().unwrap();
    let small = ["--width", "320", "--height", "240", "--fps", "10"];
    let ok = fengqiao(d.path(), &[&["render", sdir][..], &small[..]].concat());
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    let st = status(&s);
    assert_eq!(st["state"], "done");
    for o in st["outputs"].as_array().unwrap() {
        let (path, sha) = (o["path"].as_str().unwrap(), o["sha256"].as_str().unwrap());
        assert!(out.contains(&format!("{sha}  {path}")), "{out}");
        assert_eq!(fengqiao_recorder::hash_file(&s.join(path)).unwrap().sha256_hex(), sha);
    }
    assert_eq!(mp4s(&s).len(), 2, "{:?}", mp4s(&s));

    // A segment altered after recording: the session no longer verifies, so
    // nothing is rendered and the earlier outputs are gone.
    let seg = s.join("tracks/a1-audio-0-00001.mkv");
    let mut b = std::fs::read(&seg).unwrap();
    let n = b.len() / 2;
    b[n] ^= 0x01;
    std::fs::write(&seg, b).unwrap();
    let bad = fengqiao(d.path(), &[&["render", sdir][..], &small[..]].concat());
    let err = String::from_utf8_lossy(&bad.stderr).into_owned();
    assert_ne!(bad.status.code(), Some(0), "{bad:?}");
    assert!(err.contains("does not verify") && err.contains("tracks/a1-audio-0-00001.mkv"), "{err}");
    assert!(mp4s(&s).is_empty(), "{:?}", mp4s(&s));
    let st = status(&s);
    assert_eq!(st["state"], "failed");
    assert!(st["error"].as_str().unwrap().contains("does not verify"), "{st}");
    assert_eq!(st["outputs"].as_array().unwrap().len(), 0);

    // A folder without a manifest, and one that does not exist.
    let empty = d.path().join("data/sessions/empty");
    std::fs::create_dir_all(&empty).unwrap();
    let none = fengqiao(d.path(), &["render", empty.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&none.stderr).into_owned();
    assert_ne!(none.status.code(), Some(0), "{none:?}");
    assert!(err.contains("no manifest"), "{err}");
    assert!(!empty.join("review").exists(), "a folder without a manifest is left untouched");
    let missing = fengqiao(d.path(), &["render", d.path().join("nowhere").to_str().unwrap()]);
    assert_ne!(missing.status.code(), Some(0), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no manifest"), "{missing:?}");
}

/// For `bench/render.sh` (not run by `make test`): writes a 4-participant
/// session of `RENDER_BENCH_SECONDS` (default 60) s, cameras 640×480 VP8 at
/// 15 fps and Opus tones, into `RENDER_BENCH_DIR/data/sessions/bench`, signed
/// with the key in `RENDER_BENCH_DIR/data/keys`.
#[test]
#[ignore = "bench/render.sh makes its session with it"]
fn make_bench_session() {
    let Ok(root) = std::env::var("RENDER_BENCH_DIR") else { panic!("set RENDER_BENCH_DIR") };
    let secs: u64 = std::env::var("RENDER_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let root = Path::new(&root);
    let key = Arc::new(EvidenceKey::load_or_generate(&root.join("data/keys")).unwrap());
    let ms = secs * 1000;
    let run = &[(0, ms)][..];
    let people = vec![("m1", "王调解员", "mediator"), ("a1", "张三", "applicant"), ("r1", "李四", "respondent"), ("g1", "赵律师", "agent")];
    let mut tracks = Vec::new();
    for (i, (pid, _, _)) in people.iter().enumerate() {
        let pattern = ["ball", "smpte", "snow", "pinwheel"][i];
        tracks.push(track(pid, TrackKind::Video, "main", 250 * i as u64, run, 0, pattern));
        tracks.push(track(pid, TrackKind::Audio, "main", 250 * i as u64, run, 440 + 220 * i as u32, ""));
    }
    let sess = Session { people, tracks, pause: None, moves: Vec::new(), dur_ms: ms + 750, camera: "video/x-raw,width=640,height=480" };
    make_session(&root.join("data/sessions/bench"), key, T0, None, &sess);
}

/// RTP packets of `desc` (ending in `appsink name=out`) with arrival times from
/// their RTP timestamps (`clock` Hz) plus `base`.
fn rtp_packets(desc: &str, clock: u64, base: std::time::Duration) -> Vec<(Vec<u8>, std::time::Duration)> {
    gst::init().unwrap();
    let p = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    sink.set_sync(false);
    p.set_state(gst::State::Playing).unwrap();
    let mut out = Vec::new();
    let mut ts0 = None;
    while let Ok(s) = sink.pull_sample() {
        let m = s.buffer().unwrap().map_readable().unwrap();
        let ts = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
        let d = u64::from(ts.wrapping_sub(*ts0.get_or_insert(ts)));
        out.push((m.to_vec(), base + std::time::Duration::from_nanos(d * 1_000_000_000 / clock)));
    }
    p.set_state(gst::State::Null).unwrap();
    out
}

/// The originals writer's own output, recorded in real time as the live
/// recorder does (packets pushed as they are due, `file_open`/`file` entries
/// written when its segment events arrive): its `splitmuxsink` segments each
/// restart their timestamps near 0. A track at offset 1 s whose packets stop
/// for 2 s during a pause that falls on a segment cut renders on the session
/// timeline, silent where it should be.
#[test]
fn renders_what_the_originals_writer_wrote_in_real_time() {
    use fengqiao_recorder::{Codec, SegmentEvent, TrackWriter, TrackWriterConfig};
    use std::time::{Duration, Instant};
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("s");
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let video = rtp_packets(
        "videotestsrc num-buffers=180 pattern=smpte ! video/x-raw,width=320,height=240,framerate=30/1 ! \
         vp8enc keyframe-max-dist=30 deadline=1 ! rtpvp8pay pt=96 mtu=1200 ! appsink name=out",
        90_000,
        Duration::ZERO,
    );
    let audio = rtp_packets(
        "audiotestsrc num-buffers=300 samplesperbuffer=960 freq=440 volume=0.5 ! audio/x-raw,rate=48000,channels=1 ! \
         opusenc frame-size=20 ! rtpopuspay pt=111 ! appsink name=out",
        48_000,
        Duration::ZERO,
    );
    // (due on the track's own time, track index, packet); the track starts 1 s into the timeline.
    let mut due: Vec<(Duration, usize, &Vec<u8>)> =
        video.iter().map(|(p, at)| (*at, 0, p)).chain(audio.iter().map(|(p, at)| (*at, 1, p))).collect();
    due.sort_by_key(|x| x.0);
    let (offset, pause) = (Duration::from_millis(1000), (Duration::from_millis(2000), Duration::from_millis(4000)));

    let hdr = SessionHeader { room: "room-8".into(), case_id: None, session_id: "s-8".into() };
    let mut w = ManifestWriter::create(&dir, key.clone(), hdr, Timestamp::now()).unwrap();
    w.append(Timestamp::now(), None, Body::Participant { pid: "a1".into(), name: "张三".into(), role: "applicant".into() }).unwrap();
    let specs = [("tracks/a1-video-0", Codec::Vp8, 96u8, TrackKind::Video, 90_000u32), ("tracks/a1-audio-0", Codec::Opus, 111, TrackKind::Audio, 48_000)];
    let mut writers: Vec<TrackWriter> = specs
        .iter()
        .map(|(stem, codec, pt, _, _)| {
            let mut cfg = TrackWriterConfig::new(&dir, stem, *codec, *pt);
            cfg.segment = Duration::from_secs(2);
            TrackWriter::start(cfg).unwrap()
        })
        .collect();
    let t0 = Timestamp::now();
    let start = Instant::now();
    w.append(t0, Some("m1"), Body::Start {}).unwrap();
    let record = |w: &mut ManifestWriter, i: usize, evs: Vec<SegmentEvent>| {
        for e in evs {
            match e {
                SegmentEvent::Opened(p) => w.open_file(Timestamp::now(), &p, Some("a1"), specs[i].3, Some(specs[i].1.name())),
                SegmentEvent::Closed(p) => w.close_file(Timestamp::now(), &p, FileStatus::Closed),
            }
            .unwrap();
        }
    };
    let (mut placed, mut paused, mut resumed) = ([false; 2], false, false);
    for (at, i, pkt) in &due {
        let when = offset + *at;
        if let Some(wait) = when.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        if *at >= pause.0 && !paused {
            w.append(Timestamp::now(), Some("m1"), Body::Pause { reason: "休息".into() }).unwrap();
            paused = true;
        }
        if *at >= pause.1 && !resumed {
            w.append(Timestamp::now(), Some("m1"), Body::Resume {}).unwrap();
            resumed = true;
        }
        if *at >= pause.0 && *at < pause.1 {
            continue;
        }
        writers[*i].push_rtp(pkt);
        if !placed[*i] {
            placed[*i] = true;
            let now = Timestamp::now();
            let (stem, codec, _, kind, clock) = specs[*i];
            let body = Body::Track {
                track: stem.into(),
                pid: "a1".into(),
                kind,
                codec: codec.name().into(),
                room: "main".into(),
                clock_rate: clock,
                rtp_ts: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
                offset_ms: (now.unix_millis() - t0.unix_millis()) as u64,
                sync: "arrival".into(),
            };
            w.append(now, None, body).unwrap();
        }
        for (j, tw) in writers.iter_mut().enumerate() {
            let evs = tw.poll_events().unwrap();
            record(&mut w, j, evs);
        }
    }
    for (j, tw) in writers.into_iter().enumerate() {
        let evs = tw.finish(Duration::from_secs(60)).unwrap();
        record(&mut w, j, evs);
    }
    let end = t0.unix_millis() + 7000;
    w.append(Timestamp::from_unix_millis(end).unwrap(), Some("m1"), Body::Stop {}).unwrap();
    w.finish(Timestamp::from_unix_millis(end).unwrap()).unwrap();
    let segs = std::fs::read_dir(dir.join("tracks")).unwrap().count();
    assert!(segs >= 4, "{segs} segments");

    render(&dir, &opts(&key), |_| {}).unwrap();
    let m = decode(&dir.join("review/main.mp4"));
    let (v_ms, a_ms) = (m.frame_end_ns / 1_000_000, m.audio.len() as u64 / 48);
    assert!(v_ms.abs_diff(7000) <= 100 && a_ms.abs_diff(7000) <= 100, "video {v_ms} ms, audio {a_ms} ms");
    let tone = |from, to| goertzel(slice(&m.audio, from, to), 440.0);
    let (before, on, pause, after) = (tone(100, 800), tone(1300, 2800), tone(3300, 4700), tone(5300, 6800));
    eprintln!("440 Hz: before {before:.2e} on {on:.2e} pause {pause:.2e} after {after:.2e}");
    assert!(before < 1e-5 && pause < 1e-5, "silence before the track's offset and in the pause");
    assert!(on > 1e-3 && after > 1e-3, "the tone where it was recorded");
}
