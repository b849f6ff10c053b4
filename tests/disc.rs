//! Disc export (issue 9, `docs/disc.md`) with the real tools: xorriso builds the
//! images; `isoinfo` (genisoimage, Rock Ridge) and `7z` (p7zip, Joliet and
//! multi-extent) read them back independently of xorriso; the offline page runs in
//! headless Chromium through chromedriver; bad input runs the real `fengqiao` binary,
//! with a read-only bind mount and a full tmpfs inside `unshare -m`.
//!
//! Session folders are built here with the recorder crate's public API
//! (`ManifestWriter`) and real media made by GStreamer (Opus and VP8 in Matroska,
//! WAV, H.264 + AAC in MP4); large files are sparse.
//!
//! `large_file_multi_extent_dvd_dl` (4.3 GiB) is `#[ignore]`d: `make test-large`.

use fantoccini::wd::Capabilities;
use fantoccini::{ClientBuilder, Locator};
use fengqiao_recorder::disc::{self, DiscManifest, ExportRequest, Media, SessionSource};
use fengqiao_recorder::{Answer, Body, EvidenceKey, FileStatus, ManifestWriter, RecorderError, SessionHeader, Timestamp, TrackKind};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CASE: &str = "(2026)枫调字第00001号";

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(1_795_900_000_000 + ms).unwrap()
}

/// Runs a GStreamer pipeline to its end.
fn gst_run(desc: &str) {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    gst::init().expect("gstreamer");
    let p = gst::parse::launch(desc).unwrap_or_else(|e| panic!("pipeline {desc}: {e}"));
    p.set_state(gst::State::Playing).expect("playing");
    let bus = p.bus().expect("bus");
    let msg = bus.timed_pop_filtered(gst::ClockTime::from_seconds(60), &[gst::MessageType::Eos, gst::MessageType::Error]);
    let _ = p.set_state(gst::State::Null);
    match msg.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => {}
        Some(gst::MessageView::Error(e)) => panic!("{desc}: {} ({:?})", e.error(), e.debug()),
        _ => panic!("{desc}: no end within 60 s"),
    }
}

fn loc(p: &Path) -> String {
    p.display().to_string().replace('"', "\\\"")
}

fn make_opus_mkv(p: &Path) {
    gst_run(&format!("audiotestsrc num-buffers=100 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! opusenc ! matroskamux ! filesink location=\"{}\"", loc(p)));
}
fn make_vp8_mkv(p: &Path) {
    gst_run(&format!("videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240,framerate=15/1 ! vp8enc deadline=1 ! matroskamux ! filesink location=\"{}\"", loc(p)));
}
fn make_wav(p: &Path, seconds: u32) {
    gst_run(&format!(
        "audiotestsrc num-buffers={} samplesperbuffer=4800 ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! wavenc ! filesink location=\"{}\"",
        seconds * 10,
        loc(p)
    ));
}
fn make_mp4(p: &Path) {
    gst_run(&format!(
        "videotestsrc num-buffers=20 ! video/x-raw,width=320,height=240,framerate=10/1 ! videoconvert ! openh264enc ! h264parse ! mp4mux name=mux faststart=true ! filesink location=\"{}\" \
         audiotestsrc num-buffers=20 samplesperbuffer=4800 ! audio/x-raw,rate=48000,channels=1 ! audioconvert ! voaacenc ! aacparse ! mux.",
        loc(p)
    ));
}

/// A long file name (> 103 UTF-16 units, < 255 bytes) that Joliet cannot hold.
fn long_name() -> String {
    format!("tracks/张三-长名称-{}.mkv", "x".repeat(120))
}

/// What to put in a test session folder.
#[derive(Default)]
struct Spec {
    /// Real media: Opus + VP8 originals, WAV, review MP4, a long-named segment.
    media: bool,
    /// 李四 moves to a side room; his segment and a caucus review video are caucus.
    caucus: bool,
    /// Sparse files (relative path, bytes) listed in the manifest.
    sparse: Vec<(String, u64)>,
}

