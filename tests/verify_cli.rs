//! `fengqiao keys export` and `fengqiao verify <session-dir>` (docs/evidence.md):
//! the real binary on session folders made with the recorder crate.

mod common;

use fengqiao_recorder::{Body, EvidenceKey, FileStatus, ManifestWriter, SessionHeader, Timestamp, TrackKind};
use std::path::Path;
use std::process::Output;
use std::sync::Arc;


/// The binary with a clean `FENGQIAO_*` environment and `data_dir` = `dir/data`.
fn fengqiao(dir: &Path, args: &[&str]) -> Output {
    common::run_fengqiao(dir, args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A finished session `data/sessions/s-1` signed with the data folder's evidence key.
fn session(dir: &Path) -> std::path::PathBuf {
    let key = Arc::new(EvidenceKey::load_or_generate(&dir.join("data/keys")).unwrap());
    let sdir = dir.join("data/sessions/s-1");
    let t = |s: i64| Timestamp::from_unix_millis(1_795_976_400_000 + s * 1000).unwrap();
    let hdr = SessionHeader { room: "room-1".into(), case_id: None, session_id: "s-1".into() };
    let mut w = ManifestWriter::create(&sdir, key, hdr, t(0)).unwrap();
    w.append(t(1), Some("m1"), Body::Start {}).unwrap();
    w.open_file(t(1), "m1-video-0001.mkv", Some("m1"), TrackKind::Video, Some("VP8")).unwrap();
    std::fs::write(sdir.join("m1-video-0001.mkv"), b"not really matroska").unwrap();
    w.close_file(t(5), "m1-video-0001.mkv", FileStatus::Closed).unwrap();
    w.append(t(6), Some("m1"), Body::Stop {}).unwrap();
    w.finish(t(6)).unwrap();
    sdir
}

#[test]
fn keys_export_prints_a_stable_public_key() {
    let d = tempfile::tempdir().unwrap();
    let a = fengqiao(d.path(), &["keys", "export"]);
    assert!(a.status.success(), "{a:?}");
    let out = stdout(&a);
    assert!(out.contains("key id: ") && out.contains("-----BEGIN PUBLIC KEY-----"), "{out}");
    let pk = fengqiao_recorder::PublicKey::parse(&out).unwrap();
    let key = EvidenceKey::load(&d.path().join("data/keys")).unwrap();
    assert_eq!(&pk, key.public_key());
    assert!(out.contains(&format!("key id: {}", pk.key_id())));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(d.path().join("data/keys/evidence-ed25519.pk8")).unwrap().permissions().mode();
        assert_eq!(m & 0o777, 0o600);
    }
    let b = fengqiao(d.path(), &["keys", "export"]);
    assert_eq!(stdout(&b), out);
}

#[test]
fn verify_passes_on_a_clean_session_and_fails_with_the_culprit_named() {
    let d = tempfile::tempdir().unwrap();
    let sdir = session(d.path());
    let s = sdir.to_str().unwrap();
    let ok = fengqiao(d.path(), &["verify", s]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert!(stdout(&ok).contains("RESULT: OK"), "{}", stdout(&ok));

    let f = sdir.join("m1-video-0001.mkv");
    let mut b = std::fs::read(&f).unwrap();
    b[3] ^= 0x20;
    std::fs::write(&f, &b).unwrap();
    let bad = fengqiao(d.path(), &["verify", s]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let out = stdout(&bad);
    assert!(out.contains("BAD  file m1-video-0001.mkv") && out.contains("RESULT: FAILED"), "{out}");
    b[3] ^= 0x20;
    std::fs::write(&f, &b).unwrap();

    // Removing an entry is named by line.
    let m = sdir.join("manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let without: String = lines.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, l)| format!("{l}\n")).collect();
    std::fs::write(&m, without).unwrap();
    let bad = fengqiao(d.path(), &["verify", s]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("manifest line 2"), "{}", stdout(&bad));
    std::fs::write(&m, text).unwrap();
    assert_eq!(fengqiao(d.path(), &["verify", s]).status.code(), Some(0));
}

#[test]
fn verify_with_an_exported_public_key_and_a_wrong_one() {
    let d = tempfile::tempdir().unwrap();
    let sdir = session(d.path());
    let s = sdir.to_str().unwrap();
    let export = fengqiao(d.path(), &["keys", "export"]);
    std::fs::write(d.path().join("court.pub"), &export.stdout).unwrap();
    let ok = fengqiao(d.path(), &["verify", s, "--public-key", "court.pub"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    let other = tempfile::tempdir().unwrap();
    let export = fengqiao(other.path(), &["keys", "export"]);
    std::fs::write(d.path().join("other.pub"), &export.stdout).unwrap();
    let bad = fengqiao(d.path(), &["verify", s, "--public-key", "other.pub"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stdout(&bad).contains("wrong key"), "{}", stdout(&bad));
}

#[test]
fn verify_of_a_missing_folder_exits_1() {
    let d = tempfile::tempdir().unwrap();
    EvidenceKey::load_or_generate(&d.path().join("data/keys")).unwrap();
    let o = fengqiao(d.path(), &["verify", "no/such/session"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("cannot read manifest.jsonl"), "{}", stdout(&o));
    // Without any key and without --public-key: an error, exit 1, no panic.
    let e = tempfile::tempdir().unwrap();
    let o = fengqiao(e.path(), &["verify", "x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("evidence key"), "{o:?}");
}
