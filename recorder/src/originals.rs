//! Originals: one track's RTP, unchanged codec, into Matroska segments with
//! GStreamer (issue 3, "Outputs" 1).
//!
//! ```text
//! appsrc (bounded, leaky) → rtpjitterbuffer → depayloader [→ parser] →
//!     splitmuxsink (matroskamux + filesink, a new segment every `segment`)
//! ```
//!
//! RTP framing per RFC 3550; payload formats: VP8 RFC 7741, H.264 RFC 6184,
//! Opus RFC 7587. Video segments are cut by `splitmuxsink` at the first
//! keyframe after the segment length, so every segment starts with a keyframe
//! and plays on its own. Asking the publisher for a
//! keyframe (PLI) shortly before a cut is the caller's (the live recorder asks the
//! SFU when a segment reaches its length); Opus DTX gaps stay gaps in Matroska time
//! (timestamps follow RTP time); writes are unbuffered, so a kill -9 loses at most
//! the jitter buffer's latency of the open segment.

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
pub struct TrackWriter {
    pipeline: gst::Pipeline,
    src: gst_app::AppSrc,
    cfg: TrackWriterConfig,
    dropped: AtomicU64,
    pending: Vec<SegmentEvent>,
    failed: Option<String>,
}

impl std::fmt::Debug for TrackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackWriter").field("cfg", &self.cfg).finish_non_exhaustive()
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

impl TrackWriter {
    /// Builds and starts the pipeline (initialising GStreamer if needed).
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] for a bad stem or payload type;
    /// [`RecorderError::Media`] when GStreamer or a needed element (plugins
    /// good: rtpjitterbuffer, depayloaders, matroskamux, splitmuxsink; base:
    /// opusparse is in bad) is unavailable or the pipeline will not start;
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
        let desc = format!(
            "splitmuxsink name=sink muxer-factory=matroskamux \
             appsrc name=src ! rtpjitterbuffer name=jb ! {depay} ! sink.{pad}",
            depay = cfg.codec.depay(),
            pad = if cfg.codec == Codec::Opus { "audio_0" } else { "video" }
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
        let location = format!("{}-%05d.mkv", base.display());
        sink.set_property("location", location);
        // Unbuffered writes: a kill -9 loses only what GStreamer still holds (the
        // jitter buffer's latency), never a user-space file buffer.
        let file = gst::ElementFactory::make("filesink")
            .property_from_str("buffer-mode", "unbuffered")
            .build()
            .map_err(|e| RecorderError::Media(format!("filesink: {e}")))?;
        sink.set_property("sink", &file);
        sink.set_property("max-size-time", u64::try_from(cfg.segment.as_nanos()).unwrap_or(u64::MAX));
        if cfg.codec != Codec::Opus {
            sink.set_property("send-keyframe-requests", true);
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| RecorderError::Media(format!("starting the pipeline: {e}")))?;
        Ok(Self { pipeline, src, cfg, dropped: AtomicU64::new(0), pending: Vec::new(), failed: None })
    }

    /// The pipeline's running time now: the arrival time to give a packet
    /// received now.
    pub fn now(&self) -> Duration {
        self.pipeline.current_running_time().map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()))
    }

    /// Queues one RTP packet (RFC 3550 header + payload, decrypted) that arrived now.
    pub fn push_rtp(&self, packet: &[u8]) -> Pushed {
        self.push_rtp_at(packet, self.now())
    }

    /// Queues one RTP packet with its arrival time on the pipeline's running
    /// time (used by the jitter buffer). Never blocks; when the queue holds
    /// `queue_packets` packets the packet is dropped and counted.
    pub fn push_rtp_at(&self, packet: &[u8], arrival: Duration) -> Pushed {
        if self.src.current_level_buffers() >= self.cfg.queue_packets || packet.len() < 12 {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return Pushed::Dropped;
        }
        let mut buf = gst::Buffer::from_mut_slice(packet.to_vec());
        if let Some(b) = buf.get_mut() {
            let t = gst::ClockTime::from_nseconds(u64::try_from(arrival.as_nanos()).unwrap_or(u64::MAX));
            b.set_pts(t);
            b.set_dts(t);
        }
        match self.src.push_buffer(buf) {
            Ok(_) => Pushed::Queued,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Pushed::Dropped
            }
        }
    }

    /// Packets dropped so far (queue full, too short, or pipeline stopped).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn handle(&mut self, msg: &gst::Message) -> bool {
        match msg.view() {
            gst::MessageView::Eos(_) => return true,
            gst::MessageView::Error(e) => {
                self.failed = Some(format!("{} ({:?})", e.error(), e.debug()));
                return true;
            }
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure() {
                    let ev: Option<fn(String) -> SegmentEvent> = match s.name().as_str() {
                        "splitmuxsink-fragment-opened" => Some(SegmentEvent::Opened),
                        "splitmuxsink-fragment-closed" => Some(SegmentEvent::Closed),
                        _ => None,
                    };
                    if let (Some(ev), Ok(loc)) = (ev, s.get::<String>("location")) {
                        let rel = Path::new(&loc)
                            .strip_prefix(&self.cfg.session_dir)
                            .map(|p| p.to_string_lossy().replace('\\', "/"))
                            .unwrap_or(loc);
                        self.pending.push(ev(rel));
                    }
                }
            }
            _ => {}
        }
        false
    }

    /// Segment events since the last call, without waiting.
    ///
    /// # Errors
    /// [`RecorderError::Media`] once the pipeline has failed.
    pub fn poll_events(&mut self) -> Result<Vec<SegmentEvent>, RecorderError> {
        if let Some(bus) = self.pipeline.bus() {
            while let Some(m) = bus.pop() {
                self.handle(&m);
            }
        }
        if let Some(f) = &self.failed {
            return Err(RecorderError::Media(f.clone()));
        }
        Ok(std::mem::take(&mut self.pending))
    }

    /// Ends the stream, waits up to `timeout` for the last segment to be
    /// finalised, stops the pipeline, and returns the remaining segment events
    /// (the last is the final segment's `Closed`).
    ///
    /// # Errors
    /// [`RecorderError::Media`] on a pipeline error or when `timeout` passes
    /// before end of stream (the pipeline is stopped either way).
    pub fn finish(mut self, timeout: Duration) -> Result<Vec<SegmentEvent>, RecorderError> {
        let _ = self.src.end_of_stream();
        let deadline = std::time::Instant::now() + timeout;
        let mut done = false;
        if let Some(bus) = self.pipeline.bus() {
            while !done {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let Some(m) = bus.timed_pop(gst::ClockTime::from_nseconds(left.as_nanos() as u64)) else { break };
                done = self.handle(&m);
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        if let Some(f) = self.failed.take() {
            return Err(RecorderError::Media(f));
        }
        if !done {
            return Err(RecorderError::Media(format!("no end of stream within {timeout:?}")));
        }
        Ok(std::mem::take(&mut self.pending))
    }
}

impl Drop for TrackWriter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