/// Writes a finished, signed session folder at `dir` and returns its chain head.
fn build_session(dir: &Path, key: &Arc<EvidenceKey>, session_id: &str, spec: &Spec) -> String {
    let mut w = ManifestWriter::create(
        dir,
        key.clone(),
        SessionHeader { room: "room-1".into(), case_id: Some(CASE.into()), session_id: session_id.into() },
        at(0),
    )
    .unwrap();
    for (pid, name, role) in [("m1", "王调解员", "mediator"), ("zs", "张三", "applicant"), ("ls", "李四", "respondent")] {
        w.append(at(1), None, Body::Participant { pid: pid.into(), name: name.into(), role: role.into() }).unwrap();
        w.append(at(2), Some(pid), Body::Consent { answer: Answer::Accept }).unwrap();
    }
    w.append(at(3), Some("m1"), Body::Start {}).unwrap();
    for sub in ["tracks", "audio", "review"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let mut files: Vec<String> = Vec::new();
    let mut open = |w: &mut ManifestWriter, rel: &str, pid: Option<&str>, kind: TrackKind, codec: Option<&str>| {
        w.open_file(at(4), rel, pid, kind, codec).unwrap();
        files.push(rel.to_owned());
    };
    if spec.media {
        w.append(at(4), None, Body::Track {
            track: "tracks/张三-audio-0".into(),
            pid: "zs".into(),
            kind: TrackKind::Audio,
            codec: "Opus".into(),
            room: "main".into(),
            clock_rate: 48000,
            rtp_ts: 1234,
            offset_ms: 10,
            sync: "arrival".into(),
        })
        .unwrap();
        open(&mut w, "tracks/张三-audio-0-00000.mkv", Some("zs"), TrackKind::Audio, Some("Opus"));
        make_opus_mkv(&dir.join("tracks/张三-audio-0-00000.mkv"));
        open(&mut w, "tracks/张三-video-0-00000.mkv", Some("zs"), TrackKind::Video, Some("VP8"));
        make_vp8_mkv(&dir.join("tracks/张三-video-0-00000.mkv"));
        open(&mut w, "audio/张三.wav", Some("zs"), TrackKind::Audio, Some("WAV"));
        make_wav(&dir.join("audio/张三.wav"), 2);
        open(&mut w, &long_name(), Some("zs"), TrackKind::Audio, Some("Opus"));
        make_opus_mkv(&dir.join(long_name()));
    }
    if spec.caucus {
        w.append(at(5), Some("m1"), Body::Moved { pid: "ls".into(), room: "respondent-room".into() }).unwrap();
        open(&mut w, "tracks/李四-audio-0-00000.mkv", Some("ls"), TrackKind::Audio, Some("Opus"));
        make_opus_mkv(&dir.join("tracks/李四-audio-0-00000.mkv"));
    }
    for (rel, size) in &spec.sparse {
        open(&mut w, rel, Some("zs"), TrackKind::Video, Some("VP8"));
        let f = std::fs::File::create(dir.join(rel)).unwrap();
        f.set_len(*size).unwrap();
        // A few non-zero bytes so the files differ.
        use std::io::{Seek, SeekFrom, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(size / 2)).unwrap();
        f.write_all(rel.as_bytes()).unwrap();
    }
    w.append(at(6), Some("m1"), Body::Stop {}).unwrap();
    if spec.media {
        // Every entry type the recorder writes is on the disc the page checks.
        w.append(at(6), None, Body::TrackEnd { track: "tracks/张三-audio-0".into(), packets: 100, lost: 0, queue_dropped: 0 }).unwrap();
    }
    for f in &files {
        w.close_file(at(7), f, FileStatus::Closed).unwrap();
    }
    if spec.media {
        // The review video (rendered after the session, here listed too).
        w.open_file(at(8), "review/主会场.mp4", None, TrackKind::Video, Some("H264")).unwrap();
        make_mp4(&dir.join("review/主会场.mp4"));
        w.close_file(at(9), "review/主会场.mp4", FileStatus::Closed).unwrap();
    }
    if spec.caucus {
        // A caucus review video the manifest does not list.
        make_mp4(&dir.join("review/caucus-respondent-room.mp4"));
    }
    w.finish(at(10)).unwrap().to_hex()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a command's stdout, streamed, and its length.
fn sha_of_stdout(cmd: &mut Command) -> (u64, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn reader");
    let mut out = child.stdout.take().unwrap();
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let mut n_total = 0u64;
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        n_total += n as u64;
        ctx.update(&buf[..n]);
    }
    child.wait().unwrap();
    (n_total, ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

/// The disc manifest of an image, read with isoinfo (Rock Ridge).
fn isoinfo_manifest(image: &Path) -> DiscManifest {
    let out = Command::new("isoinfo").args(["-R", "-x", "/disc-manifest.json", "-i"]).arg(image).output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("disc manifest of {}: {e}", image.display()))
}

/// Every file path in the Rock Ridge tree (`isoinfo -R -f`).
fn isoinfo_paths(image: &Path) -> Vec<String> {
    let out = Command::new("isoinfo").args(["-R", "-f", "-i"]).arg(image).output().unwrap();
    String::from_utf8(out.stdout).unwrap().lines().map(|l| l.trim_start_matches('/').to_owned()).collect()
}

/// The Joliet volume identifier (SVD type 2, escape `%/@`, `%/C` or `%/E`), read
/// from the image bytes.
fn joliet_volume_id(image: &Path) -> String {
    let data = std::fs::read(image).unwrap();
    for s in 16..64usize {
        let vd = &data[s * 2048..(s + 1) * 2048];
        if &vd[1..6] != b"CD001" || vd[0] == 255 {
            break;
        }
        if vd[0] == 2 && &vd[88..90] == b"%/" {
            let units: Vec<u16> = vd[40..72].chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            return String::from_utf16(&units).unwrap().trim_end().to_owned();
        }
    }
    panic!("no Joliet descriptor");
}

fn request<'a>(key: &'a EvidenceKey, sessions: Vec<SessionSource>, media: Media, out: &Path, caucus: bool) -> ExportRequest<'a> {
    ExportRequest {
        case_number: CASE.into(),
        dispute_id: 1,
        sessions,
        media,
        out_dir: out.to_owned(),
        include_caucus: caucus,
        key,
        now: at(100_000),
        exported_by: "书记员甲".into(),
    }
}

