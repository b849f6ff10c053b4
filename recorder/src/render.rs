//! Review video (issue 3, "Outputs" 4): `fengqiao render <session-dir>`.
//!
//! From a finished, verified session folder (`docs/interfaces.md`) this renders
//! one H.264 + AAC MP4 (faststart) per room: `review/main.mp4` for the joint
//! room and `review/caucus-<side-room>.mp4` for each side room (背靠背, marked
//! confidential). Each is a grid of the room's participants with name labels,
//! their audio mixed, and a burnt-in band with the case number (or room), the
//! session id and the **recording** wall-clock time in Asia/Shanghai of every
//! frame: timeline zero (the first `start` entry's `t`) plus the frame's
//! position on the session timeline (SPC Provisions on hearing audio-video
//! recording, 2017). Status and progress go to `review/render.json`.
//!
//! ```text
//! per participant and kind, a feeder thread:
//!   segment 0..n: filesrc → decodebin → convert/scale → appsink
//!   → timestamps moved onto the session timeline → appsrc ┐
//! videotestsrc (black, exact length) → compositor ← appsrc…┘→ textoverlay (band, names)
//!   → x264enc → h264parse ┐
//! appsrc (silence, exact length), appsrc… → audiomixer → voaacenc ┴→ mp4mux faststart → .part → rename
//! ```
//!
//! Placement: a track's first recorded packet lies `offset_ms` after timeline
//! zero (its `track` manifest entry); later buffers follow by their Matroska
//! timestamps over the segments `<track>-NNNNN.mkv` in order, a segment whose
//! timestamps restart being joined on (or anchored by its `file_open` time
//! after a pause at the cut, see `Placer`). A pause leaves a gap: the tile
//! keeps its last frame or goes black, the band says 暂停 (paused) and the
//! audio is silence, so the MP4's timeline is the session timeline. Audio is placed by
//! timestamps with silence filling any gap over 10 ms (and overlaps over 10 ms
//! cut), so drift never accumulates. A participant's media counts for a room
//! from the track's `room` and the participant's `moved` entries.

use crate::hash::hash_file;
use crate::keys::PublicKey;
use crate::manifest::{parse_line, Body, RawManifest, Timestamp, TrackKind, MANIFEST_FILE};
use crate::RecorderError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The render status file inside a session folder.
pub const RENDER_JSON: &str = "review/render.json";
/// Output audio sample rate, Hz (mono, mixed).
const RATE: u64 = 48_000;
/// Audio placement tolerance in samples (10 ms): smaller gaps/overlaps are ignored.
const SLACK: u64 = 480;
const NS: u64 = 1_000_000_000;
/// Asia/Shanghai is UTC+8 all year (no daylight saving since 1991).
const SHANGHAI_OFFSET_S: i32 = 8 * 3600;

/// Settings of a render job.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The trusted evidence public key: the session must verify under it
    /// (`docs/evidence.md` § Verifying) before anything is rendered.
    pub public_key: PublicKey,
    /// Output width in pixels (even). Default 1280.
    pub width: u32,
    /// Output height in pixels (even). Default 720.
    pub height: u32,
    /// Output frame rate, frames per second. Default 25.
    pub fps: u32,
    /// H.264 bit rate, kbit/s. Default 2000.
    pub video_kbps: u32,
    /// AAC bit rate, bit/s. Default 96000.
    pub audio_bps: u32,
    /// x264 speed preset (`ultrafast` … `veryslow`). Default `veryfast`.
    pub speed_preset: String,
}

/// x264 speed presets accepted in [`RenderOptions::speed_preset`].
pub const SPEED_PRESETS: [&str; 10] =
    ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo"];

impl RenderOptions {
    /// Checks the settings: size 160×120 … 3840×2160, 1–60 fps, bit rates
    /// 100–50000 kbit/s (video) and 16000–320000 bit/s (audio), a known preset.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] naming the setting.
    pub fn check(&self) -> Result<(), RecorderError> {
        let bad = |what: String| Err(RecorderError::Invalid(what));
        if !(160..=3840).contains(&self.width) || !(120..=2160).contains(&self.height) {
            return bad(format!("output size {}×{}: must be 160×120 … 3840×2160", self.width, self.height));
        }
        if !(1..=60).contains(&self.fps) {
            return bad(format!("fps {}: must be 1–60", self.fps));
        }
        if !(100..=50_000).contains(&self.video_kbps) || !(16_000..=320_000).contains(&self.audio_bps) {
            return bad(format!("bit rates {} kbit/s, {} bit/s: out of range", self.video_kbps, self.audio_bps));
        }
        if !SPEED_PRESETS.contains(&self.speed_preset.as_str()) {
            return bad(format!("speed preset {:?}: one of {}", self.speed_preset, SPEED_PRESETS.join(", ")));
        }
        Ok(())
    }

    /// 1280×720 at 25 fps, 2000 kbit/s H.264 (`veryfast`), 96 kbit/s AAC.
    pub fn new(public_key: PublicKey) -> Self {
        Self {
            public_key,
            width: 1280,
            height: 720,
            fps: 25,
            video_kbps: 2000,
            audio_bps: 96_000,
            speed_preset: "veryfast".into(),
        }
    }
}

/// One rendered MP4, as listed in `review/render.json` `outputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenderedFile {
    /// Path relative to the session folder, e.g. `review/main.mp4`.
    pub path: String,
    /// The room shown: `main` or a side room.
    pub room: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file, 64 lower-case hex digits.
    pub sha256: String,
}

