//! Originals: one track's RTP, unchanged codec, into Matroska segments with
//! GStreamer (issue 3, "Outputs" 1).
//!
//! ```text
//! appsrc (bounded, leaky) → rtpjitterbuffer → depayloader [→ parser] →
//!     matroskamux → filesink (unbuffered); a new pipeline per segment
//! ```
//!
//! RTP framing per RFC 3550; payload formats: VP8 RFC 7741, H.264 RFC 6184,
//! Opus RFC 7587. Video segments are cut at the first keyframe after the segment
//! length, so every segment starts with a keyframe and plays on its own; the
//! writer says when it waits for one ([`TrackWriter::wants_keyframe`]) and the
//! live recorder asks the publisher (PLI through the SFU). Timestamps follow RTP
//! time (Opus DTX gaps are filled by the live recorder); writes are unbuffered,
//! so a kill -9 loses at most the jitter buffer's latency of the open segment.

use crate::RecorderError;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The codec of a recorded track, as received (no transcoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// VP8 video, RTP clock 90 kHz (RFC 7741).
    Vp8,
    /// H.264 video, RTP clock 90 kHz (RFC 6184).
    H264,
    /// Opus audio, RTP clock 48 kHz (RFC 7587).
    Opus,
}

impl Codec {
    /// The name used in manifests (`codec` of `file_open`).
    pub fn name(&self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
            Codec::Opus => "Opus",
        }
    }
    fn rtp_caps(&self, pt: u8) -> gst::Caps {
        let (media, enc, rate) = match self {
            Codec::Vp8 => ("video", "VP8", 90_000),
            Codec::H264 => ("video", "H264", 90_000),
            Codec::Opus => ("audio", "OPUS", 48_000),
        };
        gst::Caps::builder("application/x-rtp")
            .field("media", media)
            .field("encoding-name", enc)
            .field("clock-rate", rate)
            .field("payload", i32::from(pt))
            .build()
    }
    /// RTP clock rate, Hz.
    pub fn clock(&self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 90_000,
        }
    }
    /// Whether an RTP payload starts a keyframe (VP8 RFC 7741 §4.3, H.264 IDR/SPS RFC 6184).
    pub fn is_keyframe_start(&self, payload: &[u8]) -> bool {
        use fengqiao_sfu::keyframe::{is_keyframe_start, VideoCodec};
        match self {
            Codec::Vp8 => is_keyframe_start(VideoCodec::Vp8, payload),
            Codec::H264 => is_keyframe_start(VideoCodec::H264, payload),
            Codec::Opus => true,
        }
    }
    fn depay(&self) -> &'static str {
        match self {
            Codec::Vp8 => "rtpvp8depay",
            Codec::H264 => "rtph264depay ! h264parse",
            Codec::Opus => "rtpopusdepay ! opusparse",
        }
    }
}

/// Settings of one [`TrackWriter`].
#[derive(Debug, Clone)]
pub struct TrackWriterConfig {
    /// The session folder; segment paths are reported relative to it.
    pub session_dir: PathBuf,
    /// Segment name stem relative to `session_dir`, `/`-separated, e.g.
    /// `tracks/m1-video`; segments are `<stem>-00000.mkv`, `<stem>-00001.mkv`, ….
    pub stem: String,
    /// The track's codec.
    pub codec: Codec,
    /// Negotiated RTP payload type (0–127).
    pub payload_type: u8,
    /// Segment length; video cuts at the first keyframe after it. Default 5 min.
    pub segment: Duration,
    /// Capacity of the input queue in packets; a packet arriving when it is full
    /// is dropped and counted, never blocking the caller. Default 2000.
    pub queue_packets: u64,
    /// Jitter buffer latency. Default 200 ms.
    pub jitter_latency: Duration,
}

impl TrackWriterConfig {
    /// Defaults for `codec` and `payload_type` writing `<session_dir>/<stem>-NNNNN.mkv`.
    pub fn new(session_dir: &Path, stem: &str, codec: Codec, payload_type: u8) -> Self {
        Self {
            session_dir: session_dir.to_owned(),
            stem: stem.to_owned(),
            codec,
            payload_type,
            segment: Duration::from_secs(300),
            queue_packets: 2000,
            jitter_latency: Duration::from_millis(200),
        }
    }
}