/// Round trip: Chinese names through Rock Ridge (isoinfo) and Joliet (7z), every
/// hash compared, volume ids, caucus left out or marked, then the offline page in
/// Chromium: all OK, and after one flipped byte it names the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_names_caucus_and_offline_verifier() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let folder = "调解会话一";
    let sdir = tmp.path().join("sessions").join(folder);
    let head = build_session(&sdir, &key, "17", &Spec { media: true, caucus: true, ..Default::default() });
    let src = vec![SessionSource { session_id: "17".into(), folder: folder.into(), dir: sdir.clone() }];

    // Caucus left out by default.
    let out = tmp.path().join("out");
    let mut last = 0u8;
    let mut monotone = true;
    let report = disc::export(&request(&key, src.clone(), Media::Cd, &out, false), &mut |p| {
        monotone &= p.percent() >= last;
        last = p.percent();
    })
    .expect("export");
    assert!(monotone && last == 100, "progress must rise to 100, ended at {last}");
    assert_eq!(report.images.len(), 1);
    let img = &report.images[0];
    assert_eq!(img.path, out.join("FQ_2026_00001_1OF1.iso"));
    assert!(report.caucus_left_out.iter().any(|p| p.ends_with("tracks/李四-audio-0-00000.mkv")), "{:?}", report.caucus_left_out);
    assert!(report.caucus_left_out.iter().any(|p| p.ends_with("review/caucus-respondent-room.mp4")));
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "only the image is left in the output folder");

    // Volume ids: ISO d-characters; the Chinese case number in Joliet.
    let d = Command::new("isoinfo").args(["-d", "-i"]).arg(&img.path).output().unwrap();
    let d = String::from_utf8_lossy(&d.stdout);
    assert!(d.contains("Volume id: FQ_2026_00001_1OF1"), "{d}");
    assert!(d.contains("Joliet") && d.contains("Rock Ridge"), "{d}");
    assert_eq!(joliet_volume_id(&img.path), CASE);

    // Rock Ridge with isoinfo: Chinese names, every file's bytes.
    let m = isoinfo_manifest(&img.path);
    assert_eq!((m.disc, m.discs, m.case_number.as_str()), (1, 1, CASE));
    assert_eq!(m.sessions[0].head, head);
    assert_eq!(m.label, format!("{CASE} 第1/1盘"));
    let paths = isoinfo_paths(&img.path);
    for want in ["调解会话一/tracks/张三-audio-0-00000.mkv", "调解会话一/audio/张三.wav", "调解会话一/review/主会场.mp4", "index.html", "disc.js", "evidence-public-key.pem"] {
        assert!(paths.iter().any(|p| p == want), "{want} not in the Rock Ridge tree: {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.contains("李四") || p.contains("caucus")), "caucus exported: {paths:?}");
    for f in &m.files {
        let source = sdir.join(&f.rel);
        let want = fengqiao_recorder::hash_file(&source).unwrap();
        let (n, sha) = sha_of_stdout(Command::new("isoinfo").args(["-R", "-i"]).arg(&img.path).arg("-x").arg(format!("/{}", f.path)));
        assert_eq!((n, sha.as_str()), (want.size, want.sha256_hex().as_str()), "{} read back by isoinfo", f.path);
        assert_eq!(f.sha256, want.sha256_hex());
        assert_eq!(f.chunks, want.chunks_hex());
    }
    // The long name is shortened predictably, the original kept.
    let long = m.files.iter().find(|f| f.rel == long_name()).expect("long-named file exported");
    assert_eq!(long.original_path.as_deref(), Some(format!("{folder}/{}", long_name()).as_str()));
    let leaf = long.path.rsplit('/').next().unwrap();
    assert_eq!(leaf.encode_utf16().count(), 103, "{leaf}");
    assert_eq!(long.path, disc::names::shorten_path(&format!("{folder}/{}", long_name())));

    // Joliet with 7z: extract everything, compare with the manifest.
    let x = tmp.path().join("extracted");
    let o = Command::new("7z").arg("x").arg("-y").arg(format!("-o{}", x.display())).arg(&img.path).output().unwrap();
    assert!(o.status.success(), "7z: {}", String::from_utf8_lossy(&o.stdout));
    for f in &m.files {
        let got = fengqiao_recorder::hash_file(&x.join(&f.path)).unwrap_or_else(|e| panic!("7z extracted no {}: {e}", f.path));
        assert_eq!(got.sha256_hex(), f.sha256, "{} via 7z", f.path);
    }

    // The offline page in Chromium: all OK, then one flipped byte is named.
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let c = driver.client(profile.path()).await;
    let url = format!("file://{}/index.html", x.display());
    let state = verify_in_browser(&c, &url, &x).await;
    assert_eq!(state["state"], "ok", "offline verifier: {state}");
    assert_eq!(state["ok"], json!(m.files.len()), "{state}");
    // A screenshot for people (target/disc-shots/, FQ_SHOTS=DIR to change).
    if let Ok(png) = c.screenshot().await {
        let dir = std::env::var_os("FQ_SHOTS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../disc-shots"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("offline-verifier.png"), png);
    }
    let victim = "调解会话一/audio/张三.wav";
    let vp = x.join(victim);
    let mut bytes = std::fs::read(&vp).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&vp, bytes).unwrap();
    let state = verify_in_browser(&c, &url, &x).await;
    assert_eq!(state["state"], "failed", "{state}");
    assert_eq!(state["bad"], json!([victim]), "{state}");
    assert!(state["failures"].as_str().unwrap().contains(victim), "{state}");
    assert_eq!(state["ok"], json!(m.files.len() - 1), "{state}");
    let _ = c.close().await;

    // With caucus chosen: included and marked confidential.
    let out2 = tmp.path().join("out2");
    let r2 = disc::export(&request(&key, src, Media::Cd, &out2, true), &mut |_| {}).unwrap();
    assert!(r2.caucus_left_out.is_empty());
    let m2 = isoinfo_manifest(&r2.images[0].path);
    let conf: Vec<&str> = m2.files.iter().filter(|f| f.confidential).map(|f| f.rel.as_str()).collect();
    assert_eq!(conf, vec!["tracks/李四-audio-0-00000.mkv", "review/caucus-respondent-room.mp4"]);
    assert!(m2.caucus_included);
}