/// `review/render.json`.
#[derive(Serialize)]
struct Status<'a> {
    state: &'a str,
    percent: u8,
    outputs: &'a [RenderedFile],
    manifest_head: Option<String>,
    error: Option<String>,
}

fn write_status(dir: &Path, st: &Status<'_>) -> Result<(), RecorderError> {
    let path = dir.join(RENDER_JSON);
    let tmp = dir.join("review/render.json.tmp");
    let mut bytes = serde_json::to_vec(st).unwrap_or_default();
    bytes.push(b'\n');
    std::fs::write(&tmp, &bytes).map_err(RecorderError::io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(RecorderError::io(&path))
}

/// The overlay's time text for a frame at `pos_ns` on the session timeline
/// that starts at `t0` (UTC): the recording instant `t0 + pos` in Asia/Shanghai
/// (UTC+8), to the second, e.g. `2026-11-30 00:00:02 北京时间`.
pub fn overlay_time_text(t0: Timestamp, pos_ns: u64) -> String {
    let ms = t0.unix_millis() + i64::try_from(pos_ns / 1_000_000).unwrap_or(0);
    let Some(tz) = chrono::FixedOffset::east_opt(SHANGHAI_OFFSET_S) else { return String::new() };
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S 北京时间").to_string())
        .unwrap_or_default()
}

#[derive(Debug, Clone)]
struct Person {
    pid: String,
    name: String,
    role: String,
}

#[derive(Debug, Clone)]
struct TrackPlan {
    pid: String,
    kind: TrackKind,
    offset_ms: u64,
    /// Segment files in order, absolute.
    segments: Vec<PathBuf>,
    /// Timeline position (ms) of each segment's `file_open` entry, if any.
    opens: Vec<Option<u64>>,
    /// (from position ms, room): the track's room over time.
    rooms: Vec<(u64, String)>,
}

impl TrackPlan {
    fn room_at(&self, pos_ms: u64) -> &str {
        let mut r = self.rooms[0].1.as_str();
        for (from, room) in &self.rooms {
            if *from <= pos_ms {
                r = room;
            }
        }
        r
    }
    fn ever_in(&self, room: &str) -> bool {
        self.rooms.iter().any(|(_, r)| r == room)
    }
}

/// What the manifest says a render needs.
#[derive(Debug, Clone)]
struct Plan {
    session_id: String,
    room: String,
    case_id: Option<String>,
    t0: Timestamp,
    duration_ms: u64,
    /// Gaps (pause → resume, stop → start) on the timeline, ms.
    gaps: Vec<(u64, u64)>,
    people: Vec<Person>,
    tracks: Vec<TrackPlan>,
    /// `main` first, then side rooms in order of appearance.
    rooms: Vec<String>,
    head: String,
}

fn bad(dir: &Path, reason: impl Into<String>) -> RecorderError {
    RecorderError::BadManifest { path: dir.join(MANIFEST_FILE), reason: reason.into() }
}

fn plan(dir: &Path, key: &PublicKey) -> Result<Plan, RecorderError> {
    let mpath = dir.join(MANIFEST_FILE);
    if !mpath.is_file() {
        return Err(bad(dir, "no manifest: not a recorded session folder"));
    }
    let report = crate::verify(dir, key);
    if !report.is_ok() {
        let why: Vec<String> = report.problems.iter().map(|p| format!("{}: {}", p.location, p.message)).collect();
        return Err(bad(dir, format!("the session does not verify, refusing to render: {}", why.join("; "))));
    }
    let data = std::fs::read(&mpath).map_err(RecorderError::io(&mpath))?;
    let raw = RawManifest::split(&data);
    let mut entries = Vec::with_capacity(raw.lines.len());
    for (i, l) in raw.lines.iter().enumerate() {
        entries.push(parse_line(l, i).map_err(|r| bad(dir, format!("line {}: {r}", l.line_no)))?);
    }
    let head = raw.head_after(raw.lines.len()).to_hex();
    let (mut session_id, mut room, mut case_id) = (String::new(), String::new(), None);
    let mut t0: Option<Timestamp> = None;
    let mut end: Option<Timestamp> = None;
    let mut gap_from: Option<Timestamp> = None;
    let mut gaps_t = Vec::new();
    let mut people = Vec::new();
    let mut files = Vec::new();
    let mut opened: std::collections::HashMap<String, Timestamp> = std::collections::HashMap::new();
    let mut tracks_raw = Vec::new();
    let mut moves = Vec::new();
    for e in &entries {
        match &e.body {
            Body::Session { room: r, case_id: c, session_id: s, .. } => {
                session_id = s.clone();
                room = r.clone();
                case_id = c.clone();
            }
            Body::Participant { pid, name, role } if !people.iter().any(|p: &Person| &p.pid == pid) => {
                people.push(Person { pid: pid.clone(), name: name.clone(), role: role.clone() });
            }
            Body::Start {} | Body::Resume {} => {
                if t0.is_none() {
                    t0 = Some(e.t);
                } else if let Some(f) = gap_from.take() {
                    gaps_t.push((f, e.t));
                }
                end = None;
            }
            Body::Pause { .. } => {
                gap_from.get_or_insert(e.t);
            }
            Body::Stop {} | Body::Interrupted { .. } if t0.is_some() => {
                gap_from.get_or_insert(e.t);
                end = Some(e.t);
            }
            Body::File { path, .. } => files.push(path.clone()),
            Body::FileOpen { path, .. } => {
                opened.insert(path.clone(), e.t);
            }
            Body::Track { track, pid, kind, room, offset_ms, .. } => {
                tracks_raw.push((track.clone(), pid.clone(), *kind, room.clone(), *offset_ms));
            }
            Body::Moved { pid, room } => moves.push((e.t, pid.clone(), room.clone())),
            _ => {}
        }
    }
    let t0 = t0.ok_or_else(|| bad(dir, "no `start` entry: nothing was recorded"))?;
    let end = end.ok_or_else(|| bad(dir, "recording never stopped (no `stop` or `interrupted` after the last start)"))?;
    let pos = |t: Timestamp| u64::try_from(t.unix_millis() - t0.unix_millis()).unwrap_or(0);
    let duration_ms = pos(end);
    if duration_ms == 0 {
        return Err(bad(dir, "the session timeline is empty (stop at start)"));
    }
    let gaps = gaps_t.iter().map(|(a, b)| (pos(*a), pos(*b))).chain(gap_from.filter(|f| *f < end).map(|f| (pos(f), duration_ms))).collect();
    let mut rooms = vec!["main".to_string()];
    let mut tracks = Vec::new();
    for (stem, pid, kind, troom, offset_ms) in tracks_raw {
        let prefix = format!("{stem}-");
        let mut segs: Vec<&String> = files
            .iter()
            .filter(|p| {
                p.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix(".mkv"))
                    .is_some_and(|n| n.len() == 5 && n.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        segs.sort();
        segs.dedup();
        let mut trooms = vec![(offset_ms, troom)];
        for (t, mpid, mroom) in &moves {
            if *mpid == pid && pos(*t) > offset_ms {
                trooms.push((pos(*t), mroom.clone()));
            }
        }
        for (_, r) in &trooms {
            if !rooms.contains(r) {
                rooms.push(r.clone());
            }
        }
        if segs.is_empty() {
            continue;
        }
        let opens = segs.iter().map(|p| opened.get(*p).filter(|t| **t >= t0).map(|t| pos(*t))).collect();
        tracks.push(TrackPlan { pid, kind, offset_ms, segments: segs.iter().map(|p| dir.join(p)).collect(), opens, rooms: trooms });
    }
    for t in &tracks {
        if !people.iter().any(|p| p.pid == t.pid) {
            people.push(Person { pid: t.pid.clone(), name: t.pid.clone(), role: String::new() });
        }
    }
    Ok(Plan { session_id, room, case_id, t0, duration_ms, gaps, people, tracks, rooms, head })
}

/// The output file name of `room`: `main.mp4` or `caucus-<room>.mp4` with
/// anything outside `[A-Za-z0-9._-]` mapped to `_`.
pub fn output_name(room: &str) -> String {
    if room == "main" {
        "main.mp4".into()
    } else {
        let safe: String = room.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
        format!("caucus-{safe}.mp4")
    }
}

fn role_zh(role: &str) -> &str {
    match role {
        "mediator" => "调解员",
        "applicant" => "申请人",
        "respondent" => "被申请人",
        "agent" => "代理人",
        "observer" => "列席",
        other => other,
    }
}

/// A [`RecorderError::Media`] naming the step.
fn pipeline_err(what: &str, e: impl std::fmt::Display) -> RecorderError {
    RecorderError::Media(format!("{what}: {e}"))
}

fn launch(desc: &str) -> Result<gst::Pipeline, RecorderError> {
    gst::parse::launch(desc)
        .map_err(|e| pipeline_err("building the pipeline (is a GStreamer plugin missing? see scripts/deps.sh)", e))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecorderError::Media("not a pipeline".into()))
}

/// Shared between the feeders and the job.
struct Shared {
    failed: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn fail(&self, msg: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(msg);
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Places one track's buffers on the session timeline, segment by segment.
///
/// Segment 0's first buffer goes to `offset_ms`. A later segment whose
/// timestamps continue the previous one's (offline `splitmuxsink`) keeps them:
/// position = offset + (pts − first pts of segment 0). A segment whose
/// timestamps restart (the live originals writer's segments each start near 0)
/// follows the previous segment's end, or, if its `file_open` entry lies more
/// than [`ANCHOR_GAP_MS`] later than that on the timeline (a pause at the
/// cut), at offset + (its `file_open` − segment 0's `file_open`): the live
/// recorder writes each `file_open` when the segment's first packet arrives
/// (`docs/evidence.md` § Originals), while segment 0 keeps the `track`
/// entry's sender-report offset.
struct Placer {
    offset_ns: u64,
    opens: Vec<Option<u64>>,
    seg: usize,
    first0: u64,
    first_k: Option<u64>,
    base: u64,
    raw_end: u64,
    pos_end: u64,
}

/// A restarted segment is anchored by its `file_open` time only when that is
/// this much later than where concatenation would put it (ms).
const ANCHOR_GAP_MS: u64 = 250;

impl Placer {
    fn new(t: &TrackPlan) -> Self {
        Self { offset_ns: t.offset_ms * 1_000_000, opens: t.opens.clone(), seg: 0, first0: 0, first_k: None, base: 0, raw_end: 0, pos_end: 0 }
    }
    fn start_segment(&mut self, k: usize) {
        self.seg = k;
        self.first_k = None;
    }
    /// The timeline position (ns) of a buffer with timestamp `pts` and duration `dur`.
    fn place(&mut self, pts: u64, dur: u64) -> u64 {
        let first = match self.first_k {
            Some(f) => f,
            None => {
                self.first_k = Some(pts);
                if self.seg == 0 {
                    self.first0 = pts;
                    self.base = self.offset_ns;
                } else if pts + 1_000_000 >= self.raw_end && pts >= self.first0 {
                    self.base = self.offset_ns + (pts - self.first0);
                } else {
                    let mut b = self.pos_end;
                    if let (Some(Some(o0)), Some(Some(ok))) = (self.opens.first(), self.opens.get(self.seg)) {
                        let anchor = self.offset_ns + ok.saturating_sub(*o0) * 1_000_000;
                        if anchor > b + ANCHOR_GAP_MS * 1_000_000 {
                            b = anchor;
                        }
                    }
                    self.base = b;
                }
                pts
            }
        };
        let pos = self.base + pts.saturating_sub(first);
        self.raw_end = self.raw_end.max(pts + dur);
        self.pos_end = self.pos_end.max(pos + dur);
        pos
    }
}

/// Decodes one segment and hands every buffer (with the caps-conforming data)
/// to `each`, which returns false to stop early.
fn decode_segment(path: &Path, tail: &str, shared: &Shared, mut each: impl FnMut(gst::Buffer) -> bool) -> Result<(), RecorderError> {
    let p = launch(&format!("filesrc name=src ! decodebin ! {tail} ! appsink name=out sync=false max-buffers=8"))?;
    let src = p.by_name("src").ok_or_else(|| RecorderError::Media("no src".into()))?;
    src.set_property("location", path.to_string_lossy().to_string());
    let sink = p
        .by_name("out")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| RecorderError::Media("no appsink".into()))?;
    p.set_state(gst::State::Playing).map_err(|e| pipeline_err(&format!("decoding {}", path.display()), e))?;
    let mut result = Ok(());
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) {
            Some(s) => {
                if let Some(b) = s.buffer_owned() {
                    if !each(b) {
                        break;
                    }
                }
            }
            None => {
                if sink.is_eos() {
                    break;
                }
                if let Some(bus) = p.bus() {
                    if let Some(m) = bus.pop_filtered(&[gst::MessageType::Error]) {
                        if let gst::MessageView::Error(e) = m.view() {
                            result = Err(RecorderError::Media(format!("decoding {}: {} ({:?})", path.display(), e.error(), e.debug())));
                        }
                        break;
                    }
                }
            }
        }
    }
    let _ = p.set_state(gst::State::Null);
    result
}

/// Feeds one participant's video tracks for `room` into `src`, on the timeline.
fn feed_video(tracks: Vec<TrackPlan>, room: String, dur_ns: u64, tile: (u32, u32), src: gst_app::AppSrc, shared: Arc<Shared>) {
    let tail = format!(
        "videoconvert ! videoscale add-borders=true ! video/x-raw,format=I420,width={},height={},pixel-aspect-ratio=1/1",
        tile.0, tile.1
    );
    let black = {
        let (w, h) = (tile.0 as usize, tile.1 as usize);
        let mut v = vec![16u8; w * h];
        v.resize(w * h + 2 * (w / 2) * (h / 2), 128);
        gst::Buffer::from_mut_slice(v)
    };
    let mut last: Option<u64> = None;
    let mut showing = false;
    let mut r = Ok(());
    'tracks: for t in &tracks {
        let mut placer = Placer::new(t);
        for (k, seg) in t.segments.iter().enumerate() {
            placer.start_segment(k);
            let mut out_of_time = false;
            let res = decode_segment(seg, &tail, &shared, |b| {
                let Some(pts) = b.pts().map(|p| p.nseconds()) else { return true };
                let pos = placer.place(pts, b.duration().map_or(0, |d| d.nseconds()));
                if pos >= dur_ns {
                    out_of_time = true;
                    return false;
                }
                if last.is_some_and(|l| pos <= l) {
                    return true;
                }
                let mut nb = if t.room_at(pos / 1_000_000) == room {
                    showing = true;
                    b.copy()
                } else if showing {
                    showing = false;
                    black.copy()
                } else {
                    return true;
                };
                if let Some(m) = nb.get_mut() {
                    m.set_pts(gst::ClockTime::from_nseconds(pos));
                    m.set_dts(gst::ClockTime::NONE);
                    if m.duration().is_none() {
                        m.set_duration(gst::ClockTime::from_mseconds(100));
                    }
                }
                last = Some(pos);
                src.push_buffer(nb).is_ok()
            });
            if let Err(e) = res {
                r = Err(e);
                break 'tracks;
            }
            if out_of_time {
                continue 'tracks;
            }
        }
    }
    if let Err(e) = r {
        shared.fail(e.to_string());
    }
    let _ = src.end_of_stream();
}

