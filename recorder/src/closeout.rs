//! Close-out of a session cut short (crash, kill -9, graceful shutdown):
//! hash what was left open, record `interrupted`, sign. SPC Provisions on
//! hearing audio-video recording (2017) arts. 5 and 15: keep even defective
//! recordings, delete nothing — so nothing is dropped silently here.

use crate::hash::hash_file;
use crate::keys::EvidenceKey;
use crate::manifest::{
    parse_line, read_sig, sig_ok, write_sig, Body, ChainValue, Entry, FileStatus, RawManifest, Timestamp,
    MANIFEST_FILE, SYSTEM_ACTOR,
};
use crate::RecorderError;
use base64::Engine as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// What [`close_out_interrupted`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseOut {
    /// The manifest already ended with `end` or `interrupted`, fully signed, no
    /// file open, no torn line: nothing was written.
    AlreadyClosed {
        /// The chain head.
        head: ChainValue,
    },
    /// Entries were appended and signed.
    Closed {
        /// The new chain head (integrity check value).
        head: ChainValue,
        /// Open files hashed as found (`file` with status `interrupted`).
        hashed: Vec<String>,
        /// Open files that were missing (`file_lost`).
        lost: Vec<String>,
        /// Entries that had not been signed before the close-out.
        unsigned_entries: u64,
        /// Length in bytes of the torn last line removed (0 if none).
        torn_bytes: usize,
    },
}

struct State {
    raw: RawManifest,
    entries: Vec<Entry>,
    session_id: String,
    open: Vec<String>,
    signed: usize,
}

fn load(session_dir: &Path, key: &EvidenceKey) -> Result<State, RecorderError> {
    let path = session_dir.join(MANIFEST_FILE);
    let data = std::fs::read(&path).map_err(RecorderError::io(&path))?;
    let raw = RawManifest::split(&data);
    let bad = |reason: String| RecorderError::BadManifest { path: path.clone(), reason };
    let mut entries = Vec::with_capacity(raw.lines.len());
    for (i, l) in raw.lines.iter().enumerate() {
        entries.push(parse_line(l, i).map_err(|r| bad(format!("line {}: {r}; refusing to sign over it", l.line_no)))?);
    }
    let session_id = match entries.first().map(|e| &e.body) {
        Some(Body::Session { session_id, .. }) => session_id.clone(),
        _ => return Err(bad("line 1 is not a session entry".into())),
    };
    let mut open: Vec<String> = Vec::new();
    for e in &entries {
        match &e.body {
            Body::FileOpen { path, .. } => open.push(path.clone()),
            Body::File { path, .. } | Body::FileLost { path, .. } => open.retain(|p| p != path),
            _ => {}
        }
    }
    // The signature must be ours and cover a prefix of this chain: a crash can
    // only leave the last appended entries unsigned.
    let signed = match read_sig(session_dir) {
        Ok(None) => 0,
        Ok(Some((s, sig))) => {
            let pk = key.public_key();
            if s.key_id != pk.key_id() {
                return Err(bad(format!("manifest.sig is by key id {}, not ours ({})", s.key_id, pk.key_id())));
            }
            (0..=raw.lines.len())
                .rev()
                .find(|&k| sig_ok(pk, raw.head_after(k), &sig))
                .ok_or_else(|| bad("manifest.sig does not sign any prefix of the manifest".into()))?
        }
        Err(why) => return Err(bad(format!("manifest.sig: {why}"))),
    };
    Ok(State { raw, entries, session_id, open, signed })
}

/// Whether `session_dir` needs [`close_out_interrupted`]: its manifest has a
/// torn last line, unsigned entries, open files, or does not end with `end` or
/// `interrupted`.
///
/// # Errors
/// As [`close_out_interrupted`] for an unreadable or tampered manifest.
pub fn needs_close_out(session_dir: &Path, key: &EvidenceKey) -> Result<bool, RecorderError> {
    let s = load(session_dir, key)?;
    let finished = matches!(s.entries.last().map(|e| &e.body), Some(Body::End {} | Body::Interrupted { .. }));
    Ok(s.raw.torn_tail.is_some() || s.signed < s.entries.len() || !s.open.is_empty() || !finished)
}