/// Opens the page, picks the folder through chromedriver's file upload on the
/// `webkitdirectory` input, waits for the result.
async fn verify_in_browser(c: &fantoccini::Client, url: &str, dir: &Path) -> Value {
    c.goto(url).await.unwrap();
    let input = c.find(Locator::Css("#pick")).await.unwrap();
    input.send_keys(&dir.display().to_string()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c
            .execute(
                "const r = document.getElementById('result');
                 return {state: r.dataset.state,
                   ok: document.querySelectorAll('#files tr[data-status=ok]').length,
                   bad: [...document.querySelectorAll('#files tr[data-status=bad]')].map(t => t.dataset.path),
                   failures: (document.getElementById('failures') || {textContent: ''}).textContent};",
                vec![],
            )
            .await
            .unwrap();
        if v["state"] == "ok" || v["state"] == "failed" {
            return v;
        }
        assert!(Instant::now() < deadline, "the offline verifier did not finish: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Driver {
    child: std::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Driver { child, url: format!("http://127.0.0.1:{port}") }
    }

    async fn client(&self, profile: &Path) -> fantoccini::Client {
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--no-first-run", "--window-size=1280,2400",
                    format!("--user-data-dir={}", profile.display())]
            }
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let caps: Capabilities = caps;
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spanning: a set over the CD size becomes two images; together they hold every
/// recording file once; each disc carries the session's manifest and a right disc
/// manifest; isoinfo reads every file back with the right hash. A file larger than a
/// CD is refused naming it and suggesting a larger medium.
#[test]
fn spanning_over_cd_and_too_large_file() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let mb = 1024 * 1024;
    let sparse: Vec<(String, u64)> = (0..3).map(|i| (format!("tracks/张三-video-0-{i:05}.mkv"), 300 * mb + i * 4096 + 7)).collect();
    let sdir = tmp.path().join("分卷会话");
    build_session(&sdir, &key, "21", &Spec { sparse: sparse.clone(), ..Default::default() });
    let src = vec![SessionSource { session_id: "21".into(), folder: "分卷会话".into(), dir: sdir.clone() }];
    let out = tmp.path().join("out");
    let report = disc::export(&request(&key, src, Media::Cd, &out, false), &mut |_| {}).expect("export");
    assert_eq!(report.images.len(), 2, "900 MiB over 700 MB CDs");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let all: Vec<String> = sparse.iter().map(|(p, _)| format!("分卷会话/{p}")).collect();
    for (i, img) in report.images.iter().enumerate() {
        assert_eq!(img.path.file_name().unwrap().to_string_lossy(), format!("FQ_2026_00001_{}OF2.iso", i + 1));
        assert!(img.size <= Media::Cd.capacity(), "{} bytes > a CD", img.size);
        let m = isoinfo_manifest(&img.path);
        assert_eq!((m.disc, m.discs), (i + 1, 2));
        assert_eq!(m.volume_id, format!("FQ_2026_00001_{}OF2", i + 1));
        assert!(m.files.iter().any(|f| f.path == "分卷会话/manifest.jsonl"), "disc {} lacks the evidence manifest", i + 1);
        assert!(m.files.iter().any(|f| f.path == "分卷会话/manifest.sig"));
        for f in m.files.iter().filter(|f| f.role == disc::FileRole::Original) {
            assert_eq!(f.disc, i + 1);
            *seen.entry(f.path.clone()).or_default() += 1;
            let (n, sha) = sha_of_stdout(Command::new("isoinfo").args(["-R", "-i"]).arg(&img.path).arg("-x").arg(format!("/{}", f.path)));
            assert_eq!((n, sha.as_str()), (f.size, f.sha256.as_str()), "{} on disc {}", f.path, i + 1);
        }
        // The other disc's files are listed as elsewhere.
        let here: Vec<&String> = m.files.iter().map(|f| &f.path).collect();
        for p in &all {
            let listed = m.elsewhere.iter().any(|e| &e.path == p && e.disc != i + 1);
            assert!(here.contains(&p) != listed, "{p}: on disc {} and in elsewhere: {listed}", i + 1);
        }
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), all, "every file on some disc");
    assert!(seen.values().all(|&n| n == 1), "a file on two discs: {seen:?}");

    // One file larger than a CD.
    let big = tmp.path().join("大文件会话");
    build_session(&big, &key, "22", &Spec { sparse: vec![("tracks/张三-video-0-00000.mkv".into(), 750 * mb)], ..Default::default() });
    let src = vec![SessionSource { session_id: "22".into(), folder: "大文件会话".into(), dir: big }];
    let out = tmp.path().join("out-big");
    let e = disc::export(&request(&key, src, Media::Cd, &out, false), &mut |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, RecorderError::FileTooLarge { .. }), "{msg}");
    assert!(msg.contains("大文件会话/tracks/张三-video-0-00000.mkv") && msg.contains("--media dvd"), "{msg}");
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().count() == 0, "something written for a refused export");
}