/// Feeds one participant's audio for `room` (or silence when `tracks` is
/// empty) into `src`: S16LE mono 48 kHz, contiguous from 0 to `dur_ns`.
fn feed_audio(tracks: Vec<TrackPlan>, room: String, dur_ns: u64, src: gst_app::AppSrc, shared: Arc<Shared>) {
    let total = dur_ns * RATE / NS;
    let mut cursor: u64 = 0;
    let push = |data: Vec<u8>, at: u64| -> bool {
        let n = (data.len() / 2) as u64;
        let mut b = gst::Buffer::from_mut_slice(data);
        if let Some(m) = b.get_mut() {
            m.set_pts(gst::ClockTime::from_nseconds(at * NS / RATE));
            m.set_duration(gst::ClockTime::from_nseconds((at + n) * NS / RATE - at * NS / RATE));
        }
        src.push_buffer(b).is_ok()
    };
    let silence_to = |cursor: &mut u64, to: u64| -> bool {
        while *cursor < to {
            let n = (to - *cursor).min(4800);
            if !push(vec![0u8; (n * 2) as usize], *cursor) {
                return false;
            }
            *cursor += n;
        }
        true
    };
    let mut r = Ok(());
    let tail = "audioconvert ! audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved";
    'tracks: for t in &tracks {
        let mut placer = Placer::new(t);
        for (k, seg) in t.segments.iter().enumerate() {
            placer.start_segment(k);
            let mut done = false;
            let res = decode_segment(seg, tail, &shared, |b| {
                let Some(pts) = b.pts().map(|p| p.nseconds()) else { return true };
                let dur = b.duration().map_or_else(|| (b.size() as u64 / 2) * NS / RATE, |d| d.nseconds());
                let pos_ns = placer.place(pts, dur);
                let s = pos_ns * RATE / NS;
                if s >= total {
                    done = true;
                    return false;
                }
                let Ok(map) = b.map_readable() else { return true };
                let mut data = map.as_slice().to_vec();
                drop(map);
                data.truncate(data.len() & !1);
                if s > cursor + SLACK {
                    if !silence_to(&mut cursor, s) {
                        return false;
                    }
                } else if s + SLACK < cursor {
                    let cut = ((cursor - s) * 2) as usize;
                    if cut >= data.len() {
                        return true;
                    }
                    data.drain(..cut);
                }
                let room_ok = t.room_at(pos_ns / 1_000_000) == room;
                if !room_ok {
                    data.iter_mut().for_each(|x| *x = 0);
                }
                let n = ((data.len() / 2) as u64).min(total - cursor);
                data.truncate((n * 2) as usize);
                if n == 0 {
                    return true;
                }
                if !push(data, cursor) {
                    return false;
                }
                cursor += n;
                true
            });
            if let Err(e) = res {
                r = Err(e);
                break 'tracks;
            }
            if done {
                continue 'tracks;
            }
        }
    }
    match r {
        Err(e) => shared.fail(e.to_string()),
        Ok(()) => {
            silence_to(&mut cursor, total);
        }
    }
    let _ = src.end_of_stream();
}