/// Session folders under `sessions_dir` (e.g. `data/sessions`) holding a
/// manifest, sorted by name: the restart scan's candidates.
///
/// # Errors
/// [`RecorderError::Io`] when `sessions_dir` exists but cannot be listed; a
/// missing folder gives an empty list.
pub fn scan_sessions(sessions_dir: &Path) -> Result<Vec<PathBuf>, RecorderError> {
    let rd = match std::fs::read_dir(sessions_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RecorderError::io(sessions_dir)(e)),
    };
    let mut v: Vec<PathBuf> =
        rd.flatten().map(|e| e.path()).filter(|p| p.join(MANIFEST_FILE).is_file()).collect();
    v.sort();
    Ok(v)
}

/// Closes out a session whose recorder stopped without finishing: removes a
/// torn (unterminated) last manifest line, appends for every file still open a
/// `file` entry with status `interrupted` (size and hashes as found) or a
/// `file_lost` entry, then an `interrupted` entry (actor `system`) with `reason`,
/// the number of entries the old signature did not cover and the torn bytes in
/// base64, and signs the new head. Idempotent: a closed manifest is left as is.
///
/// `now` is the server UTC time recorded on the new entries.
///
/// # Errors
/// - [`RecorderError::BadManifest`] when a complete line fails to parse or chain,
///   or `manifest.sig` is by another key or signs no prefix of the manifest:
///   tampering is never signed over;
/// - [`RecorderError::Io`] on file-system failure (including no manifest).
pub fn close_out_interrupted(
    session_dir: &Path,
    key: &EvidenceKey,
    reason: &str,
    now: Timestamp,
) -> Result<CloseOut, RecorderError> {
    let s = load(session_dir, key)?;
    let n = s.entries.len();
    let head0 = s.raw.head_after(n);
    let finished = matches!(s.entries.last().map(|e| &e.body), Some(Body::End {} | Body::Interrupted { .. }));
    if s.raw.torn_tail.is_none() && s.signed == n && s.open.is_empty() && finished {
        return Ok(CloseOut::AlreadyClosed { head: head0 });
    }
    let path = session_dir.join(MANIFEST_FILE);
    let complete_len: u64 = s.raw.lines.iter().map(|l| l.bytes.len() as u64 + 1).sum();
    let torn_bytes = s.raw.torn_tail.as_ref().map_or(0, Vec::len);
    if torn_bytes > 0 {
        let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(RecorderError::io(&path))?;
        f.set_len(complete_len).and_then(|()| f.sync_data()).map_err(RecorderError::io(&path))?;
    }
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).map_err(RecorderError::io(&path))?;

    let mut head = head0;
    let mut seq = n as u64;
    let mut append = |body: Body, actor: Option<&str>| -> Result<(), RecorderError> {
        let e = Entry { seq, prev: head.to_hex(), t: now, actor: actor.map(str::to_owned), body };
        let mut line = e.canonical_bytes();
        head = head.next(&line);
        line.push(b'\n');
        f.write_all(&line).map_err(RecorderError::io(&path))?;
        seq += 1;
        Ok(())
    };
    let (mut hashed, mut lost) = (Vec::new(), Vec::new());
    for p in &s.open {
        match hash_file(&session_dir.join(p)) {
            Ok(d) => {
                append(
                    Body::File {
                        path: p.clone(),
                        status: FileStatus::Interrupted,
                        size: d.size,
                        sha256: d.sha256_hex(),
                        chunks: d.chunks_hex(),
                    },
                    None,
                )?;
                hashed.push(p.clone());
            }
            Err(RecorderError::Io { source, .. }) => {
                append(Body::FileLost { path: p.clone(), reason: format!("not readable at close-out: {source}") }, None)?;
                lost.push(p.clone());
            }
            Err(e) => return Err(e),
        }
    }
    let unsigned_entries = (n - s.signed) as u64;
    let torn_tail = s.raw.torn_tail.as_ref().map(|t| base64::engine::general_purpose::STANDARD.encode(t));
    append(Body::Interrupted { reason: reason.to_owned(), unsigned_entries, torn_tail }, Some(SYSTEM_ACTOR))?;
    f.sync_data().map_err(RecorderError::io(&path))?;
    write_sig(session_dir, key, &s.session_id, seq, head)?;
    Ok(CloseOut::Closed { head, hashed, lost, unsigned_entries, torn_bytes })
}