/// 4.3 GiB sparse file → DVD-DL image (ISO level 3 multi-extent) → read back whole
/// with 7z (isoinfo 1.1.11 reads only the last extent of a multi-extent file).
/// `make test-large`.
#[test]
#[ignore = "writes a 4.3 GiB image: make test-large"]
fn large_file_multi_extent_dvd_dl() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir_in(std::env::var_os("FQ_LARGE_TMP").map(PathBuf::from).unwrap_or_else(std::env::temp_dir)).unwrap();
    let key = Arc::new(EvidenceKey::generate_ephemeral().unwrap());
    let size = 4_617_089_843u64; // 4.3 GiB
    let sdir = tmp.path().join("大文件");
    build_session(&sdir, &key, "30", &Spec { sparse: vec![("tracks/张三-video-0-00000.mkv".into(), size)], ..Default::default() });
    let src = vec![SessionSource { session_id: "30".into(), folder: "大文件".into(), dir: sdir.clone() }];
    let out = tmp.path().join("out");
    let report = disc::export(&request(&key, src, Media::DvdDl, &out, false), &mut |_| {}).expect("export");
    let img = &report.images[0].path;
    let m = isoinfo_manifest(img);
    let f = m.files.iter().find(|f| f.size == size).expect("the large file is listed");
    let (n, sha) = sha_of_stdout(Command::new("7z").arg("x").arg("-so").arg(img).arg(&f.path));
    assert_eq!((n, sha.as_str()), (size, f.sha256.as_str()), "7z reads the multi-extent file back whole");
    // isoinfo -R -l shows it as two or more extents (directory records) of one name.
    let l = Command::new("isoinfo").args(["-R", "-l", "-i"]).arg(img).output().unwrap();
    let listing = String::from_utf8_lossy(&l.stdout);
    assert!(listing.matches("张三-video-0-00000.mkv").count() >= 2, "not multi-extent: {listing}");
    eprintln!("large file test: {size} bytes exported and read back in {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- server, API, CLI

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_fengqiao")
}