fn appsrc(p: &gst::Pipeline, name: &str, caps: gst::Caps) -> Result<gst_app::AppSrc, RecorderError> {
    let s = p
        .by_name(name)
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| RecorderError::Media(format!("no appsrc {name}")))?;
    s.set_caps(Some(&caps));
    s.set_format(gst::Format::Time);
    s.set_is_live(false);
    s.set_block(true);
    s.set_max_bytes(4 << 20);
    Ok(s)
}

/// Grid: `n` tiles under a band of `band` px in a `w`×`h` frame: (x, y, tw, th) each.
fn grid(n: usize, w: u32, h: u32, band: u32) -> Vec<(u32, u32, u32, u32)> {
    let n = n.max(1);
    let cols = (1..=n).find(|c| c * c >= n).unwrap_or(1) as u32;
    let rows = (n as u32).div_ceil(cols);
    let tw = (w / cols) & !1;
    let th = ((h - band) / rows) & !1;
    (0..n as u32).map(|i| ((i % cols) * tw, band + (i / cols) * th, tw, th)).collect()
}

/// Renders one room to `out` (a `.part` path). `pos` is set to the timeline
/// position in ns of each frame as it reaches the overlay (for progress).
fn render_room(plan: &Plan, room: &str, opts: &RenderOptions, out: &Path, pos: &Arc<AtomicU64>) -> Result<(), RecorderError> {
    let (w, h, fps) = (opts.width & !1, opts.height & !1, opts.fps);
    let dur_ns = plan.duration_ms * 1_000_000;
    let frames = (plan.duration_ms * u64::from(fps)).div_ceil(1000);
    let people: Vec<&Person> =
        plan.people.iter().filter(|p| plan.tracks.iter().any(|t| t.pid == p.pid && t.ever_in(room))).collect();
    let band = (h / 10).max(32) & !1;
    let cells = grid(people.len(), w, h, band);
    let font = |px: u32| format!("Noto Sans CJK SC, WenQuanYi Micro Hei, sans {}px", px.max(6));
    let mut desc = String::from("compositor name=mix background=black");
    let mut vids = Vec::new();
    for (i, p) in people.iter().enumerate() {
        if plan.tracks.iter().any(|t| t.pid == p.pid && t.kind == TrackKind::Video && t.ever_in(room)) {
            let (x, y, tw, th) = cells[i];
            let k = vids.len() + 1;
            desc += &format!(" sink_{k}::xpos={x} sink_{k}::ypos={y} sink_{k}::width={tw} sink_{k}::height={th}");
            vids.push((i, k));
        }
    }
    desc += &format!(
        " ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
         ! textoverlay name=info valignment=top halignment=left xpad=8 ypad=2 line-alignment=left auto-resize=false \
         wait-text=false font-desc=\"{}\"",
        // Two lines in the band: a CJK line is ≈ 1.45 em tall, so 0.3 × band per line
        // keeps both (≈ 0.87 × band) clear of the name labels under the band. Sizes
        // are in output pixels (`auto-resize=false`: textoverlay would otherwise scale
        // them by the frame width ÷ 640).
        font(band * 3 / 10)
    );
    for (i, _) in people.iter().enumerate() {
        desc += &format!(
            " ! textoverlay name=label{i} valignment=top halignment=left xpad=0 ypad=0 shaded-background=true auto-resize=false \
             deltax={} deltay={} font-desc=\"{}\"",
            cells[i].0 + 4,
            cells[i].1 + 4,
            font((cells[i].3 / 12).clamp(10, 28))
        );
    }
    desc += &format!(
        " ! x264enc speed-preset={} bitrate={} key-int-max={} bframes=0 ! video/x-h264,profile=high ! h264parse \
         ! queue max-size-time=0 max-size-bytes=0 max-size-buffers=200 ! mp4mux name=mux faststart=true ! filesink name=file",
        opts.speed_preset,
        opts.video_kbps,
        fps * 2
    );
    desc += &format!(
        " videotestsrc pattern=black num-buffers={frames} ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 ! mix.sink_0"
    );
    for (_, k) in &vids {
        desc += &format!(" appsrc name=v{k} ! mix.sink_{k}");
    }
    desc += " audiomixer name=amix ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! audioconvert";
    desc += &format!(
        " ! voaacenc bitrate={} ! aacparse ! queue max-size-time=0 max-size-bytes=0 max-size-buffers=400 ! mux.",
        opts.audio_bps
    );
    let auds: Vec<usize> = people
        .iter()
        .enumerate()
        .filter(|(_, p)| plan.tracks.iter().any(|t| t.pid == p.pid && t.kind == TrackKind::Audio && t.ever_in(room)))
        .map(|(i, _)| i)
        .collect();
    desc += " appsrc name=a_silence ! amix.";
    for i in &auds {
        desc += &format!(" appsrc name=a{i} ! amix.");
    }
    let p = launch(&desc)?;
    let get = |n: &str| p.by_name(n).ok_or_else(|| RecorderError::Media(format!("no element {n}")));
    get("file")?.set_property("location", out.to_string_lossy().to_string());
    for (i, person) in people.iter().enumerate() {
        let role = role_zh(&person.role);
        let text = if role.is_empty() { person.name.clone() } else { format!("{}（{role}）", person.name) };
        get(&format!("label{i}"))?.set_property("text", text);
    }
    // The band: case or room, session id, confidentiality, recording time, pause.
    let mut line1 = match &plan.case_id {
        Some(c) => format!("{c}  房间 {}", plan.room),
        None => format!("房间 {}", plan.room),
    };
    line1 += &format!("  会话 {}", plan.session_id);
    if room != "main" {
        line1 = format!("【保密·背靠背】分组室 {room}  {line1}");
    }
    let info = get("info")?;
    let (t0, gaps) = (plan.t0, plan.gaps.clone());
    let text_for = move |pos_ns: u64| {
        let ms = pos_ns / 1_000_000;
        let paused = gaps.iter().any(|(a, b)| *a <= ms && ms < *b);
        format!("{line1}\n{}{}", overlay_time_text(t0, pos_ns), if paused { "  【暂停 PAUSED】" } else { "" })
    };
    info.set_property("text", text_for(0));
    let sinkpad = info.static_pad("video_sink").ok_or_else(|| RecorderError::Media("textoverlay has no video_sink".into()))?;
    {
        let info = info.clone();
        let pos = pos.clone();
        let last_text = Mutex::new(String::new());
        sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, pi| {
            if let Some(gst::PadProbeData::Buffer(b)) = &pi.data {
                if let Some(pts) = b.pts() {
                    let t = text_for(pts.nseconds());
                    let mut last = last_text.lock().unwrap_or_else(|p| p.into_inner());
                    if *last != t {
                        info.set_property("text", &t);
                        *last = t;
                    }
                    pos.store(pts.nseconds(), Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    }
    let shared = Arc::new(Shared { failed: Mutex::new(None), stop: AtomicBool::new(false) });
    let mut threads = Vec::new();
    let acaps = gst::Caps::builder("audio/x-raw")
        .field("format", "S16LE")
        .field("rate", 48_000i32)
        .field("channels", 1i32)
        .field("layout", "interleaved")
        .build();
    let silence = appsrc(&p, "a_silence", acaps.clone())?;
    for (i, k) in &vids {
        let (_, _, tw, th) = cells[*i];
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", tw as i32)
            .field("height", th as i32)
            .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
            .field("framerate", gst::Fraction::new(0, 1))
            .build();
        let src = appsrc(&p, &format!("v{k}"), caps)?;
        let mut ts: Vec<TrackPlan> =
            plan.tracks.iter().filter(|t| t.pid == people[*i].pid && t.kind == TrackKind::Video).cloned().collect();
        ts.sort_by_key(|t| t.offset_ms);
        let (sh, room) = (shared.clone(), room.to_owned());
        threads.push(std::thread::spawn(move || feed_video(ts, room, dur_ns, (tw, th), src, sh)));
    }
    for i in &auds {
        let src = appsrc(&p, &format!("a{i}"), acaps.clone())?;
        let mut ts: Vec<TrackPlan> =
            plan.tracks.iter().filter(|t| t.pid == people[*i].pid && t.kind == TrackKind::Audio).cloned().collect();
        ts.sort_by_key(|t| t.offset_ms);
        let (sh, room) = (shared.clone(), room.to_owned());
        threads.push(std::thread::spawn(move || feed_audio(ts, room, dur_ns, src, sh)));
    }
    {
        let (sh, room) = (shared.clone(), room.to_owned());
        threads.push(std::thread::spawn(move || feed_audio(Vec::new(), room, dur_ns, silence, sh)));
    }
    let result = run_to_eos(&p, &shared);
    shared.stop.store(true, Ordering::SeqCst);
    let _ = p.set_state(gst::State::Null);
    for t in threads {
        let _ = t.join();
    }
    result?;
    if let Some(e) = shared.failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(RecorderError::Media(e));
    }
    Ok(())
}

fn run_to_eos(p: &gst::Pipeline, shared: &Shared) -> Result<(), RecorderError> {
    p.set_state(gst::State::Playing).map_err(|e| pipeline_err("starting the render pipeline", e))?;
    let bus = p.bus().ok_or_else(|| RecorderError::Media("no bus".into()))?;
    loop {
        if let Some(e) = shared.failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(RecorderError::Media(e));
        }
        let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else { continue };
        match m.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                let src = m.src().map(|s| s.name().to_string()).unwrap_or_default();
                return Err(RecorderError::Media(format!("{src}: {} ({:?})", e.error(), e.debug())));
            }
            _ => {}
        }
    }
}

