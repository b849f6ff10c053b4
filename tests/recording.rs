//! The evidence recorder end to end (issue 3): real VP8 and Opus sine tones from
//! GStreamer, published by webrtc-rs clients through the real server, recorded with
//! consent; the originals, WAVs, speaking activity and the signed manifest checked
//! with GStreamer, `hound` and `fengqiao_recorder::verify`.

mod common;

use common::media::{goertzel, RealMedia};
use common::*;
use fengqiao_recorder::{verify, EvidenceKey};
use fengqiao_signaling::invite::Role;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn manifest(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("manifest.jsonl"))
        .expect("manifest")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

fn time_of(e: &Value) -> SystemTime {
    let t = chrono::DateTime::parse_from_rfc3339(e["t"].as_str().unwrap()).unwrap();
    UNIX_EPOCH + Duration::from_millis(t.timestamp_millis() as u64)
}

fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1000.0,
        Err(e) => -(e.duration().as_secs_f64() * 1000.0),
    }
}

/// Decodes Matroska segments in order; returns (frames or audio buffers, total ms
/// covered: last PTS + its duration − first PTS, summed over segments).
fn decode_mkv(files: &[std::path::PathBuf], video: bool) -> (usize, f64) {
    gst::init().unwrap();
    let mut count = 0;
    let mut total_ms = 0.0;
    for f in files {
        let dec = if video { "vp8dec" } else { "opusdec" };
        let p = gst::parse::launch(&format!(
            "filesrc location=\"{}\" ! matroskademux ! {dec} ! appsink name=out sync=false",
            f.display()
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = p.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let (mut first, mut last) = (None, 0u64);
        while let Some(s) = sink.try_pull_sample(gst::ClockTime::from_seconds(5)) {
            let b = s.buffer().unwrap();
            let pts = b.pts().map(|t| t.nseconds()).unwrap_or(0);
            let dur = b.duration().map(|t| t.nseconds()).unwrap_or(if video { 33_333_333 } else { 20_000_000 });
            first.get_or_insert(pts);
            last = last.max(pts + dur);
            count += 1;
        }
        p.set_state(gst::State::Null).unwrap();
        if let Some(f0) = first {
            total_ms += (last - f0) as f64 / 1e6;
        }
    }
    (count, total_ms)
}

fn wav(path: &Path) -> Vec<i16> {
    let r = hound::WavReader::open(path).expect("wav opens");
    let spec = r.spec();
    assert_eq!((spec.channels, spec.sample_rate, spec.bits_per_sample), (1, 48_000, 16), "{}", path.display());
    r.into_samples::<i16>().map(|s| s.unwrap()).collect()
}

fn slice_ms(s: &[i16], from_ms: f64, to_ms: f64) -> &[i16] {
    let a = ((from_ms.max(0.0)) * 48.0) as usize;
    let b = ((to_ms * 48.0) as usize).min(s.len());
    &s[a.min(b)..b]
}

fn rms(s: &[i16]) -> f64 {
    (s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / s.len().max(1) as f64).sqrt()
}

async fn recording_state(c: &Client, state: &str) -> Value {
    let mut found = None;
    wait_for(&format!("{} sees recording {state}", c.pid), Duration::from_secs(15), || {
        found = c.received.lock().unwrap().msgs.iter().rev().find(|m| m["type"] == "recording").cloned();
        found.as_ref().is_some_and(|m| m["state"] == state && (state != "stopped" || m["integrity"].is_string()))
    })
    .await;
    found.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn records_with_consent_dtx_offsets_and_verifies() {
    let (s, data) = start_server_with(|c| c.recorder.segment_secs = 10).await;
    let room = "rec-e2e";
    let m = Client::join_real(&s, "m1", token_as(&s, room, "m1", Role::Mediator), RealMedia::tone(700.0)).await;
    let a = Client::join_real(&s, "a1", token(&s, room, "a1", "张三"), RealMedia::tone(440.0)).await;
    let mut rm = RealMedia::tone(1000.0);
    rm.audio_off = true; // the respondent's audio starts later: a known offset
    let r = Client::join_real(&s, "r1", token(&s, room, "r1", "李四"), rm).await;
    wait_for("everyone sees video", Duration::from_secs(15), || {
        [&m, &a, &r].iter().all(|c| {
            let rx = c.received.lock().unwrap();
            rx.payloads.iter().filter(|((_, k), v)| *k == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video && v.len() > 10).count() >= 2
        })
    })
    .await;

    // Not the mediator: refused.
    a.send(json!({"type": "record", "action": "start"})).await;
    wait_for("forbidden", Duration::from_secs(5), || a.saw(|v| v["type"] == "error" && v["code"] == "forbidden")).await;
    // Start: the parties have not answered, so it pauses by itself.
    m.send(json!({"type": "record", "action": "start"})).await;
    let st = recording_state(&a, "paused").await;
    assert!(st["reason"].as_str().unwrap().starts_with("awaiting consent of"), "{st}");
    a.send(json!({"type": "consent", "answer": "accept"})).await;
    r.send(json!({"type": "consent", "answer": "refuse"})).await;
    wait_for("refusal shown", Duration::from_secs(5), || {
        m.saw(|v| v["type"] == "recording" && v["reason"] == "consent refused by r1" && v["consent"]["r1"] == "refuse")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // nothing may be recorded now
    r.send(json!({"type": "consent", "answer": "accept"})).await;
    recording_state(&m, "recording").await;

    tokio::time::sleep(Duration::from_millis(2000)).await;
    r.media.as_ref().unwrap().audio_off.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    // A 10 s Opus DTX-like gap: no packets, the RTP clock runs on.
    a.media.as_ref().unwrap().audio_off.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(10_000)).await;
    a.media.as_ref().unwrap().audio_off.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    m.send(json!({"type": "record", "action": "stop"})).await;
    let stopped = recording_state(&m, "stopped").await;
    let head = stopped["integrity"].as_str().unwrap().to_owned();
    assert_eq!(head.len(), 64);
    for c in [&a, &r] {
        assert_eq!(recording_state(c, "stopped").await["integrity"], head.as_str(), "everyone sees the same value");
    }

    // ---- the manifest
    let dir = data.path().join("sessions").join(room);
    let key = EvidenceKey::load(&data.path().join("keys")).unwrap();
    let report = verify(&dir, key.public_key());
    assert!(report.is_ok(), "verify: {report}");
    assert_eq!(report.head.map(|h| h.to_hex()).as_deref(), Some(head.as_str()));
    let entries = manifest(&dir);
    let of = |ty: &str| entries.iter().filter(|e| e["type"] == ty).cloned().collect::<Vec<_>>();
    let start = of("start")[0].clone();
    assert_eq!(start["actor"], "m1");
    let pauses = of("pause");
    assert!(pauses.iter().any(|p| p["actor"] == "system" && p["reason"] == "consent refused by r1"), "{pauses:?}");
    let resumes = of("resume");
    let resume = resumes.last().unwrap().clone();
    let stop = of("stop")[0].clone();
    assert_eq!(stop["actor"], "m1");
    assert_eq!(entries.last().unwrap()["type"], "end");
    let names: Vec<_> = of("participant").iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert!(names.contains(&"张三".to_owned()) && names.contains(&"李四".to_owned()), "{names:?}");
    let t0 = time_of(&start);
    let t_resume = time_of(&resume);
    let t_stop = time_of(&stop);
    let tracks = of("track");
    assert_eq!(tracks.len(), 6, "audio + video of three participants: {tracks:?}");
    let ends = of("track_end");
    assert_eq!(ends.len(), 6, "one track_end per track: {ends:?}");
    for e in &ends {
        assert!(e["packets"].as_u64().unwrap() > 100, "{e}");
        assert_eq!((e["lost"].as_u64(), e["queue_dropped"].as_u64()), (Some(0), Some(0)), "no loss on loopback: {e}");
    }
    let syncs: Vec<String> = tracks.iter().map(|t| format!("{}:{}", t["track"].as_str().unwrap(), t["sync"].as_str().unwrap())).collect();
    eprintln!("track placement: {syncs:?}");

    // ---- originals: frame count within 2 % of what was sent while recording; duration within 100 ms
    let files = of("file");
    let segs = |stem: &str| -> Vec<std::path::PathBuf> {
        files.iter().filter_map(|f| f["path"].as_str()).filter(|p| p.starts_with(stem)).map(|p| dir.join(p)).collect()
    };
    let video_a = segs("tracks/a1-video-0-");
    assert!(video_a.len() >= 2, "a 10 s segment length cuts the ~17 s video at least once: {video_a:?}");
    let (frames, video_ms) = decode_mkv(&video_a, true);
    let sent = a.media.as_ref().unwrap().frames_between(t_resume, t_stop);
    let diff = (frames as f64 - sent as f64).abs() / sent as f64;
    assert!(diff <= 0.02, "decoded {frames} frames, sent {sent} while recording ({:.1} %)", diff * 100.0);
    let expect_ms = ms_between(t_resume, t_stop);
    assert!((video_ms - expect_ms).abs() <= 100.0 + 34.0, "video lasts {video_ms:.0} ms, recording ran {expect_ms:.0} ms");
    let (_, audio_ms) = decode_mkv(&segs("tracks/a1-audio-0-"), false);
    assert!((audio_ms - expect_ms).abs() <= 100.0, "a1 audio (10 s DTX gap) lasts {audio_ms:.0} ms, recording ran {expect_ms:.0} ms");

    // ---- WAV per participant: on the session timeline, own tone only
    let wa = wav(&dir.join("audio/a1.wav"));
    let wr = wav(&dir.join("audio/r1.wav"));
    let wm = wav(&dir.join("audio/m1.wav"));
    let session_ms = ms_between(t0, t_stop);
    for (w, who) in [(&wa, "a1"), (&wm, "m1")] {
        let len_ms = w.len() as f64 / 48.0;
        assert!((len_ms - session_ms).abs() <= 100.0, "{who}.wav lasts {len_ms:.0} ms, session {session_ms:.0} ms");
    }
    let resume_ms = ms_between(t0, t_resume);
    // Consent refused: nothing recorded before the resume, although a1 was talking.
    assert!(rms(slice_ms(&wa, 0.0, resume_ms - 60.0)) < 1.0, "a1.wav must be silent while consent was missing");
    let talk = slice_ms(&wa, resume_ms + 500.0, resume_ms + 1500.0);
    let (p440, p1000, p700) = (goertzel(talk, 48_000.0, 440.0), goertzel(talk, 48_000.0, 1000.0), goertzel(talk, 48_000.0, 700.0));
    assert!(p440 > 100.0 * p1000 && p440 > 100.0 * p700, "a1.wav holds a1's tone only: {p440:e} {p1000:e} {p700:e}");
    // The DTX gap is silence, then the tone comes back.
    let first_audio_r = r.media.as_ref().unwrap().first_audio.lock().unwrap().unwrap();
    let gap = slice_ms(&wa, resume_ms + 4500.0, resume_ms + 13_500.0);
    assert!(rms(gap) < 1.0, "DTX gap is silent");
    let back = slice_ms(&wa, session_ms - 2000.0, session_ms - 1000.0);
    assert!(goertzel(back, 48_000.0, 440.0) > 100.0 * goertzel(back, 48_000.0, 1000.0), "a1's tone after the gap");
    // A known start offset: r1's first sound sits where it was sent, within 40 ms.
    let expect_r = ms_between(t0, first_audio_r);
    let onset_r = wr.iter().position(|&x| x.abs() > 300).map(|i| i as f64 / 48.0).expect("r1 spoke");
    assert!((onset_r - expect_r).abs() <= 40.0, "r1 starts at {onset_r:.1} ms on the timeline, sent at {expect_r:.1} ms");
    let rt = slice_ms(&wr, onset_r + 200.0, onset_r + 1200.0);
    assert!(goertzel(rt, 48_000.0, 1000.0) > 100.0 * goertzel(rt, 48_000.0, 440.0), "r1.wav holds r1's tone only");
    // And a1's first sound is the resume (it was talking all along). Looser than the
    // 40 ms above: the resume instant and the first packet after it are apart by up to
    // a packet interval plus the test client's scheduling on a loaded machine.
    let onset_a = wa.iter().position(|&x| x.abs() > 300).map(|i| i as f64 / 48.0).unwrap();
    assert!((onset_a - resume_ms).abs() <= 100.0, "a1 starts at {onset_a:.1} ms, recording resumed at {resume_ms:.1} ms");

    eprintln!(
        "recording figures: video frames {frames} decoded / {sent} sent ({:.2} %), video {video_ms:.0} ms, a1 audio {audio_ms:.0} ms, \
         recording ran {expect_ms:.0} ms; r1 onset {onset_r:.1} ms vs sent {expect_r:.1} ms; a1 onset {onset_a:.1} ms vs resume {resume_ms:.1} ms",
        diff * 100.0
    );
    // ---- speaking activity
    let act: Value = serde_json::from_slice(&std::fs::read(dir.join("audio/a1.activity.json")).unwrap()).unwrap();
    assert_eq!(act["name"], "张三");
    assert_eq!(act["resolution_ms"], 100);
    let segs_a = act["segments"].as_array().unwrap();
    assert!(segs_a.len() >= 2, "a1 spoke before and after the gap: {segs_a:?}");
    let first = segs_a[0][0].as_f64().unwrap();
    assert!((first - resume_ms).abs() <= 150.0, "speaking starts at {first} ms, resume at {resume_ms:.0}");

    // ---- one flipped byte in a recorded segment is named by verify
    let victim = dir.join(&video_a[0]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&victim, &bytes).unwrap();
    let bad = verify(&dir, key.public_key());
    assert!(!bad.is_ok(), "a flipped byte must fail verification");
    let name = victim.strip_prefix(&dir).unwrap().to_string_lossy().to_string();
    assert!(bad.to_string().contains(&name), "the report names {name}: {bad}");

    // ---- a stopped record stays closed
    m.send(json!({"type": "record", "action": "start"})).await;
    wait_for("start after stop refused", Duration::from_secs(5), || {
        m.saw(|v| v["type"] == "error" && v["re"] == "record" && v["code"] == "wrong_state")
    })
    .await;
    s.shutdown().await;
}

/// Process CPU time (user + system), seconds, from /proc/self/stat (fields 14, 15; 100 Hz ticks).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// Recorder CPU per recorded track (a figure, not a check): the same three real-media
/// participants for 10 s unrecorded, then 10 s recorded; the difference in this
/// process's CPU time over the 6 tracks. Run: `cargo test --release --test recording
/// -- --ignored --nocapture recorder_cpu`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn recorder_cpu_per_track() {
    let (s, _data) = start_server_with(|c| c.recorder.segment_secs = 300).await;
    let room = "rec-cpu";
    let m = Client::join_real(&s, "m1", token_as(&s, room, "m1", Role::Mediator), RealMedia::tone(700.0)).await;
    let a = Client::join_real(&s, "a1", token(&s, room, "a1", "张三"), RealMedia::tone(440.0)).await;
    let r = Client::join_real(&s, "r1", token(&s, room, "r1", "李四"), RealMedia::tone(1000.0)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let window = Duration::from_secs(10);
    let c0 = cpu_secs();
    tokio::time::sleep(window).await;
    let plain = cpu_secs() - c0;
    m.send(json!({"type": "record", "action": "start"})).await;
    recording_state(&a, "paused").await;
    a.send(json!({"type": "consent", "answer": "accept"})).await;
    r.send(json!({"type": "consent", "answer": "accept"})).await;
    recording_state(&m, "recording").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let c1 = cpu_secs();
    tokio::time::sleep(window).await;
    let recorded = cpu_secs() - c1;
    let per_track = (recorded - plain) / 6.0 / window.as_secs_f64() * 100.0;
    eprintln!(
        "recorder CPU: unrecorded {plain:.2} s, recorded {recorded:.2} s of CPU per {} s; {per_track:.2} % of one core per recorded track \
         (3 × 320x240 VP8 ~300 kbps + Opus 32 kbps)",
        window.as_secs()
    );
    m.send(json!({"type": "record", "action": "stop"})).await;
    recording_state(&m, "stopped").await;
    s.shutdown().await;
}

/// A case session (scheduled by the case service, invites carrying the dispute and
/// session ids) recorded end to end: at stop, each participant's WAV is registered
/// with the case as a recording carrying the session's integrity check value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_case_session_is_registered_with_its_integrity_value() {
    let (s, _data) = start_server_with(|c| c.recorder.render_after_stop = true).await;
    fengqiao_cases::load_demo_data(&s.cases).await.expect("demo data");
    let store = &s.cases;
    let mut dispute = None;
    for id in 1..200 {
        if let Ok(Some(d)) = store.get_dispute(id).await {
            if matches!(d.status.as_str(), "accepted" | "in_mediation") && d.mediator_id.is_some() {
                dispute = Some(d);
                break;
            }
        }
    }
    let d = dispute.expect("the demo district has an accepted dispute");
    let at = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let sched = fengqiao_cases::service::ScheduleSession { scheduled_at: at, duration_minutes: 60, party_ids: None };
    let scheduled = store.schedule_session(&fengqiao_cases::Actor::system(), &d, &sched).await.expect("scheduled");
    let token_of = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let med = scheduled.invites.iter().find(|i| i.role == "mediator").expect("a mediator invite");
    let party = scheduled.invites.iter().find(|i| i.role != "mediator").expect("a party invite");
    let m = Client::join_real(&s, &med.pid, token_of(&med.url), RealMedia::tone(700.0)).await;
    let p = Client::join_real(&s, &party.pid, token_of(&party.url), RealMedia::tone(440.0)).await;
    // The party waits until the mediator admits them.
    wait_for("party waiting", Duration::from_secs(10), || m.saw(|v| v["type"] == "participant_waiting")).await;
    m.send(json!({"type": "admit", "id": party.pid})).await;
    wait_for("admitted", Duration::from_secs(10), || p.saw(|v| v["type"] == "admitted")).await;
    m.send(json!({"type": "record", "action": "start"})).await;
    recording_state(&p, "paused").await;
    p.send(json!({"type": "consent", "answer": "accept"})).await;
    recording_state(&m, "recording").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A caucus while recording: the manifest says which room the media belongs to.
    m.send(json!({"type": "move", "id": party.pid, "to": "applicant-room"})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    m.send(json!({"type": "move", "id": party.pid, "to": "main"})).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    m.send(json!({"type": "record", "action": "stop"})).await;
    let head = recording_state(&m, "stopped").await["integrity"].as_str().unwrap().to_owned();
    let dir = _data.path().join("sessions").join(scheduled.session.id.to_string());
    let moved: Vec<(String, String)> = manifest(&dir)
        .iter()
        .filter(|e| e["type"] == "moved")
        .map(|e| (e["pid"].as_str().unwrap().to_owned(), e["room"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        moved,
        vec![(party.pid.clone(), "applicant-room".to_owned()), (party.pid.clone(), "main".to_owned())],
        "moves are on the record"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let wavs = loop {
        let recs = store.dispute_detail(d.id).await.expect("dispute detail").recordings;
        if recs.len() >= 2 {
            break recs;
        }
        assert!(std::time::Instant::now() < deadline, "recordings not registered within 10 s: {recs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(wavs.iter().all(|r| r.media_type == "audio/wav"), "the WAVs come first, at stop: {wavs:?}");
    let sid = scheduled.session.id;
    // The review video follows in the background, registered like the WAVs.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let recs = loop {
        let recs = store.dispute_detail(d.id).await.expect("dispute detail").recordings;
        if recs.iter().any(|r| r.media_type == "video/mp4") {
            break recs;
        }
        assert!(std::time::Instant::now() < deadline, "review video not registered within 120 s: {recs:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let review = recs.iter().find(|r| r.media_type == "video/mp4").unwrap();
    assert_eq!(review.file_path, format!("{sid}/review/main.mp4"));
    assert!(dir.join("review/main.mp4").is_file());
    // The caucus got its own (confidential) video, which is not registered with the case.
    assert!(dir.join("review/caucus-applicant-room.mp4").is_file(), "the side room's review video");
    assert!(!recs.iter().any(|r| r.file_path.contains("caucus")), "caucus videos stay out of the case's recordings");
    for r in &recs {
        assert_eq!(r.session_id, sid);
        assert_eq!(r.integrity_sha256, head, "the recording carries the integrity check value");
        assert!(
            (r.media_type == "audio/wav" && r.file_path.starts_with(&format!("{sid}/audio/")))
                || (r.media_type == "video/mp4" && r.file_path == format!("{sid}/review/main.mp4")),
            "{r:?}"
        );
        assert!(r.size_bytes > 44, "{r:?}");
    }
    s.shutdown().await;
}

/// A party's connection drops during a recording and resumes on a new peer
/// connection (new SSRCs, sequence numbers and RTP times): the recorder closes the
/// old tracks and records the continuation as new ones; the record verifies.
/// The mediator m1 (a 700 Hz tone) and the applicant a1 (440 Hz) join with real
/// media; the mediator starts recording and a1 consents: returns once it records.
async fn recording_pair(s: &fengqiao::server::Running, m_tok: String, a_tok: String) -> (Client, Client) {
    let m = Client::join_real(s, "m1", m_tok, RealMedia::tone(700.0)).await;
    let a = Client::join_real(s, "a1", a_tok, RealMedia::tone(440.0)).await;
    wait_for("connected", Duration::from_secs(15), || {
        m.connected.load(Ordering::SeqCst) && a.connected.load(Ordering::SeqCst)
    })
    .await;
    m.send(json!({"type": "record", "action": "start"})).await;
    recording_state(&a, "paused").await;
    a.send(json!({"type": "consent", "answer": "accept"})).await;
    recording_state(&m, "recording").await;
    (m, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_during_recording_starts_new_tracks() {
    let (s, data) = start_server_with(|c| c.media.resume_window_ms = 10_000).await;
    let room = "rec-resume";
    let a_tok = token(&s, room, "a1", "张三");
    let (m, a) = recording_pair(&s, token_as(&s, room, "m1", Role::Mediator), a_tok.clone()).await;
    let resume_token = a.joined["resume_token"].as_str().expect("a resume token").to_owned();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.vanish().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = json!({"type": "resume", "v": 1, "token": a_tok, "resume_token": resume_token, "restart": true});
    let a2 = Client::join_with(&ws_url(&s), "a1", first, Some(RealMedia::tone(440.0))).await;
    assert_eq!(a2.joined["resumed"], true, "{}", a2.joined);
    tokio::time::sleep(Duration::from_secs(3)).await;
    m.send(json!({"type": "record", "action": "stop"})).await;
    recording_state(&m, "stopped").await;
    let dir = data.path().join("sessions").join(room);
    let key = EvidenceKey::load(&data.path().join("keys")).unwrap();
    let report = verify(&dir, key.public_key());
    assert!(report.is_ok(), "verify: {report}");
    let entries = manifest(&dir);
    let a_tracks: Vec<String> = entries
        .iter()
        .filter(|e| e["type"] == "track" && e["pid"] == "a1")
        .map(|e| e["track"].as_str().unwrap().to_owned())
        .collect();
    for t in ["tracks/a1-audio-0", "tracks/a1-audio-1", "tracks/a1-video-0", "tracks/a1-video-1"] {
        assert!(a_tracks.iter().any(|x| x == t), "{t} in {a_tracks:?}");
    }
    // a1's WAV holds the tone before the drop and after the resume.
    let wa = wav(&dir.join("audio/a1.wav"));
    let len_ms = wa.len() as f64 / 48.0;
    let before = slice_ms(&wa, len_ms - 6000.0, len_ms - 5000.0);
    let after = slice_ms(&wa, len_ms - 1500.0, len_ms - 500.0);
    for (w, when) in [(before, "before the drop"), (after, "after the resume")] {
        assert!(goertzel(w, 48_000.0, 440.0) > 100.0 * goertzel(w, 48_000.0, 700.0), "a1's tone {when}");
    }
    s.shutdown().await;
}

/// A lone participant opening the session again (a second tab, a reload) replaces
/// their own connection: the room and its recording go on, and the mediator stops it
/// from the new tab. It used to count as the last one leaving: the recording was
/// stopped for good by the system (found by a session-breaking run).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lone_mediator_opening_a_second_tab_keeps_the_recording() {
    let (s, data) = start_server_with(|_| {}).await;
    let room = "rec-second-tab";
    let m_tok = token_as(&s, room, "m1", Role::Mediator);
    let (m, a) = recording_pair(&s, m_tok.clone(), token(&s, room, "a1", "张三")).await;
    a.leave().await;
    wait_for("m1 to see a1 leave", Duration::from_secs(10), || {
        m.saw(|v| v["type"] == "participant_left" && v["id"] == "a1")
    })
    .await;

    let m2 = Client::join_real(&s, "m1", m_tok, RealMedia::tone(700.0)).await;
    wait_for("the first tab to be told it was replaced", Duration::from_secs(10), || {
        m.saw(|v| v["type"] == "closed" && v["reason"] == "replaced")
    })
    .await;
    let st = recording_state(&m2, "recording").await;
    assert_eq!(st["consent"]["m1"], "accept", "{st}");
    m2.send(json!({"type": "record", "action": "stop"})).await;
    recording_state(&m2, "stopped").await;
    let dir = data.path().join("sessions").join(room);
    let key = EvidenceKey::load(&data.path().join("keys")).unwrap();
    let report = verify(&dir, key.public_key());
    assert!(report.is_ok(), "verify: {report}");
    let stops: Vec<Value> = manifest(&dir).into_iter().filter(|e| e["type"] == "stop").collect();
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0]["actor"], "m1", "the mediator stopped it, not the system: {stops:?}");
    drop(m);
    s.shutdown().await;
}
