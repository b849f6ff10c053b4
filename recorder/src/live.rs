//! The live recorder: turns the SFU's recorder tap ([`fengqiao_sfu::record`]) into
//! a session's evidence folder (issue 3, "Outputs" 1–3 and the manifest).
//!
//! One thread (`fq-recorder`) owns every recorded session. Per session folder
//! `data/sessions/<session-id>/` (layout in `docs/interfaces.md`):
//!
//! - `manifest.jsonl` / `manifest.sig`: participants, consent answers, start,
//!   pause (reason), resume, moves, each file as it opens and closes, `track`
//!   entries placing tracks on the session timeline, stop, end;
//! - `tracks/<pid>-<kind>-<n>-NNNNN.mkv`: originals per Producer ([`TrackWriter`]);
//! - `audio/<pid>.wav`: decoded audio per participant, 48 kHz mono 16-bit, on the
//!   session timeline with silence for gaps (DTX, pauses, absence) — `hound`;
//! - `audio/<pid>.activity.json`: audio level per 100 ms slot and speaking
//!   intervals.
//!
//! **Timeline.** Zero is the `start` entry's time. A track's first recorded packet
//! (RTP timestamp `r0`) is placed at `offset_ms`: from the track's first RTCP
//! sender report (RFC 3550 §6.4.1: NTP time `N` ↔ RTP time `R`), as
//! `N + (r0 − R)/clock + c_p − start`, where `c_p` = min over the participant's
//! sender reports of (arrival − `N`) maps the sender's NTP clock to server time
//! (so one participant's audio and video share one mapping); without a sender
//! report within [`SR_WAIT`], from the packet's arrival. Every later packet of the
//! track sits at `offset_ms + (ts − r0)/clock`: gaps in RTP time (Opus DTX, pauses)
//! stay gaps, so durations never drift.
//!
//! **Never stalls the room.** The SFU side drops and counts when this thread falls
//! behind; GStreamer pushes are leaky; hashing happens here, off the media task.

use crate::manifest::{check_rel_path, SYSTEM_ACTOR};
use crate::originals::{Codec, SegmentEvent, TrackWriter, TrackWriterConfig};
use crate::{Body, EvidenceKey, FileStatus, ManifestWriter, RecorderError, SessionHeader, Timestamp, TrackKind};
use fengqiao_sfu::record::{RecKind, RecPacket, RecSession, RecordMsg, RecordSource};
use fengqiao_sfu::{ParticipantId, ParticipantInfo, ProducerId, Sfu};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{error, info, warn};

/// How long a track waits for its first sender report before it is placed by
/// arrival time alone.
pub const SR_WAIT: Duration = Duration::from_secs(5);
/// WAV sample rate, Hz.
pub const WAV_RATE: u32 = 48_000;
/// Speaking-activity resolution, ms.
pub const ACTIVITY_SLOT_MS: u64 = 100;
/// Level (−dBov) below which a slot counts as speech.
pub const SPEAKING_DBOV: u8 = 60;
/// Speaking intervals closer than this are joined, ms.
pub const SPEAKING_JOIN_MS: u64 = 500;
/// How often open WAV headers are rewritten (crash safety), and periodic work runs.
const TICK: Duration = Duration::from_millis(500);

/// Settings of the live recorder.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `<data_dir>/sessions`.
    pub sessions_dir: PathBuf,
    /// Segment length of originals (default 5 min).
    pub segment: Duration,
}

/// A record closed at stop (or shutdown): what the case service stores.
#[derive(Debug, Clone)]
pub struct ClosedRecord {
    /// The session id (folder name).
    pub session_id: String,
    /// The session folder.
    pub dir: PathBuf,
    /// The case, if the tokens named one.
    pub case_id: Option<String>,
    /// The integrity check value (chain head, hex).
    pub integrity: String,
    /// Timeline zero (the `start` entry).
    pub started: SystemTime,
    /// When the record was closed.
    pub ended: SystemTime,
    /// Evidence files written, relative to the session folder.
    pub files: Vec<String>,
    /// Closed by a shutdown (an `interrupted` entry) rather than a stop.
    pub interrupted: bool,
}

/// Called (on the recorder thread) for every closed record.
pub type OnClosed = Box<dyn Fn(ClosedRecord) + Send>;

/// Starts the recorder thread. It runs until every [`fengqiao_sfu::record::RecordSink`]
/// is dropped (the media task stopped), closing what is still open as interrupted.
///
/// # Errors
/// The thread cannot be spawned.
pub fn spawn(
    cfg: LiveConfig,
    key: Arc<EvidenceKey>,
    source: RecordSource,
    sfu: Sfu,
    on_closed: OnClosed,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("fq-recorder".into()).spawn(move || {
        let mut m = Manager { cfg, key, sfu, on_closed, sessions: HashMap::new(), scratch: Vec::with_capacity(1500) };
        let mut last_tick = Instant::now();
        loop {
            match source.recv_timeout(TICK) {
                Ok(msg) => m.handle(msg),
                Err(true) => break,
                Err(false) => {}
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                m.tick();
            }
        }
        let ids: Vec<Arc<str>> = m.sessions.keys().cloned().collect();
        for id in ids {
            m.stop(&id, None, SystemTime::now(), Some("server shutdown".into()));
        }
    })
}