/// Renders the review videos of the session in `session_dir`.
///
/// Checks the session first ([`crate::verify`] under `opts.public_key`): a
/// folder without `manifest.jsonl`, a manifest or file that does not verify,
/// or one with no `start` or no `stop`/`interrupted` is refused before any
/// output is written. Then writes `review/main.mp4` and one
/// `review/caucus-<room>.mp4` per side room (each first as `<name>.part`,
/// renamed when complete; stale outputs from an earlier run are removed at the
/// start), and `review/render.json` (`state`, `percent`, `outputs` with size
/// and SHA-256, `manifest_head`, `error`) rewritten as the job goes.
/// `progress` is called on the calling thread with the overall percentage
/// (0–100) each time it changes.
///
/// The outputs are derived files: they are not entered in the manifest (which
/// has ended); `render.json` carries their SHA-256 and the manifest head they
/// were rendered from (`docs/evidence.md` § Review video).
///
/// # Errors
/// [`RecorderError::BadManifest`] (missing, not verifying, nothing recorded);
/// [`RecorderError::Invalid`] for settings [`RenderOptions::check`] refuses
/// (nothing is touched then);
/// [`RecorderError::Media`] when a GStreamer element is missing (plugins
/// ugly: x264enc; bad: voaacenc; base: compositor, audiomixer;
/// `gstreamer1.0-x`: textoverlay) or a segment does not decode;
/// [`RecorderError::Io`]. On any error in a folder with a manifest,
/// `render.json` says `failed` with the message and no `.mp4` is left (a
/// folder without `manifest.jsonl` is left untouched).
pub fn render(session_dir: &Path, opts: &RenderOptions, mut progress: impl FnMut(u8)) -> Result<Vec<RenderedFile>, RecorderError> {
    opts.check()?;
    let plan = match gst::init().map_err(|e| pipeline_err("GStreamer init", e)).and_then(|()| plan(session_dir, &opts.public_key)) {
        Ok(p) => p,
        Err(e) => {
            // A session folder that does not verify keeps no review video that
            // could pass for a good one; a folder without a manifest is not touched.
            if session_dir.join(MANIFEST_FILE).is_file() {
                let _ = record_failure(session_dir, &e.to_string());
            }
            return Err(e);
        }
    };
    let review = session_dir.join("review");
    std::fs::create_dir_all(&review).map_err(RecorderError::io(&review))?;
    if let Ok(rd) = std::fs::read_dir(&review) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".mp4") || n.ends_with(".mp4.part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let head = Some(plan.head.clone());
    let mut outputs: Vec<RenderedFile> = Vec::new();
    write_status(session_dir, &Status { state: "running", percent: 0, outputs: &[], manifest_head: head.clone(), error: None })?;
    progress(0);
    let n_rooms = plan.rooms.len() as u64;
    let mut last_pct = 0u8;
    let result = (|| -> Result<(), RecorderError> {
        for (ri, room) in plan.rooms.iter().enumerate() {
            let name = output_name(room);
            let part = review.join(format!("{name}.part"));
            let pos = Arc::new(AtomicU64::new(0));
            let job = {
                let (plan, room, opts, part, pos) = (plan.clone(), room.clone(), opts.clone(), part.clone(), pos.clone());
                std::thread::spawn(move || render_room(&plan, &room, &opts, &part, &pos))
            };
            let dur_ns = (plan.duration_ms * 1_000_000).max(1);
            while !job.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                let done = (ri as u64 * dur_ns + pos.load(Ordering::Relaxed).min(dur_ns)) as f64;
                let pct = ((done / (n_rooms * dur_ns) as f64) * 100.0).floor().min(99.0) as u8;
                if pct > last_pct {
                    last_pct = pct;
                    let _ = write_status(
                        session_dir,
                        &Status { state: "running", percent: pct, outputs: &outputs, manifest_head: head.clone(), error: None },
                    );
                    progress(pct);
                }
            }
            let r = job.join().map_err(|_| RecorderError::Media("render thread panicked".into()))?;
            if let Err(e) = r {
                let _ = std::fs::remove_file(&part);
                return Err(e);
            }
            let fin = review.join(&name);
            std::fs::rename(&part, &fin).map_err(RecorderError::io(&fin))?;
            let d = hash_file(&fin)?;
            outputs.push(RenderedFile { path: format!("review/{name}"), room: room.clone(), size: d.size, sha256: d.sha256_hex() });
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            write_status(session_dir, &Status { state: "done", percent: 100, outputs: &outputs, manifest_head: head, error: None })?;
            progress(100);
            Ok(outputs)
        }
        Err(e) => {
            for o in &outputs {
                let _ = std::fs::remove_file(session_dir.join(&o.path));
            }
            let _ = write_status(
                session_dir,
                &Status { state: "failed", percent: last_pct, outputs: &[], manifest_head: head, error: Some(e.to_string()) },
            );
            Err(e)
        }
    }
}