/// A segment event from the muxer; paths relative to the session folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEvent {
    /// A new segment file was opened (record `file_open`).
    Opened(String),
    /// A segment file is complete and closed (hash it: `file`).
    Closed(String),
}

/// Whether [`TrackWriter::push_rtp`] took the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued for writing.
    Queued,
    /// Dropped: the queue was full (counted in [`TrackWriter::dropped`]).
    Dropped,
}

/// Writes one track's RTP packets into Matroska segments. Never blocks the
/// caller: pushing is a bounded, leaky enqueue.
///
/// Each segment is its own pipeline (`appsrc → rtpjitterbuffer → depayloader →
/// matroskamux → filesink`, unbuffered), so every frame reaches the file as it is
/// muxed: a kill -9 loses only what the jitter buffer still holds. A segment is cut
/// once it spans [`TrackWriterConfig::segment`] of RTP time — audio at the next
/// packet, video at the next packet that starts a keyframe (ask the publisher for one
/// while [`TrackWriter::wants_keyframe`] is true). The old segment drains and closes
/// in the background; [`TrackWriter::poll_events`] reports it.
pub struct TrackWriter {
    cfg: TrackWriterConfig,
    current: Segment,
    /// Segments ended, waiting for their end of stream.
    closing: Vec<Segment>,
    next_index: u32,
    /// RTP timestamp of the current segment's first packet.
    seg_first_ts: Option<u32>,
    cut_due: bool,
    dropped: AtomicU64,
    pending: Vec<SegmentEvent>,
    failed: Option<String>,
}

struct Segment {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    /// Relative path of the file.
    path: String,
    /// Arrival (caller's clock) of the segment's first packet: its time zero.
    base: Option<Duration>,
}

impl std::fmt::Debug for TrackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackWriter").field("cfg", &self.cfg).field("segment", &self.current.path).finish_non_exhaustive()
    }
}

fn media(what: &str) -> impl FnOnce(glib_error::Any) -> RecorderError + '_ {
    move |e| RecorderError::Media(format!("{what}: {}", e.0))
}

mod glib_error {
    /// Any displayable GStreamer-side error.
    pub struct Any(pub String);
    impl<E: std::fmt::Display> From<E> for Any {
        fn from(e: E) -> Self {
            Any(e.to_string())
        }
    }
}

/// The RTP payload of a packet (RFC 3550 §5.1: after CSRCs and the extension).
fn rtp_payload(p: &[u8]) -> Option<&[u8]> {
    if p.len() < 12 {
        return None;
    }
    let cc = usize::from(p[0] & 0x0f);
    let mut off = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let ext = p.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    p.get(off..)
}