struct Manager {
    cfg: LiveConfig,
    key: Arc<EvidenceKey>,
    sfu: Sfu,
    on_closed: OnClosed,
    sessions: HashMap<Arc<str>, SessionRec>,
    scratch: Vec<u8>,
}

struct SessionRec {
    id: String,
    case_id: Option<String>,
    dir: PathBuf,
    manifest: ManifestWriter,
    /// Timeline zero.
    start: SystemTime,
    participants: HashMap<ParticipantId, ParticipantInfo>,
    tracks: HashMap<ProducerId, TrackRec>,
    wavs: HashMap<ParticipantId, WavRec>,
    /// Tracks per (participant, kind) so far: the `<n>` of segment stems.
    counts: HashMap<(ParticipantId, RecKind), u32>,
    /// Per participant: min(arrival − NTP) of their sender reports, ms.
    clock_offset: HashMap<ParticipantId, i64>,
    files: Vec<String>,
    /// A failure that ended this record (it keeps what it had).
    failed: bool,
}

struct TrackRec {
    pid: ParticipantId,
    kind: RecKind,
    codec: &'static str,
    clock: u32,
    stem: String,
    writer: Option<TrackWriter>,
    /// First recorded packet: RTP timestamp and arrival.
    first: Option<(u32, SystemTime)>,
    /// Extended (unwrapped) timestamp of the last packet.
    last_ext: i64,
    last_ts: u32,
    sr: Option<(u64, u32, SystemTime)>,
    /// Placed on the timeline: offset of `first` in ms.
    offset_ms: Option<f64>,
    /// Audio packets held until the track is placed.
    held: Vec<RecPacket>,
    decoder: Option<OpusDecoder>,
    /// Audio originals: sequence-number shift after inserted DTX fillers, the
    /// last RTP timestamp pushed, and the last TOC byte (RFC 6716 §3.1).
    seq_off: u16,
    last_pushed_ts: Option<u32>,
    last_toc: u8,
    /// Loss accounting (RFC 3550 A.3) per stretch of recording between pauses:
    /// first and highest extended sequence number, packets received in the stretch.
    run: Option<(i64, i64, u64)>,
    last_seq: u16,
    lost: u64,
    packets: u64,
    last_keyframe_ask: Option<Instant>,
    room: String,
}

struct WavRec {
    path: String,
    writer: Option<hound::WavWriter<std::io::BufWriter<std::fs::File>>>,
    /// Samples written (= position on the timeline, in samples).
    written: u64,
    /// Loudest level (−dBov) per 100 ms slot.
    levels: Vec<u8>,
}

/// One 20 ms Opus frame in RTP ticks (48 kHz).
const OPUS_FRAME: u32 = 960;
/// Longest audio gap filled with DTX frames: one hour of RTP time.
const MAX_FILL_TICKS: u32 = 48_000 * 3600;

/// RTP bytes (RFC 3550 §5.1, no CSRC, no extension) into `out`.
fn rtp_bytes(out: &mut Vec<u8>, pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: &[u8]) {
    out.clear();
    out.push(0x80);
    out.push((u8::from(marker) << 7) | (pt & 0x7f));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(payload);
}