/// Writes `review/render.json` with state `failed` and `error` for a job that
/// could not start (e.g. the manifest does not verify), creating `review/` if
/// needed, and removes every `review/*.mp4` so nothing stale looks complete.
/// [`render`] calls it itself; a server that fails before calling [`render`]
/// can too.
///
/// # Errors
/// [`RecorderError::Io`] when the folder cannot be written.
pub fn record_failure(session_dir: &Path, error: &str) -> Result<(), RecorderError> {
    let review = session_dir.join("review");
    std::fs::create_dir_all(&review).map_err(RecorderError::io(&review))?;
    if let Ok(rd) = std::fs::read_dir(&review) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.ends_with(".mp4") || n.ends_with(".mp4.part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    write_status(session_dir, &Status { state: "failed", percent: 0, outputs: &[], manifest_head: None, error: Some(error.into()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_text_is_recording_time_in_shanghai() {
        let t0 = Timestamp::parse("2026-11-29T16:00:00.000Z").unwrap();
        assert_eq!(overlay_time_text(t0, 0), "2026-11-30 00:00:00 北京时间");
        assert_eq!(overlay_time_text(t0, 2_999_000_000), "2026-11-30 00:00:02 北京时间");
        assert_eq!(overlay_time_text(t0, 3_600_000_000_000), "2026-11-30 01:00:00 北京时间");
    }

    fn track(offset_ms: u64, opens: Vec<Option<u64>>) -> TrackPlan {
        let n = opens.len();
        TrackPlan { pid: "a1".into(), kind: TrackKind::Audio, offset_ms, segments: vec![PathBuf::new(); n], opens, rooms: vec![(0, "main".into())] }
    }

    #[test]
    fn placer_follows_continuing_and_restarting_segment_timestamps() {
        const S: u64 = 1_000_000_000;
        // Timestamps that continue across segments (gap kept).
        let mut p = Placer::new(&track(1000, vec![None, None]));
        assert_eq!(p.place(5 * S, S), S);
        assert_eq!(p.place(6 * S, S), 2 * S);
        p.start_segment(1);
        assert_eq!(p.place(9 * S, S), 5 * S);
        // Restarting at 0: the segment follows the previous one's end…
        let mut p = Placer::new(&track(1000, vec![Some(1200), Some(3300)]));
        p.place(0, S);
        p.place(S, S);
        p.start_segment(1);
        assert_eq!(p.place(0, S), 3 * S);
        // …unless its file_open lies over 250 ms later (a pause at the cut).
        let mut p = Placer::new(&track(1000, vec![Some(1200), Some(6200)]));
        p.place(0, S);
        p.place(S, S);
        p.start_segment(1);
        assert_eq!(p.place(0, S), 6 * S);
        assert_eq!(p.place(S / 2, S), 6 * S + S / 2);
    }

    #[test]
    fn bad_settings_are_refused() {
        let key = crate::EvidenceKey::generate_ephemeral().unwrap();
        let ok = RenderOptions::new(*key.public_key());
        assert!(ok.check().is_ok());
        for bad in [
            RenderOptions { width: 100, ..ok.clone() },
            RenderOptions { fps: 0, ..ok.clone() },
            RenderOptions { video_kbps: 10, ..ok.clone() },
            RenderOptions { speed_preset: "fast ! filesink location=/tmp/x".into(), ..ok.clone() },
        ] {
            assert!(matches!(bad.check(), Err(RecorderError::Invalid(_))), "{bad:?}");
        }
    }

    #[test]
    fn grid_and_names() {
        assert_eq!(grid(1, 320, 240, 32), vec![(0, 32, 320, 208)]);
        let g = grid(4, 1280, 720, 72);
        assert_eq!(g[3], (640, 72 + 324, 640, 324));
        assert_eq!(grid(3, 320, 240, 32).len(), 3);
        assert_eq!(output_name("main"), "main.mp4");
        assert_eq!(output_name("applicant-room"), "caucus-applicant-room.mp4");
        assert_eq!(output_name("a/b 室"), "caucus-a_b__.mp4");
    }
}
