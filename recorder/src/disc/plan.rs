//! Choosing the files of an export and spreading them over discs.

use super::names::shorten_path;
use super::{DiscFile, FileRole, Media, SessionSource};
use crate::hash::CHUNK_SIZE;
use crate::manifest::{parse_line, read_sig, sig_ok, Body, RawManifest, MANIFEST_FILE, SIG_FILE};
use crate::{PublicKey, RecorderError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// ISO 9660 logical block: 2048 bytes.
pub const BLOCK: u64 = 2048;
/// Space reserved on every disc for the volume descriptors, path tables and the
/// three directory trees' fixed part, `index.html` and its script: 4 MiB.
pub const DISC_RESERVE: u64 = 4 << 20;
/// Directory-record space reserved per file (ISO 9660 + Rock Ridge + Joliet): 1 block.
pub const PER_FILE_RESERVE: u64 = BLOCK;

/// One session's evidence as read from its folder: what the manifest says.
#[derive(Debug, Clone)]
pub(crate) struct SessionEvidence {
    /// Chain head (integrity check value).
    pub head: String,
    /// Key id in `manifest.sig`.
    pub key_id: String,
    /// Last entry type: `end` or `interrupted`.
    pub last: String,
    /// `file` entries: path → (size, sha256, chunks).
    pub files: BTreeMap<String, (u64, String, Vec<String>)>,
    /// Paths holding media of a side room (caucus).
    pub caucus: BTreeSet<String>,
    /// pids that were ever in a side room.
    pub caucus_pids: BTreeSet<String>,
    /// Names of the session's participants, pid → name.
    pub names: BTreeMap<String, String>,
}

/// Reads and checks a session's manifest without hashing the files: every line
/// canonical and chained, last entry `end` or `interrupted`, `manifest.sig` by
/// `key` over the recomputed head of all entries. Also works out which files hold
/// caucus media (see `docs/disc.md` § "Caucus recordings").
pub(crate) fn read_evidence(dir: &Path, key: &PublicKey) -> Result<SessionEvidence, String> {
    let mpath = dir.join(MANIFEST_FILE);
    let data = std::fs::read(&mpath).map_err(|e| format!("{}: {e}", mpath.display()))?;
    let raw = RawManifest::split(&data);
    if raw.torn_tail.is_some() {
        return Err("manifest.jsonl ends in a torn line (the session was not closed out)".into());
    }
    if raw.lines.is_empty() {
        return Err("manifest.jsonl is empty".into());
    }
    let mut ev = SessionEvidence {
        head: String::new(),
        key_id: String::new(),
        last: String::new(),
        files: BTreeMap::new(),
        caucus: BTreeSet::new(),
        caucus_pids: BTreeSet::new(),
        names: BTreeMap::new(),
    };
    let mut room_of: BTreeMap<String, String> = BTreeMap::new();
    let mut open: BTreeMap<String, Option<String>> = BTreeMap::new();
    // Track stem → the room it was published in.
    let mut track_room: BTreeMap<String, String> = BTreeMap::new();
    for (i, l) in raw.lines.iter().enumerate() {
        let e = parse_line(l, i).map_err(|m| format!("manifest line {}: {m}", l.line_no))?;
        if i == 0 && !matches!(e.body, Body::Session { .. }) {
            return Err("manifest line 1 is not the session header".into());
        }
        ev.last = e.body.type_name().to_owned();
        match e.body {
            Body::Participant { pid, name, .. } => {
                ev.names.insert(pid, name);
            }
            Body::FileOpen { path, pid, .. } => {
                if let Some(p) = &pid {
                    if room_of.get(p).is_some_and(|r| r != "main") {
                        ev.caucus.insert(path.clone());
                    }
                }
                open.insert(path, pid);
            }
            Body::File { path, size, sha256, chunks, .. } => {
                open.remove(&path);
                ev.files.insert(path, (size, sha256, chunks));
            }
            Body::FileLost { path, .. } => {
                open.remove(&path);
            }
            Body::Track { track, room, pid, .. } => {
                if room != "main" {
                    ev.caucus_pids.insert(pid);
                }
                track_room.insert(track, room);
            }
            Body::Moved { pid, room } => {
                if room != "main" {
                    ev.caucus_pids.insert(pid.clone());
                    for (path, p) in &open {
                        if p.as_deref() == Some(pid.as_str()) {
                            ev.caucus.insert(path.clone());
                        }
                    }
                }
                room_of.insert(pid, room);
            }
            _ => {}
        }
    }
    if ev.last != "end" && ev.last != "interrupted" {
        return Err(format!("the manifest is not finished (last entry is {:?}, not end or interrupted)", ev.last));
    }
    // Segments of a track published in a side room.
    for path in ev.files.keys() {
        for (stem, room) in &track_room {
            if room != "main" && path.starts_with(stem.as_str()) && path[stem.len()..].starts_with('-') {
                ev.caucus.insert(path.clone());
            }
        }
    }
    let head = raw.head_after(raw.lines.len());
    ev.head = head.to_hex();
    match read_sig(dir) {
        Ok(Some((s, sig))) => {
            if s.key_id != key.key_id() {
                return Err(format!("manifest.sig is by key {} but the server's key is {}", s.key_id, key.key_id()));
            }
            if s.entries != raw.lines.len() as u64 || !sig_ok(key, head, &sig) {
                return Err("manifest.sig does not sign the whole manifest".into());
            }
            ev.key_id = s.key_id;
        }
        Ok(None) => return Err("manifest.sig is missing".into()),
        Err(m) => return Err(format!("manifest.sig: {m}")),
    }
    Ok(ev)
}

/// The files of one session to put on discs, with their role and caucus flag, in a
/// stable order: evidence manifest and signature first, then originals, WAV,
/// activity, review videos (each sorted by path). `hashes` come later.
pub(crate) fn session_files(s: &SessionSource, ev: &SessionEvidence) -> Result<Vec<DiscFile>, String> {
    let mut out = Vec::new();
    let mut push = |rel: &str, role: FileRole, confidential: bool, from_manifest: bool| -> Result<(), String> {
        let src = s.dir.join(rel);
        let meta = std::fs::metadata(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let original = format!("{}/{}", s.folder, rel);
        let path = shorten_path(&original);
        out.push(DiscFile {
            session: s.session_id.clone(),
            rel: rel.to_owned(),
            source: src,
            original_path: if path == original { None } else { Some(original) },
            path,
            role,
            confidential,
            in_evidence_manifest: from_manifest,
            size: meta.len(),
            sha256: String::new(),
            chunks: Vec::new(),
            disc: 0,
        });
        Ok(())
    };
    push(MANIFEST_FILE, FileRole::EvidenceManifest, false, false)?;
    push(SIG_FILE, FileRole::EvidenceSignature, false, false)?;
    for (rel, _) in ev.files.iter() {
        let role = if rel.starts_with("stills/") {
            // Identity stills are personal data, not recordings: never exported.
            continue;
        } else if rel.ends_with(".wav") {
            FileRole::Wav
        } else if rel.starts_with("review/") && rel.ends_with(".mp4") {
            FileRole::Review
        } else if rel.ends_with(".activity.json") {
            FileRole::Activity
        } else if rel.starts_with("tracks/") {
            FileRole::Original
        } else {
            FileRole::Other
        };
        push(rel, role, is_caucus(rel, ev), true)?;
    }
    // Derived files the manifest may not list: WAV, activity, review videos.
    for sub in ["audio", "review"] {
        let d = s.dir.join(sub);
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            let rel = format!("{sub}/{n}");
            if ev.files.contains_key(&rel) {
                continue;
            }
            let role = match (sub, n.rsplit('.').next()) {
                ("audio", Some("wav")) => FileRole::Wav,
                ("audio", Some("json")) if n.ends_with(".activity.json") => FileRole::Activity,
                ("review", Some("mp4")) => FileRole::Review,
                _ => continue,
            };
            push(&rel, role, is_caucus(&rel, ev), false)?;
        }
    }
    Ok(out)
}

/// Whether a session-relative path holds caucus media: a side-room review video,
/// an original segment written while its participant was in a side room or of a
/// track published there, or a WAV / activity file of a participant who was ever in
/// a side room (those cover the whole timeline, caucus included).
fn is_caucus(rel: &str, ev: &SessionEvidence) -> bool {
    if rel.starts_with("review/caucus-") || ev.caucus.contains(rel) {
        return true;
    }
    if let Some(name) = rel.strip_prefix("audio/") {
        let pid = name.strip_suffix(".activity.json").or_else(|| name.strip_suffix(".wav"));
        return pid.is_some_and(|p| ev.caucus_pids.contains(p));
    }
    false
}

/// Bytes a file takes on a disc: its blocks plus its directory records.
pub fn disc_cost(size: u64) -> u64 {
    size.div_ceil(BLOCK) * BLOCK + PER_FILE_RESERVE
}

/// Bytes the disc manifest takes per file listed (JSON with hashes), estimated high.
fn manifest_cost(size: u64) -> u64 {
    600 + 70 * size.div_ceil(CHUNK_SIZE)
}

/// Spreads `files` over discs of `media`: recording files first-fit in order;
/// every disc that holds a file of a session also holds that session's evidence
/// manifest and signature (so each disc verifies on its own). Sets `disc`
/// (1-based) on every recording file and returns the number of discs.
///
/// # Errors
/// [`RecorderError::FileTooLarge`] naming the first file that fits on no disc of
/// `media`, with the smallest medium that would hold it.
pub(crate) fn span(files: &mut [DiscFile], media: Media) -> Result<usize, RecorderError> {
    let cap = media.capacity();
    let listing: u64 = files.iter().map(|f| manifest_cost(f.size)).sum();
    // Fixed part of every disc: reserve + the set's disc manifest (it lists every file).
    let fixed = DISC_RESERVE + 2 * listing.div_ceil(BLOCK) * BLOCK;
    let mut evidence: BTreeMap<String, u64> = BTreeMap::new();
    for f in files.iter().filter(|f| f.role.is_evidence()) {
        *evidence.entry(f.session.clone()).or_default() += disc_cost(f.size);
    }
    let mut used: Vec<u64> = Vec::new();
    let mut sessions_on: Vec<BTreeSet<String>> = Vec::new();
    for f in files.iter_mut().filter(|f| !f.role.is_evidence()) {
        let ev = evidence.get(&f.session).copied().unwrap_or(0);
        let need_alone = fixed + ev + disc_cost(f.size);
        if need_alone > cap {
            let suggestion = Media::ALL
                .iter()
                .find(|m| m.capacity() >= need_alone)
                .map(|m| format!("--media {}", m.as_str()))
                .unwrap_or_else(|| "none of cd, dvd, dvd-dl, bd25, bd50 is large enough".into());
            return Err(RecorderError::FileTooLarge {
                path: f.original_path.clone().unwrap_or_else(|| f.path.clone()),
                size: f.size,
                media: media.as_str().into(),
                capacity: cap,
                suggestion,
            });
        }
        let mut placed = false;
        for (i, u) in used.iter_mut().enumerate() {
            let extra = if sessions_on[i].contains(&f.session) { 0 } else { ev };
            if *u + extra + disc_cost(f.size) <= cap {
                *u += extra + disc_cost(f.size);
                sessions_on[i].insert(f.session.clone());
                f.disc = i + 1;
                placed = true;
                break;
            }
        }
        if !placed {
            used.push(fixed + ev + disc_cost(f.size));
            sessions_on.push(BTreeSet::from([f.session.clone()]));
            f.disc = used.len();
        }
    }
    Ok(used.len())
}
