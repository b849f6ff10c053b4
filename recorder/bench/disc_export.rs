//! Disc export throughput against `dd` on the same disk, in the same run
//! (`docs/disc.md` § Throughput).
//!
//! ```sh
//! cargo run --release -p fengqiao-recorder --example disc_export -- [DIR] [MIB] [ROUNDS]
//! ```
//!
//! Makes a signed session folder in `DIR` (default `target/disc-bench`) holding
//! `MIB` MiB (default 2048) of random data in four originals, then alternates, for
//! `ROUNDS` rounds (default 2): `dd if=<each file> of=DIR/dd.out bs=1M
//! conv=fdatasync` (one read and one write of the data: the floor for making an
//! image), and `disc::export` to a BD-25 image followed by `sync` of the image
//! (three reads — check, xorriso, read-back — and one write). Both see the page
//! cache as the run leaves it (the data fits in memory on most machines, so reads
//! are mostly cached for both). Prints MB/s of each and their ratio.

use fengqiao_recorder::disc::{self, ExportRequest, Media, SessionSource};
use fengqiao_recorder::{EvidenceKey, FileStatus, ManifestWriter, SessionHeader, Timestamp, TrackKind};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().cloned().unwrap_or_else(|| "target/disc-bench".into()));
    let mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2048);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let key = Arc::new(EvidenceKey::generate_ephemeral().expect("key"));
    let sdir = dir.join("sessions").join("1");
    let files = make_session(&sdir, &key, mib);
    let bytes: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    println!("data: {bytes} bytes in {} files, {}", files.len(), dir.display());
    let mut dd_s = Vec::new();
    let mut ex_s = Vec::new();
    for round in 0..rounds {
        let out = dir.join("dd.out");
        let t = Instant::now();
        for f in &files {
            let st = Command::new("dd")
                .arg(format!("if={}", f.display()))
                .arg(format!("of={}", out.display()))
                .args(["bs=1M", "conv=fdatasync", "status=none"])
                .status()
                .expect("dd");
            assert!(st.success());
        }
        let dd = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_file(&out);
        let out_dir = dir.join(format!("out{round}"));
        let t = Instant::now();
        let req = ExportRequest {
            case_number: "(2026)枫调字第00001号".into(),
            dispute_id: 1,
            sessions: vec![SessionSource { session_id: "1".into(), folder: "1".into(), dir: sdir.clone() }],
            media: Media::Bd25,
            out_dir: out_dir.clone(),
            include_caucus: false,
            key: &key,
            now: Timestamp::now(),
            exported_by: "bench".into(),
        };
        // Time spent in each phase (check, build, read-back).
        let mut phases: Vec<(disc::Phase, Instant)> = Vec::new();
        let r = disc::export(&req, &mut |p| {
            if phases.last().map(|(ph, _)| *ph) != Some(p.phase) {
                phases.push((p.phase, Instant::now()));
            }
        })
        .expect("export");
        let end = Instant::now();
        let split: Vec<String> = phases
            .iter()
            .enumerate()
            .map(|(i, (ph, t))| format!("{ph:?} {:.2} s", phases.get(i + 1).map(|n| n.1).unwrap_or(end).duration_since(*t).as_secs_f64()))
            .collect();
        let st = Command::new("sync").arg(&r.images[0].path).status().expect("sync");
        assert!(st.success());
        let ex = t.elapsed().as_secs_f64();
        let _ = std::fs::remove_dir_all(&out_dir);
        let mbs = |s: f64| bytes as f64 / s / 1e6;
        println!(
            "round {round}: dd {dd:.2} s ({:.0} MB/s), export {ex:.2} s ({:.0} MB/s; {}), export/dd time ratio {:.2}",
            mbs(dd),
            mbs(ex),
            split.join(", "),
            ex / dd
        );
        dd_s.push(dd);
        ex_s.push(ex);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (dd, ex) = (med(&mut dd_s), med(&mut ex_s));
    println!(
        "median: dd {:.0} MB/s, export {:.0} MB/s; export takes {:.2}× the time of dd for the same bytes",
        bytes as f64 / dd / 1e6,
        bytes as f64 / ex / 1e6,
        ex / dd
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Four originals of random bytes, MIB MiB in all, listed in a finished manifest.
fn make_session(sdir: &Path, key: &Arc<EvidenceKey>, mib: u64) -> Vec<PathBuf> {
    let t0 = Timestamp::now();
    let mut w = ManifestWriter::create(
        sdir,
        key.clone(),
        SessionHeader { room: "bench".into(), case_id: None, session_id: "1".into() },
        t0,
    )
    .expect("manifest");
    std::fs::create_dir_all(sdir.join("tracks")).unwrap();
    let mut out = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    for i in 0..4 {
        let rel = format!("tracks/p{i}-video-0-00000.mkv");
        w.open_file(t0, &rel, Some("p"), TrackKind::Video, Some("VP8")).unwrap();
        let path = sdir.join(&rel);
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        for _ in 0..mib / 4 {
            for b in block.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                b.copy_from_slice(&seed.to_le_bytes());
            }
            f.write_all(&block).unwrap();
        }
        f.into_inner().unwrap().sync_all().unwrap();
        w.close_file(t0, &rel, FileStatus::Closed).unwrap();
        out.push(path);
    }
    w.finish(t0).unwrap();
    out
}