impl TrackRec {
    /// Ends a stretch of recording (pause, end): its missing packets count as lost.
    fn close_run(&mut self) {
        if let Some((first, high, n)) = self.run.take() {
            let expected = (high - first + 1).max(0) as u64;
            self.lost += expected.saturating_sub(n);
        }
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from_unix_millis(unix_ms(t)).unwrap_or_else(|_| Timestamp::now())
}

/// NTP 64-bit timestamp (RFC 3550 §4) → Unix ms.
fn ntp_to_unix_ms(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64 - 2_208_988_800;
    let frac = ((ntp & 0xffff_ffff) * 1000) >> 32;
    secs * 1000 + frac as i64
}

/// A participant id as a file-name part: `[A-Za-z0-9._-]`, others `_`, ≤ 64 chars.
pub fn safe_part(id: &str) -> String {
    let s: String = id
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

impl Manager {
    fn handle(&mut self, msg: RecordMsg) {
        match msg {
            RecordMsg::Start { session, actor, time, participants } => self.start(session, &actor, time, participants),
            RecordMsg::Participant { session, info, time } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.add_participant(&info, time);
                }
            }
            RecordMsg::Consent { session, participant, accept, time } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    let answer = if accept { crate::Answer::Accept } else { crate::Answer::Refuse };
                    s.append(time, Some(participant.as_str()), Body::Consent { answer });
                }
            }
            RecordMsg::Pause { session, actor, reason, time } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    for tr in s.tracks.values_mut() {
                        tr.close_run();
                    }
                    let a = actor.as_ref().map_or(SYSTEM_ACTOR, |a| a.as_str());
                    s.append(time, Some(a), Body::Pause { reason });
                }
            }
            RecordMsg::Resume { session, actor, time } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    let a = actor.as_ref().map_or(SYSTEM_ACTOR, |a| a.as_str());
                    s.append(time, Some(a), Body::Resume {});
                }
            }
            RecordMsg::Moved { session, participant, room, time } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.append(time, None, Body::Moved { pid: participant.to_string(), room });
                }
            }
            RecordMsg::Stop { session, actor, time, interrupted } => self.stop(&session, actor, time, interrupted),
            RecordMsg::Packet(p) => {
                if let Some(s) = self.sessions.get_mut(&p.session) {
                    s.packet(p, &self.cfg, &mut self.scratch);
                }
            }
            RecordMsg::SenderReport { session, producer, ntp, rtp_ts, arrival } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.sender_report(producer, ntp, rtp_ts, arrival);
                }
            }
            RecordMsg::TrackEnded { session, producer } => {
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.end_track(producer);
                }
            }
        }
    }

    fn start(&mut self, session: RecSession, actor: &ParticipantId, time: SystemTime, participants: Vec<ParticipantInfo>) {
        if self.sessions.contains_key(&session.id) {
            warn!(session = %session.id, "recording already running");
            return;
        }
        let folder = safe_part(&session.id);
        let dir = self.cfg.sessions_dir.join(&folder);
        let header = SessionHeader { room: session.room.to_string(), case_id: session.case_id.clone(), session_id: folder.clone() };
        let manifest = match ManifestWriter::create(&dir, self.key.clone(), header, ts(time)) {
            Ok(m) => Ok(m),
            // A session recorded before (and closed out after a crash) continues.
            Err(RecorderError::Exists(_)) => ManifestWriter::open(&dir, self.key.clone()),
            Err(e) => Err(e),
        };
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => {
                error!(session = %session.id, "cannot open the evidence manifest: {e}; nothing will be recorded");
                self.sfu.recording_closed(&session.id, None);
                return;
            }
        };
        info!(session = %session.id, dir = %dir.display(), "recording started");
        let mut s = SessionRec {
            id: folder,
            case_id: session.case_id,
            dir,
            manifest,
            start: time,
            participants: HashMap::new(),
            tracks: HashMap::new(),
            wavs: HashMap::new(),
            counts: HashMap::new(),
            clock_offset: HashMap::new(),
            files: Vec::new(),
            failed: false,
        };
        for p in &participants {
            s.add_participant(p, time);
        }
        s.append(time, Some(actor.as_str()), Body::Start {});
        self.sessions.insert(session.id, s);
    }

    fn stop(&mut self, session: &str, actor: Option<ParticipantId>, time: SystemTime, interrupted: Option<String>) {
        let Some(mut s) = self.sessions.remove(session) else { return };
        if interrupted.is_none() {
            let a = actor.as_ref().map_or(SYSTEM_ACTOR, |a| a.as_str());
            s.append(time, Some(a), Body::Stop {});
        }
        let closing = Instant::now();
        let producers: Vec<ProducerId> = s.tracks.keys().copied().collect();
        for p in producers {
            s.end_track(p);
        }
        s.close_wavs();
        s.close_leftovers();
        info!(session, took_ms = closing.elapsed().as_millis() as u64, "recorded files closed and hashed");
        let result = match &interrupted {
            None => s.manifest.finish(ts(SystemTime::now())),
            Some(reason) => s.manifest.append(
                ts(SystemTime::now()),
                Some(SYSTEM_ACTOR),
                Body::Interrupted { reason: reason.clone(), unsigned_entries: 0, torn_tail: None },
            ),
        };
        match result {
            Ok(head) => {
                let head = head.to_hex();
                info!(session, integrity = %head, interrupted = interrupted.is_some(), "recording closed and signed");
                self.sfu.recording_closed(session, Some(head.clone()));
                (self.on_closed)(ClosedRecord {
                    session_id: s.id.clone(),
                    dir: s.dir.clone(),
                    case_id: s.case_id.clone(),
                    integrity: head,
                    started: s.start,
                    ended: SystemTime::now(),
                    files: s.files.clone(),
                    interrupted: interrupted.is_some(),
                });
            }
            Err(e) => {
                error!(session, "cannot close the evidence manifest: {e}");
                self.sfu.recording_closed(session, None);
            }
        }
    }

    fn tick(&mut self) {
        let sfu = self.sfu.clone();
        for s in self.sessions.values_mut() {
            s.tick(&sfu);
        }
    }
}

impl SessionRec {
    fn append(&mut self, time: SystemTime, actor: Option<&str>, body: Body) {
        if let Err(e) = self.manifest.append(ts(time), actor, body) {
            error!(session = %self.id, "manifest append failed: {e}");
            self.failed = true;
        }
    }

