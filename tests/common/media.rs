//! Real media for test publishers: GStreamer encodes a test picture with `vp8enc`
//! and a sine tone with `opusenc`, and payloads them (`rtpvp8pay`, `rtpopuspay`);
//! the client forwards the RTP packets through its WebRTC tracks. A keyframe
//! request (PLI/FIR) from the SFU becomes a `GstForceKeyUnit` event to the encoder.
//!
//! [`MediaCtl`] lets a test switch audio/video sending off and on (an Opus DTX-like
//! gap: the RTP clock runs on, no packets go out) and records what was sent.

#![allow(dead_code)]

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;

/// What a real-media publisher sends.
#[derive(Debug, Clone)]
pub struct RealMedia {
    /// Sine tone frequency, Hz.
    pub tone_hz: f64,
    /// Picture size.
    pub width: u32,
    pub height: u32,
    /// Audio starts switched off (turn on with `MediaCtl::audio_off`).
    pub audio_off: bool,
}

impl RealMedia {
    pub fn tone(hz: f64) -> Self {
        Self { tone_hz: hz, width: 320, height: 240, audio_off: false }
    }
}

/// Live switches and counters of a real-media publisher.
#[derive(Debug, Default)]
pub struct MediaCtl {
    /// Audio packets are sent (default on).
    pub audio_off: AtomicBool,
    /// Video packets are sent (default on).
    pub video_off: AtomicBool,
    /// Wall-clock time of the first audio packet sent.
    pub first_audio: Mutex<Option<SystemTime>>,
    /// Wall-clock send time of each video frame (marker packets).
    pub video_frames: Mutex<Vec<SystemTime>>,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// Keyframes forced by requests.
    pub forced_keyframes: AtomicU64,
}

impl MediaCtl {
    /// Video frames sent within `[from, to]`.
    pub fn frames_between(&self, from: SystemTime, to: SystemTime) -> usize {
        self.video_frames.lock().unwrap().iter().filter(|t| **t >= from && **t <= to).count()
    }
}

/// One encoded RTP packet from GStreamer.
pub struct Encoded {
    pub video: bool,
    pub data: bytes::Bytes,
}

/// The running encoder pipelines.
pub struct Encoders {
    video: gst::Pipeline,
    audio: gst::Pipeline,
    video_sink: gst_app::AppSink,
}

impl Encoders {
    /// Starts both pipelines (live, real time) and returns the packet stream.
    pub fn start(m: &RealMedia) -> (Encoders, mpsc::Receiver<Encoded>) {
        gst::init().expect("gstreamer");
        let (tx, rx) = mpsc::channel::<Encoded>(4096);
        let video = gst::parse::launch(&format!(
            "videotestsrc is-live=true pattern=ball ! video/x-raw,width={},height={},framerate=30/1 ! \
             vp8enc deadline=1 cpu-used=8 keyframe-max-dist=3000 target-bitrate=300000 ! \
             rtpvp8pay pt=96 mtu=1100 picture-id-mode=15-bit ! appsink name=out sync=false max-buffers=1000",
            m.width, m.height
        ))
        .expect("video pipeline")
        .downcast::<gst::Pipeline>()
        .unwrap();
        let audio = gst::parse::launch(&format!(
            "audiotestsrc is-live=true wave=sine freq={} volume=0.5 samplesperbuffer=960 ! \
             audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=20 bitrate=32000 ! \
             rtpopuspay pt=111 ! appsink name=out sync=false max-buffers=1000",
            m.tone_hz
        ))
        .expect("audio pipeline")
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink_of = |p: &gst::Pipeline| p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        let video_sink = sink_of(&video);
        for (p, is_video) in [(&video, true), (&audio, false)] {
            let tx = tx.clone();
            sink_of(p).set_callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample(move |s| {
                        let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                        if let Some(buf) = sample.buffer() {
                            if let Ok(map) = buf.map_readable() {
                                let _ = tx.try_send(Encoded { video: is_video, data: bytes::Bytes::copy_from_slice(&map) });
                            }
                        }
                        Ok(gst::FlowSuccess::Ok)
                    })
                    .build(),
            );
        }
        video.set_state(gst::State::Playing).expect("video plays");
        audio.set_state(gst::State::Playing).expect("audio plays");
        (Encoders { video, audio, video_sink }, rx)
    }

    /// Asks the video encoder for a keyframe (RFC 4585 PLI → GstForceKeyUnit).
    pub fn force_keyframe(&self) {
        let s = gst::Structure::builder("GstForceKeyUnit").field("all-headers", true).build();
        if let Some(pad) = self.video_sink.static_pad("sink") {
            pad.push_event(gst::event::CustomUpstream::new(s));
        }
    }
}

impl Drop for Encoders {
    fn drop(&mut self) {
        let _ = self.video.set_state(gst::State::Null);
        let _ = self.audio.set_state(gst::State::Null);
    }
}

/// Shared handle to the controls.
pub type Ctl = Arc<MediaCtl>;

/// Goertzel power of `freq` in `samples` (rate `rate`), normalised by length.
pub fn goertzel(samples: &[i16], rate: f64, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) / 32768.0 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len().max(1) as f64).powi(2)
}

/// The first 10 ms window from which `freq` dominates (Goertzel power above
/// `threshold`), in ms from the start of `samples`.
pub fn tone_onset_ms(samples: &[i16], rate: f64, freq: f64, threshold: f64) -> Option<f64> {
    let win = (rate / 100.0) as usize;
    let mut i = 0;
    while i + win <= samples.len() {
        if goertzel(&samples[i..i + win], rate, freq) > threshold {
            // refine to 1 ms: first sample window whose RMS rises
            return Some(i as f64 * 1000.0 / rate);
        }
        i += win;
    }
    None
}