impl TrackWriter {
    /// Builds and starts the first segment's pipeline (initialising GStreamer if needed).
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] for a bad stem or payload type;
    /// [`RecorderError::Media`] when GStreamer or a needed element (plugins
    /// good: rtpjitterbuffer, depayloaders, matroskamux; bad: opusparse) is
    /// unavailable or the pipeline will not start;
    /// [`RecorderError::Io`] when the segment folder cannot be made.
    pub fn start(cfg: TrackWriterConfig) -> Result<Self, RecorderError> {
        crate::manifest::check_rel_path(&format!("{}-00000.mkv", cfg.stem)).map_err(RecorderError::Invalid)?;
        if cfg.payload_type > 127 || cfg.queue_packets == 0 {
            return Err(RecorderError::Invalid("payload type above 127 or empty queue".into()));
        }
        gst::init().map_err(|e| media("GStreamer init")(e.into()))?;
        let base = cfg.session_dir.join(&cfg.stem);
        if let Some(parent) = base.parent() {
            std::fs::create_dir_all(parent).map_err(RecorderError::io(parent))?;
        }
        let current = Self::segment(&cfg, 0)?;
        let pending = vec![SegmentEvent::Opened(current.path.clone())];
        Ok(Self {
            cfg,
            current,
            closing: Vec::new(),
            next_index: 1,
            seg_first_ts: None,
            cut_due: false,
            dropped: AtomicU64::new(0),
            pending,
            failed: None,
        })
    }

    fn segment(cfg: &TrackWriterConfig, index: u32) -> Result<Segment, RecorderError> {
        let path = format!("{}-{index:05}.mkv", cfg.stem);
        let desc = format!(
            "appsrc name=src ! rtpjitterbuffer name=jb ! {depay} ! matroskamux name=mux ! filesink name=sink",
            depay = cfg.codec.depay(),
        );
        let pipeline = gst::parse::launch(&desc)
            .map_err(|e| media("building the pipeline")(e.into()))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| RecorderError::Media("not a pipeline".into()))?;
        let get = |n: &str| pipeline.by_name(n).ok_or_else(|| RecorderError::Media(format!("no element {n}")));
        let src = get("src")?
            .downcast::<gst_app::AppSrc>()
            .map_err(|_| RecorderError::Media("src is not an appsrc".into()))?;
        src.set_caps(Some(&cfg.codec.rtp_caps(cfg.payload_type)));
        src.set_format(gst::Format::Time);
        src.set_is_live(true);
        src.set_block(false);
        src.set_max_buffers(cfg.queue_packets);
        src.set_max_bytes(0);
        src.set_leaky_type(gst_app::AppLeakyType::Upstream);
        let jb = get("jb")?;
        jb.set_property("latency", u32::try_from(cfg.jitter_latency.as_millis()).unwrap_or(u32::MAX));
        // Timestamps from RTP time alone (no arrival-time skew): gaps (DTX fillers,
        // pauses) keep their exact length and bursts do not bend the timeline.
        jb.set_property_from_str("mode", "none");
        let sink = get("sink")?;
        sink.set_property("location", cfg.session_dir.join(&path).to_string_lossy().to_string());
        // Unbuffered writes: a kill -9 loses only what GStreamer still holds (the
        // jitter buffer's latency), never a user-space file buffer.
        sink.set_property_from_str("buffer-mode", "unbuffered");
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| RecorderError::Media(format!("starting the pipeline: {e}")))?;
        Ok(Segment { pipeline, src, path, base: None })
    }

    /// The current segment's running time now: the arrival time to give a packet
    /// received now.
    pub fn now(&self) -> Duration {
        self.current.pipeline.current_running_time().map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()))
    }

    /// Queues one RTP packet (RFC 3550 header + payload, decrypted) that arrived now.
    pub fn push_rtp(&mut self, packet: &[u8]) -> Pushed {
        let now = self.now();
        let base = self.current.base.unwrap_or(Duration::ZERO);
        self.push_rtp_at(packet, now + base)
    }

    /// Video: a segment cut is due and waits for a keyframe (ask the publisher).
    pub fn wants_keyframe(&self) -> bool {
        self.cut_due && self.cfg.codec != Codec::Opus
    }

    /// Queues one RTP packet with its arrival time on the caller's clock (used by the
    /// jitter buffer; each segment starts at its first packet's arrival). Never
    /// blocks; when the queue holds `queue_packets` packets the packet is dropped and
    /// counted. Cuts the segment first when one is due and this packet may start one.
    pub fn push_rtp_at(&mut self, packet: &[u8], arrival: Duration) -> Pushed {
        if packet.len() < 12 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Pushed::Dropped;
        }
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let first = *self.seg_first_ts.get_or_insert(ts);
        let elapsed = Duration::from_secs_f64(f64::from(ts.wrapping_sub(first) as i32).max(0.0) / f64::from(self.cfg.codec.clock()));
        if elapsed >= self.cfg.segment {
            self.cut_due = true;
        }
        if self.cut_due {
            let can_start = match self.cfg.codec {
                Codec::Opus => true,
                c => rtp_payload(packet).is_some_and(|p| c.is_keyframe_start(p)),
            };
            if can_start {
                if let Err(e) = self.cut() {
                    self.failed = Some(e.to_string());
                }
                self.seg_first_ts = Some(ts);
            }
        }
        let seg = &mut self.current;
        if seg.src.current_level_buffers() >= self.cfg.queue_packets {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Pushed::Dropped;
        }
        let base = *seg.base.get_or_insert(arrival);
        let mut buf = gst::Buffer::from_mut_slice(packet.to_vec());
        if let Some(b) = buf.get_mut() {
            let t = gst::ClockTime::from_nseconds(u64::try_from(arrival.saturating_sub(base).as_nanos()).unwrap_or(u64::MAX));
            b.set_pts(t);
            b.set_dts(t);
        }
        match seg.src.push_buffer(buf) {
            Ok(_) => Pushed::Queued,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Pushed::Dropped
            }
        }
    }

    /// Ends the current segment (it drains and closes in the background) and opens the next.
    fn cut(&mut self) -> Result<(), RecorderError> {
        let next = Self::segment(&self.cfg, self.next_index)?;
        self.next_index += 1;
        let old = std::mem::replace(&mut self.current, next);
        let _ = old.src.end_of_stream();
        self.closing.push(old);
        self.pending.push(SegmentEvent::Opened(self.current.path.clone()));
        self.cut_due = false;
        Ok(())
    }

    /// Segment events are waiting for [`TrackWriter::poll_events`] (a cut just happened).
    pub fn has_events(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Packets dropped so far (queue full, too short, or pipeline stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// `Some(true)` at end of stream, `Some(false)` on error (kept in `failed`).
    fn bus_state(seg: &Segment, failed: &mut Option<String>, wait: Option<Duration>) -> Option<bool> {
        let bus = seg.pipeline.bus()?;
        loop {
            let m = match wait {
                None => bus.pop(),
                Some(w) => bus.timed_pop(gst::ClockTime::from_nseconds(w.as_nanos() as u64)),
            }?;
            match m.view() {
                gst::MessageView::Eos(_) => return Some(true),
                gst::MessageView::Error(e) => {
                    *failed = Some(format!("{}: {} ({:?})", seg.path, e.error(), e.debug()));
                    return Some(false);
                }
                _ => {}
            }
        }
    }

    /// Segment events since the last call, without waiting.
    ///
    /// # Errors
    /// [`RecorderError::Media`] once a pipeline has failed.
    pub fn poll_events(&mut self) -> Result<Vec<SegmentEvent>, RecorderError> {
        let mut i = 0;
        while i < self.closing.len() {
            match Self::bus_state(&self.closing[i], &mut self.failed, None) {
                Some(_) => {
                    let seg = self.closing.remove(i);
                    let _ = seg.pipeline.set_state(gst::State::Null);
                    self.pending.push(SegmentEvent::Closed(seg.path.clone()));
                }
                None => i += 1,
            }
        }
        if Self::bus_state(&self.current, &mut self.failed, None) == Some(false) {
            // fall through: reported below
        }
        if let Some(f) = &self.failed {
            return Err(RecorderError::Media(f.clone()));
        }
        Ok(std::mem::take(&mut self.pending))
    }

    /// Ends the stream, waits up to `timeout` for every segment to be finalised,
    /// stops the pipelines, and returns the remaining segment events (the last is
    /// the final segment's `Closed`).
    ///
    /// # Errors
    /// [`RecorderError::Media`] on a pipeline error or when `timeout` passes
    /// before end of stream (the pipelines are stopped either way).
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<SegmentEvent>, RecorderError> {
        let _ = self.current.src.end_of_stream();
        let deadline = std::time::Instant::now() + timeout;
        let current = std::mem::take(&mut self.closing);
        let mut all = current;
        // The current segment last, so its Closed event comes last.
        let last = Segment {
            pipeline: self.current.pipeline.clone(),
            src: self.current.src.clone(),
            path: self.current.path.clone(),
            base: None,
        };
        all.push(last);
        let mut timed_out = false;
        for seg in &all {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match Self::bus_state(seg, &mut self.failed, Some(left)) {
                Some(true) => self.pending.push(SegmentEvent::Closed(seg.path.clone())),
                Some(false) => {}
                None => timed_out = true,
            }
            let _ = seg.pipeline.set_state(gst::State::Null);
        }
        if let Some(f) = self.failed.take() {
            return Err(RecorderError::Media(f));
        }
        if timed_out {
            return Err(RecorderError::Media(format!("no end of stream within {timeout:?}")));
        }
        Ok(std::mem::take(&mut self.pending))
    }
}

impl Drop for TrackWriter {
    fn drop(&mut self) {
        let _ = self.current.pipeline.set_state(gst::State::Null);
        for s in &self.closing {
            let _ = s.pipeline.set_state(gst::State::Null);
        }
    }
}