    fn add_participant(&mut self, p: &ParticipantInfo, time: SystemTime) {
        if self.participants.insert(p.id.clone(), p.clone()).is_none() {
            self.append(time, None, Body::Participant { pid: p.id.to_string(), name: p.name.clone(), role: p.role.clone() });
        }
    }

    fn timeline_ms(&self, t: SystemTime) -> f64 {
        t.duration_since(self.start).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    fn packet(&mut self, p: RecPacket, cfg: &LiveConfig, scratch: &mut Vec<u8>) {
        if self.failed {
            return;
        }
        if !self.tracks.contains_key(&p.producer) {
            self.open_track(&p, cfg);
        }
        let Some(tr) = self.tracks.get_mut(&p.producer) else { return };
        // Loss accounting: extended sequence numbers within this stretch.
        tr.packets += 1;
        tr.run = Some(match tr.run {
            None => {
                tr.last_seq = p.seq;
                (i64::from(p.seq), i64::from(p.seq), 1)
            }
            Some((first, high, n)) => {
                let d = i64::from(p.seq.wrapping_sub(tr.last_seq) as i16);
                let ext = high + d;
                if d > 0 {
                    tr.last_seq = p.seq;
                }
                (first, high.max(ext), n + 1)
            }
        });
        // Unwrapped RTP time.
        match tr.first {
            None => {
                tr.first = Some((p.timestamp, p.arrival));
                tr.last_ext = i64::from(p.timestamp);
                tr.last_ts = p.timestamp;
            }
            Some(_) => {
                let d = i64::from(p.timestamp.wrapping_sub(tr.last_ts) as i32);
                if d > 0 {
                    tr.last_ext += d;
                    tr.last_ts = p.timestamp;
                }
            }
        }
        if let Some(w) = &mut tr.writer {
            if p.kind == RecKind::Audio {
                // Opus DTX (RFC 7587 §3.1.3) and pauses leave gaps in RTP time: fill
                // them with empty 20 ms frames (a TOC byte alone: DTX, RFC 6716 §3.2.1)
                // so the original starts at 0 and lasts as long as the session.
                if let Some(last) = tr.last_pushed_ts {
                    let gap = p.timestamp.wrapping_sub(last);
                    if gap > OPUS_FRAME && gap <= MAX_FILL_TICKS {
                        let toc = 0xf8 | (tr.last_toc & 0x04); // CELT FB 20 ms, code 0, stereo flag kept
                        let first_seq = p.seq.wrapping_add(tr.seq_off);
                        let n = gap / OPUS_FRAME - u32::from(gap % OPUS_FRAME == 0);
                        for k in 1..=n {
                            let seq = first_seq.wrapping_add(k as u16);
                            rtp_bytes(scratch, p.payload_type, seq, last.wrapping_add(k * OPUS_FRAME), p.ssrc, false, &[toc]);
                            let _ = w.push_rtp(scratch);
                        }
                        tr.seq_off = tr.seq_off.wrapping_add(n as u16);
                    }
                }
                if tr.last_pushed_ts.is_none_or(|l| (p.timestamp.wrapping_sub(l) as i32) > 0) {
                    tr.last_pushed_ts = Some(p.timestamp);
                }
                if let Some(&t) = p.payload.first() {
                    tr.last_toc = t;
                }
                rtp_bytes(scratch, p.payload_type, p.seq.wrapping_add(tr.seq_off), p.timestamp, p.ssrc, p.marker, &p.payload);
            } else {
                p.write_rtp(scratch);
            }
            let _ = w.push_rtp(scratch);
        }
        // A segment cut just happened: record it now, so the new segment's
        // `file_open` time is its start on the timeline (to the millisecond).
        if tr.writer.as_ref().is_some_and(TrackWriter::has_events) {
            let kind = if tr.kind == RecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
            let (pid, codec) = (tr.pid.to_string(), tr.codec);
            if let Some(Ok(events)) = tr.writer.as_mut().map(TrackWriter::poll_events) {
                self.segment_events(&events, &pid, kind, codec);
            }
        }
        let Some(tr) = self.tracks.get_mut(&p.producer) else { return };
        if p.kind == RecKind::Audio {
            if tr.offset_ms.is_some() {
                let tr = self.tracks.remove(&p.producer);
                if let Some(mut tr) = tr {
                    self.decode(&mut tr, &p);
                    self.tracks.insert(p.producer, tr);
                }
            } else {
                tr.held.push(p);
            }
        }
    }

    fn open_track(&mut self, p: &RecPacket, cfg: &LiveConfig) {
        let n = self.counts.entry((p.participant.clone(), p.kind)).or_insert(0);
        let kind = if p.kind == RecKind::Audio { "audio" } else { "video" };
        let stem = format!("tracks/{}-{kind}-{n}", safe_part(p.participant.as_str()));
        *n += 1;
        let codec = match p.codec {
            "VP8" => Some(Codec::Vp8),
            "H264" => Some(Codec::H264),
            "Opus" => Some(Codec::Opus),
            _ => None,
        };
        let writer = codec.and_then(|c| {
            let mut wc = TrackWriterConfig::new(&self.dir, &stem, c, p.payload_type);
            wc.segment = cfg.segment;
            match TrackWriter::start(wc) {
                Ok(w) => Some(w),
                Err(e) => {
                    error!(session = %self.id, stem, "cannot start the originals writer: {e}");
                    None
                }
            }
        });
        let decoder = if p.kind == RecKind::Audio {
            match OpusDecoder::start() {
                Ok(d) => Some(d),
                Err(e) => {
                    error!(session = %self.id, "cannot start the Opus decoder for the WAV: {e}");
                    None
                }
            }
        } else {
            None
        };
        info!(session = %self.id, producer = %p.producer, stem, codec = p.codec, "recording track");
        self.tracks.insert(
            p.producer,
            TrackRec {
                pid: p.participant.clone(),
                kind: p.kind,
                codec: p.codec,
                clock: p.clock_rate,
                stem,
                writer,
                first: None,
                last_ext: 0,
                last_ts: 0,
                sr: None,
                offset_ms: None,
                held: Vec::new(),
                decoder,
                seq_off: 0,
                last_pushed_ts: None,
                last_toc: 0xf8,
                run: None,
                last_seq: 0,
                lost: 0,
                packets: 0,
                last_keyframe_ask: None,
                room: p.room.to_string(),
            },
        );
    }

    fn sender_report(&mut self, producer: ProducerId, ntp: u64, rtp_ts: u32, arrival: SystemTime) {
        let Some(tr) = self.tracks.get_mut(&producer) else { return };
        let off = unix_ms(arrival) - ntp_to_unix_ms(ntp);
        let c = self.clock_offset.entry(tr.pid.clone()).or_insert(off);
        *c = (*c).min(off);
        if tr.sr.is_none() {
            tr.sr = Some((ntp, rtp_ts, arrival));
        }
        if tr.offset_ms.is_none() && tr.first.is_some() {
            self.place(producer);
        }
    }

    /// Places a track on the timeline (`track` entry) and decodes held audio.
    fn place(&mut self, producer: ProducerId) {
        let Some(mut tr) = self.tracks.remove(&producer) else { return };
        let Some((r0, arrival0)) = tr.first else {
            self.tracks.insert(producer, tr);
            return;
        };
        let (offset, sync) = match (tr.sr, self.clock_offset.get(&tr.pid)) {
            (Some((ntp, rtp, _)), Some(c)) => {
                let dt = f64::from(r0.wrapping_sub(rtp) as i32) * 1000.0 / f64::from(tr.clock);
                let wall = ntp_to_unix_ms(ntp) as f64 + dt + *c as f64;
                (wall - unix_ms(self.start) as f64, "sr")
            }
            _ => (self.timeline_ms(arrival0), "arrival"),
        };
        let offset = offset.max(0.0);
        tr.offset_ms = Some(offset);
        let kind = if tr.kind == RecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
        let body = Body::Track {
            track: tr.stem.clone(),
            pid: tr.pid.to_string(),
            kind,
            codec: tr.codec.to_owned(),
            room: tr.room.clone(),
            clock_rate: tr.clock,
            rtp_ts: r0,
            offset_ms: offset.round() as u64,
            sync: sync.to_owned(),
        };
        self.append(SystemTime::now(), None, body);
        let held = std::mem::take(&mut tr.held);
        for p in &held {
            self.decode(&mut tr, p);
        }
        self.tracks.insert(producer, tr);
    }

    /// Decodes one Opus packet into the participant's WAV at its timeline position.
    fn decode(&mut self, tr: &mut TrackRec, p: &RecPacket) {
        let (Some(offset), Some((r0, _))) = (tr.offset_ms, tr.first) else { return };
        let ext = tr.last_ext - i64::from(tr.last_ts.wrapping_sub(p.timestamp) as i32);
        let pos_ms = offset + (ext - i64::from(r0)) as f64 * 1000.0 / f64::from(tr.clock);
        if pos_ms < 0.0 {
            return;
        }
        if let Some(d) = &tr.decoder {
            d.push(&p.payload, Duration::from_secs_f64(pos_ms / 1000.0));
        }
        self.drain_decoder(tr);
    }

    fn drain_decoder(&mut self, tr: &mut TrackRec) {
        let Some(d) = &tr.decoder else { return };
        let pid = tr.pid.clone();
        while let Some((pts, pcm)) = d.pull() {
            self.write_pcm(&pid, pts, &pcm);
        }
    }

    fn wav(&mut self, pid: &ParticipantId) -> Option<&mut WavRec> {
        if !self.wavs.contains_key(pid) {
            let rel = format!("audio/{}.wav", safe_part(pid.as_str()));
            if check_rel_path(&rel).is_err() {
                return None;
            }
            let path = self.dir.join(&rel);
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let spec = hound::WavSpec { channels: 1, sample_rate: WAV_RATE, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
            let writer = match hound::WavWriter::create(&path, spec) {
                Ok(w) => w,
                Err(e) => {
                    error!(session = %self.id, path = %path.display(), "cannot create the WAV: {e}");
                    return None;
                }
            };
            if let Err(e) = self.manifest.open_file(Timestamp::now(), &rel, Some(pid.as_str()), TrackKind::Audio, Some("WAV")) {
                error!(session = %self.id, "manifest: {e}");
            }
            self.files.push(rel.clone());
            self.wavs.insert(pid.clone(), WavRec { path: rel, writer: Some(writer), written: 0, levels: Vec::new() });
        }
        self.wavs.get_mut(pid)
    }

    fn write_pcm(&mut self, pid: &ParticipantId, pts: Duration, pcm: &[i16]) {
        let Some(w) = self.wav(pid) else { return };
        let Some(writer) = w.writer.as_mut() else { return };
        let pos = (pts.as_nanos() * u128::from(WAV_RATE) / 1_000_000_000) as u64;
        let mut skip = 0usize;
        // Within 2 ms counts as contiguous (decoder rounding), not a gap.
        if pos > w.written + 96 {
            for _ in w.written..pos {
                let _ = writer.write_sample(0i16);
            }
            w.written = pos;
        } else if pos < w.written {
            skip = usize::try_from(w.written - pos).unwrap_or(usize::MAX).min(pcm.len());
        }
        let start = w.written;
        for &s in &pcm[skip..] {
            let _ = writer.write_sample(s);
        }
        w.written += (pcm.len() - skip) as u64;
        // Levels per 100 ms slot, from the decoded samples (RMS → −dBov).
        let slot_len = (u64::from(WAV_RATE) * ACTIVITY_SLOT_MS / 1000) as usize;
        let mut i = 0usize;
        let samples = &pcm[skip..];
        while i < samples.len() {
            let at = start + i as u64;
            let slot = (at / slot_len as u64) as usize;
            let end_in_slot = ((slot as u64 + 1) * slot_len as u64 - at) as usize;
            let n = end_in_slot.min(samples.len() - i);
            let chunk = &samples[i..i + n];
            let rms = (chunk.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / n as f64).sqrt();
            let dbov = if rms < 1.0 { 127.0 } else { (-20.0 * (rms / 32768.0).log10()).clamp(0.0, 127.0) };
            if w.levels.len() <= slot {
                w.levels.resize(slot + 1, 127);
            }
            w.levels[slot] = w.levels[slot].min(dbov.round() as u8);
            i += n;
        }
    }

    fn end_track(&mut self, producer: ProducerId) {
        if self.tracks.get(&producer).is_some_and(|t| t.offset_ms.is_none() && t.first.is_some()) {
            self.place(producer);
        }
        let Some(mut tr) = self.tracks.remove(&producer) else { return };
        tr.close_run();
        let queue_dropped = tr.writer.as_ref().map_or(0, TrackWriter::dropped);
        let end = Body::TrackEnd { track: tr.stem.clone(), packets: tr.packets, lost: tr.lost, queue_dropped };
        if tr.lost > 0 || queue_dropped > 0 {
            warn!(session = %self.id, stem = %tr.stem, lost = tr.lost, queue_dropped, "recorded track has gaps");
        }
        self.append(SystemTime::now(), None, end);
        if let Some(d) = tr.decoder.take() {
            let pid = tr.pid.clone();
            for (pts, pcm) in d.finish() {
                self.write_pcm(&pid, pts, &pcm);
            }
        }
        if let Some(w) = tr.writer.take() {
            let pid = tr.pid.to_string();
            let kind = if tr.kind == RecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
            let mut w = w;
            let mut events = w.poll_events().unwrap_or_default();
            match w.finish(Duration::from_secs(10)) {
                Ok(mut more) => events.append(&mut more),
                Err(e) => error!(session = %self.id, stem = %tr.stem, "originals writer: {e}"),
            }
            self.segment_events(&events, &pid, kind, tr.codec);
            // Whatever is still open (no Closed event) is hashed as found.
            let stem = tr.stem.clone();
            let open: Vec<String> = self.manifest.open_files().filter(|p| p.starts_with(&stem)).map(str::to_owned).collect();
            for p in open {
                if let Err(e) = self.manifest.close_file(Timestamp::now(), &p, FileStatus::Closed) {
                    error!(session = %self.id, "manifest: {e}");
                }
            }
        }
    }

    /// Files of `prefix` still open in the manifest are hashed as found and
    /// recorded `interrupted` (a writer failed), or `file_lost` if unreadable.
    fn close_open_with(&mut self, prefix: &str) {
        let open: Vec<String> = self.manifest.open_files().filter(|p| p.starts_with(prefix)).map(str::to_owned).collect();
        for p in open {
            if let Err(e) = self.manifest.close_file(Timestamp::now(), &p, FileStatus::Interrupted) {
                warn!(session = %self.id, path = %p, "cannot hash: {e}");
                self.append(SystemTime::now(), None, Body::FileLost { path: p.clone(), reason: e.to_string() });
            }
        }
    }

    /// Before the manifest ends: nothing may stay open.
    fn close_leftovers(&mut self) {
        self.close_open_with("");
    }

    fn segment_events(&mut self, events: &[SegmentEvent], pid: &str, kind: TrackKind, codec: &str) {
        for ev in events {
            match ev {
                SegmentEvent::Opened(path) => {
                    if let Err(e) = self.manifest.open_file(Timestamp::now(), path, Some(pid), kind, Some(codec)) {
                        error!(session = %self.id, "manifest: {e}");
                    }
                    self.files.push(path.clone());
                }
                SegmentEvent::Closed(path) => {
                    if let Err(e) = self.manifest.close_file(Timestamp::now(), path, FileStatus::Closed) {
                        error!(session = %self.id, "manifest: {e}");
                    }
                }
            }
        }
    }

    fn close_wavs(&mut self) {
        let pids: Vec<ParticipantId> = self.wavs.keys().cloned().collect();
        for pid in pids {
            let Some(mut w) = self.wavs.remove(&pid) else { continue };
            if let Some(writer) = w.writer.take() {
                if let Err(e) = writer.finalize() {
                    error!(session = %self.id, "WAV finalize: {e}");
                }
            }
            if let Err(e) = self.manifest.close_file(Timestamp::now(), &w.path, FileStatus::Closed) {
                error!(session = %self.id, "manifest: {e}");
            }
            // Speaking activity beside the WAV.
            let rel = format!("audio/{}.activity.json", safe_part(pid.as_str()));
            let info = self.participants.get(&pid);
            let doc = activity_json(
                &self.id,
                pid.as_str(),
                info.map_or("", |i| i.name.as_str()),
                info.map_or("", |i| i.role.as_str()),
                &ts(self.start).to_rfc3339(),
                &w.levels,
            );
            let path = self.dir.join(&rel);
            if let Err(e) = self.manifest.open_file(Timestamp::now(), &rel, Some(pid.as_str()), TrackKind::Other, None) {
                error!(session = %self.id, "manifest: {e}");
                continue;
            }
            if let Err(e) = std::fs::write(&path, doc).and_then(|()| std::fs::File::open(&path)?.sync_all()) {
                error!(session = %self.id, "cannot write {rel}: {e}");
            }
            if let Err(e) = self.manifest.close_file(Timestamp::now(), &rel, FileStatus::Closed) {
                error!(session = %self.id, "manifest: {e}");
            }
            self.files.push(rel);
        }
    }

    fn tick(&mut self, sfu: &Sfu) {
        // Place tracks whose sender report did not come.
        let late: Vec<ProducerId> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.offset_ms.is_none() && t.first.is_some_and(|(_, a)| a.elapsed().unwrap_or_default() >= SR_WAIT))
            .map(|(p, _)| *p)
            .collect();
        for p in late {
            self.place(p);
        }
        // Segment events; keyframe requests shortly before video cuts.
        let producers: Vec<ProducerId> = self.tracks.keys().copied().collect();
        for p in producers {
            let Some(mut tr) = self.tracks.remove(&p) else { continue };
            let events = tr.writer.as_mut().map(|w| w.poll_events()).transpose();
            match events {
                Ok(Some(events)) => {
                    let kind = if tr.kind == RecKind::Audio { TrackKind::Audio } else { TrackKind::Video };
                    self.segment_events(&events, tr.pid.as_str(), kind, tr.codec);
                }
                Ok(None) => {}
                Err(e) => {
                    error!(session = %self.id, stem = %tr.stem, "originals writer failed: {e}");
                    tr.writer = None;
                    self.close_open_with(&tr.stem.clone());
                }
            }
            if tr.writer.as_ref().is_some_and(TrackWriter::wants_keyframe) {
                // The segment is due: it is cut at the next keyframe. Ask for one now,
                // and again every second until the cut happened.
                if tr.last_keyframe_ask.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    sfu.recorder_keyframe(p);
                    tr.last_keyframe_ask = Some(Instant::now());
                }
            }
            self.drain_decoder(&mut tr);
            self.tracks.insert(p, tr);
        }
        // Rewrite WAV headers so a kill -9 leaves playable files.
        for w in self.wavs.values_mut() {
            if let Some(writer) = w.writer.as_mut() {
                let _ = writer.flush();
            }
        }
    }
}