async fn api(http: &reqwest::Client, method: reqwest::Method, url: String, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut r = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The clerk API and the CLI against a real server and case database: roles, unknown
/// case, no recordings, audit with image hashes, download, a read-only output folder
/// and a full disk (no partial image left), and `burn` to an image file and to a
/// missing drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clerk_api_cli_bad_input_and_burn() {
    use fengqiao_cases::model::StaffRole;
    use reqwest::Method;
    let data = tempfile::tempdir().unwrap();
    let mut cfg = fengqiao::config::Config { data_dir: data.path().to_path_buf(), ..Default::default() };
    cfg.server.http_addr = "127.0.0.1:0".parse().unwrap();
    cfg.media.udp_port = 0;
    let server = fengqiao::server::start(cfg).await.expect("server");
    let base = server.public_url.clone();
    let store = server.cases.clone();
    let sys = fengqiao_cases::Actor::system();
    let org = store
        .create_org(&sys, &fengqiao_cases::service::NewOrganisation {
            name: "枫桥调委会".into(),
            kind: "peoples_committee".into(),
            district: "诸暨市".into(),
            street: None,
            online: true,
        })
        .await
        .unwrap();
    let pw = "correct-horse-42";
    let mut med_id = 0;
    for (u, role, o) in [
        ("triage", StaffRole::Triage, None),
        ("orgadmin", StaffRole::OrgAdmin, Some(org.id)),
        ("mediator", StaffRole::Mediator, Some(org.id)),
        ("clerk", StaffRole::Clerk, None),
        ("judge", StaffRole::Judge, None),
    ] {
        let user = fengqiao_cases::create_user(&store, u, u, role, o, pw).await.unwrap();
        if let Some(m) = user.mediator_id {
            med_id = m;
        }
    }
    let http = reqwest::Client::new();
    let mut tok = BTreeMap::new();
    for u in ["triage", "orgadmin", "mediator", "clerk", "judge"] {
        let r = http.post(format!("{base}/api/auth/login")).json(&json!({"username": u, "password": pw})).send().await.unwrap();
        let c = r.headers().get("set-cookie").unwrap().to_str().unwrap().split(';').next().unwrap().trim_start_matches("fq_session=").to_owned();
        tok.insert(u, c);
    }
    // Two disputes in mediation; the first gets a recorded session.
    let mut disputes = Vec::new();
    for desc in ["邻里漏水纠纷，要求赔偿装修损失。", "物业费纠纷，无录像。"] {
        let (s, v) = api(&http, Method::POST, format!("{base}/api/disputes"), &tok["triage"], Some(json!({
            "category": "neighbour", "description": desc, "amount_fen": 120000,
            "parties": [{"kind": "applicant", "name": "张三", "phone": "13800000001"}, {"kind": "respondent", "name": "李四", "phone": "13800000002"}]
        }))).await;
        assert_eq!(s, 201, "{v}");
        let id = v["dispute"]["id"].as_i64().unwrap();
        let case_no = v["dispute"]["case_number"].as_str().unwrap().to_owned();
        for (who, path, body) in [
            ("triage", "triage", json!({"org_id": org.id})),
            ("orgadmin", "accept", json!({"mediator_id": med_id})),
            ("mediator", "start", json!({})),
        ] {
            let (s, v) = api(&http, Method::POST, format!("{base}/api/disputes/{id}/{path}"), &tok[who], Some(body)).await;
            assert!(s < 300, "{path}: {s} {v}");
        }
        disputes.push((id, case_no));
    }
    let (id, case_no) = disputes[0].clone();
    let when = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (s, v) = api(&http, Method::POST, format!("{base}/api/disputes/{id}/sessions"), &tok["mediator"], Some(json!({"scheduled_at": when, "duration_minutes": 60}))).await;
    assert_eq!(s, 201, "{v}");
    let sid = v["session"]["id"].as_i64().unwrap();
    let key = Arc::new(EvidenceKey::load_or_generate(&data.path().join("keys")).unwrap());
    let sdir = data.path().join("sessions").join(sid.to_string());
    let head = build_session(&sdir, &key, &sid.to_string(), &Spec { media: true, ..Default::default() });
    let now = chrono::Utc::now();
    let (s, v) = api(&http, Method::POST, format!("{base}/api/disputes/{id}/sessions/{sid}/recordings"), &tok["mediator"], Some(json!({
        "file_path": format!("{sid}/review/主会场.mp4"), "manifest_path": format!("{sid}/manifest.jsonl"),
        "integrity_sha256": head, "media_type": "video/mp4",
        "started_at": (now - chrono::Duration::seconds(60)).to_rfc3339(), "ended_at": now.to_rfc3339()}))).await;
    assert_eq!(s, 201, "{v}");

    // API: roles and bad input.
    let start = |d: i64, body: Value, who: &'static str| {
        let (http, base, t) = (http.clone(), base.clone(), tok[who].clone());
        async move { api(&http, Method::POST, format!("{base}/api/disputes/{d}/disc-exports"), &t, Some(body)).await }
    };
    assert_eq!(start(id, json!({"media": "cd"}), "mediator").await.0, 403);
    assert_eq!(start(id, json!({"media": "cd"}), "judge").await.0, 403);
    let (s, v) = start(id, json!({"media": "floppy"}), "clerk").await;
    assert_eq!((s, v["field"].as_str()), (422, Some("media")), "{v}");
    let (s, v) = start(9999, json!({"media": "cd"}), "clerk").await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = start(disputes[1].0, json!({"media": "cd"}), "clerk").await;
    assert_eq!((s, v["field"].as_str()), (422, Some("case")), "{v}");
    let (s, v) = start(id, json!({"media": "cd", "sessions": [sid + 100]}), "clerk").await;
    assert_eq!((s, v["field"].as_str()), (422, Some("sessions")), "{v}");
    let r = http.post(format!("{base}/api/disputes/{id}/disc-exports")).json(&json!({"media": "cd"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // API: a real export, polled to the end.
    let (s, job) = start(id, json!({"media": "cd"}), "clerk").await;
    assert_eq!(s, 202, "{job}");
    let eid = job["export_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let job = loop {
        let (s, j) = api(&http, Method::GET, format!("{base}/api/disc-exports/{eid}"), &tok["clerk"], None).await;
        assert_eq!(s, 200, "{j}");
        if j["state"] != "running" {
            break j;
        }
        assert!(j["percent"].as_u64().unwrap() < 100);
        assert!(Instant::now() < deadline, "export did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["percent"], 100);
    let image = &job["images"][0];
    assert_eq!(image["name"], "FQ_2026_00001_1OF1.iso", "{job}");
    let (s, list) = api(&http, Method::GET, format!("{base}/api/disputes/{id}/disc-exports"), &tok["clerk"], None).await;
    assert_eq!((s, list[0]["export_id"].as_str()), (200, Some(eid.as_str())), "{list}");
    let r = http.get(format!("{base}{}", image["url"].as_str().unwrap())).bearer_auth(&tok["clerk"]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let iso = r.bytes().await.unwrap();
    assert_eq!(sha256_hex(&iso), image["sha256"].as_str().unwrap());
    let audit = store.list_audit(Some("disc.export"), 1, 50).await.unwrap();
    let ok: Vec<_> = audit.items.iter().filter(|a| a.outcome == "ok").collect();
    assert_eq!(ok.len(), 1, "{:?}", audit.items);
    let denied: Vec<&str> = audit.items.iter().filter(|a| a.outcome == "denied").map(|a| a.actor.as_str()).collect();
    assert_eq!(denied, vec!["judge", "mediator"], "role refusals audited");
    assert_eq!((ok[0].actor.as_str(), ok[0].object_type.as_str(), ok[0].object_id.as_str()), ("clerk", "dispute", id.to_string().as_str()));
    let detail: Value = serde_json::from_str(&ok[0].detail).unwrap();
    assert_eq!(detail["images"][0]["sha256"], image["sha256"]);
    assert_eq!(detail["case_number"], case_no.as_str());
    assert!(detail["files"].as_array().unwrap().iter().any(|f| f.as_str().unwrap().ends_with("audio/张三.wav")), "{detail}");
    assert_eq!(store.list_audit(Some("disc.image.download"), 1, 10).await.unwrap().total, 1);

    // CLI: by case number; then unknown case, no recordings.
    let env_data = data.path().to_str().unwrap().to_owned();
    let cli = |args: &[&str]| {
        let o = Command::new(bin()).args(args).env("FENGQIAO_DATA_DIR", &env_data).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let cli_out = data.path().join("cli-out");
    let (code, text) = cli(&["export", "--case", &case_no, "--media", "dvd", "--out", cli_out.to_str().unwrap(), "--by", "书记员甲"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("FQ_2026_00001_1OF1.iso") && text.contains("1 disc(s) of dvd"), "{text}");
    let (code, text) = cli(&["export", "--case", "9999", "--media", "cd", "--out", cli_out.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(text.contains("case 9999 not found"), "{text}");
    let (code, text) = cli(&["export", "--case", &disputes[1].1, "--media", "cd", "--out", cli_out.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(text.contains("has no recordings"), "{text}");
    let (code, text) = cli(&["export", "--case", &case_no, "--media", "dvd", "--out", cli_out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "an existing image is not overwritten: {text}");
    assert!(text.contains("exists already"), "{text}");

    // Read-only output folder (bind mount) and a full disk (400 KiB tmpfs).
    let ro = data.path().join("ro");
    let full = data.path().join("full");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&full).unwrap();
    let in_ns = |setup: &str, out: &Path| {
        let script = format!(
            "set -e; {setup}; exec \"$0\" export --case \"$1\" --media cd --out \"$2\" 2>&1; ",
        );
        let o = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script, bin(), &case_no, out.to_str().unwrap()])
            .env("FENGQIAO_DATA_DIR", &env_data)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
    };
    let (code, text) = in_ns(&format!("mount --bind {0} {0}; mount -o remount,bind,ro {0}", ro.display()), &ro);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    let (code, text) = in_ns(&format!("mount -t tmpfs -o size=400k tmpfs {}", full.display()), &full);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no space left") || text.contains("No space left"), "{text}");
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    // The tmpfs is gone with the namespace; the test checks inside it instead:
    let (code, text) = {
        let script = "set -e; mount -t tmpfs -o size=400k tmpfs \"$2\"; \"$0\" export --case \"$1\" --media cd --out \"$2\" >/dev/null 2>&1 || true; ls -A \"$2\"";
        let o = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, bin(), &case_no, full.to_str().unwrap()])
            .env("FENGQIAO_DATA_DIR", &env_data)
            .output()
            .unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned())
    };
    assert_eq!(code, Some(0));
    assert_eq!(text.trim(), "", "left on the full disk: {text}");
    let failed = store.list_audit(Some("disc.export.failed"), 1, 50).await.unwrap();
    assert_eq!(failed.total, 4, "failed exports (exists, read-only, full ×2) are audited: {:?}", failed.items);
    assert!(failed.items.iter().any(|a| a.detail.contains("Read-only file system")), "{:?}", failed.items);

    // Burn to an image file as the target device, then to a missing drive.
    let iso_path = cli_out.join("FQ_2026_00001_1OF1.iso");
    let target = data.path().join("disc.img");
    let (code, text) = cli(&["burn", "--image", iso_path.to_str().unwrap(), "--device", target.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("read back and match"), "{text}");
    let (code, text) = cli(&["burn", "--image", iso_path.to_str().unwrap(), "--device", "/dev/sr9"]);
    assert_eq!(code, Some(1));
    assert!(text.contains("no optical drive at /dev/sr9"), "{text}");
    // A damaged disc: one byte of a recording flipped on the target → named.
    let m = fengqiao_recorder::disc::read_disc_manifest(&target, key.public_key()).unwrap();
    let ext = fengqiao_recorder::disc::xorriso::extents(&target).unwrap();
    let wav = m.files.iter().find(|f| f.path.ends_with("audio/张三.wav")).unwrap();
    let at_byte = ext[&wav.path][0].lba * 2048 + 100;
    let mut img = std::fs::read(&target).unwrap();
    img[at_byte as usize] ^= 0xff;
    std::fs::write(&target, &img).unwrap();
    let check = fengqiao_recorder::disc::read_back(&target, &m, &mut |_| {}).unwrap();
    assert_eq!(check.mismatches.len(), 1, "{:?}", check.mismatches);
    assert!(check.mismatches[0].contains("audio/张三.wav"), "{:?}", check.mismatches);
    server.shutdown().await;
}