/// The speaking-activity document (`docs/interfaces.md`).
pub fn activity_json(session: &str, pid: &str, name: &str, role: &str, start: &str, levels: &[u8]) -> String {
    let mut segments: Vec<[u64; 2]> = Vec::new();
    for (i, &l) in levels.iter().enumerate() {
        if l >= SPEAKING_DBOV {
            continue;
        }
        let (a, b) = (i as u64 * ACTIVITY_SLOT_MS, (i as u64 + 1) * ACTIVITY_SLOT_MS);
        match segments.last_mut() {
            Some(last) if a <= last[1] + SPEAKING_JOIN_MS => last[1] = b,
            _ => segments.push([a, b]),
        }
    }
    serde_json::json!({
        "v": 1,
        "session_id": session,
        "pid": pid,
        "name": name,
        "role": role,
        "start": start,
        "resolution_ms": ACTIVITY_SLOT_MS,
        "levels": levels,
        "segments": segments,
    })
    .to_string()
}

/// Opus → 48 kHz mono S16 PCM with GStreamer (`opusdec`), timestamps kept.
struct OpusDecoder {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    sink: gst_app::AppSink,
}

impl OpusDecoder {
    fn start() -> Result<Self, RecorderError> {
        gst::init().map_err(|e| RecorderError::Media(format!("GStreamer init: {e}")))?;
        let pipeline = gst::parse::launch(
            "appsrc name=src format=time is-live=false max-buffers=2000 ! opusdec plc=false ! audioconvert ! \
             audioresample ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! appsink name=sink sync=false max-buffers=4000",
        )
        .map_err(|e| RecorderError::Media(format!("Opus decoder: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| RecorderError::Media("not a pipeline".into()))?;
        let src = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| RecorderError::Media("no appsrc".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| RecorderError::Media("no appsink".into()))?;
        src.set_caps(Some(
            &gst::Caps::builder("audio/x-opus")
                .field("channel-mapping-family", 0i32)
                .field("rate", 48_000i32)
                .field("channels", 2i32)
                .build(),
        ));
        src.set_block(false);
        pipeline.set_state(gst::State::Playing).map_err(|e| RecorderError::Media(format!("Opus decoder: {e}")))?;
        Ok(Self { pipeline, src, sink })
    }

    fn push(&self, payload: &[u8], pts: Duration) {
        if payload.is_empty() {
            return;
        }
        let mut buf = gst::Buffer::from_mut_slice(payload.to_vec());
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(pts.as_nanos() as u64));
        }
        let _ = self.src.push_buffer(buf);
    }

    /// One decoded buffer, if any is ready: (timeline position, samples).
    fn pull(&self) -> Option<(Duration, Vec<i16>)> {
        let sample = self.sink.try_pull_sample(gst::ClockTime::ZERO)?;
        let buf = sample.buffer()?;
        let pts = buf.pts().map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
        let map = buf.map_readable().ok()?;
        let pcm = map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
        Some((pts, pcm))
    }

    /// Ends the stream and returns what is still to come (waiting ≤ 5 s). The
    /// appsink only reaches end of stream once its queue is pulled, so pull as we wait.
    fn finish(&self) -> Vec<(Duration, Vec<i16>)> {
        let _ = self.src.end_of_stream();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut out = Vec::new();
        while Instant::now() < deadline && !self.sink.is_eos() {
            if let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::from_mseconds(50)) {
                if let Some(buf) = sample.buffer() {
                    let pts = buf.pts().map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
                    if let Ok(map) = buf.map_readable() {
                        out.push((pts, map.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()));
                    }
                }
            }
        }
        out
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Where a session's folder is: `<sessions_dir>/<safe session id>`.
pub fn session_dir(sessions_dir: &Path, session_id: &str) -> PathBuf {
    sessions_dir.join(safe_part(session_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_conversion() {
        // 2026-11-29T00:00:00Z = 1795910400 Unix; NTP adds 2208988800.
        let ntp = (1_795_910_400u64 + 2_208_988_800) << 32 | (1u64 << 31);
        assert_eq!(ntp_to_unix_ms(ntp), 1_795_910_400_500);
    }

    #[test]
    fn activity_segments_join_short_gaps() {
        let mut levels = vec![127u8; 40];
        for l in &mut levels[2..6] {
            *l = 30;
        }
        for l in &mut levels[9..12] {
            *l = 40;
        } // 300 ms gap: joined
        for l in &mut levels[30..32] {
            *l = 20;
        } // far: separate
        let j: serde_json::Value = serde_json::from_str(&activity_json("s", "a1", "张三", "applicant", "t", &levels)).unwrap();
        assert_eq!(j["segments"], serde_json::json!([[200, 1200], [3000, 3200]]));
        assert_eq!(j["levels"].as_array().unwrap().len(), 40);
        assert_eq!(j["name"], "张三");
    }

    #[test]
    fn safe_parts() {
        assert_eq!(safe_part("a1"), "a1");
        assert_eq!(safe_part("../x"), "_.._x");
        assert_eq!(safe_part("张"), "_");
    }
}
