//! `verify`: checks a session folder against its manifest and signature and
//! reports every problem by file or manifest line (`docs/evidence.md` § "Verifying").

use crate::hash::{hash_file, CHUNK_SIZE};
use crate::keys::PublicKey;
use crate::manifest::{
    check_rel_path, parse_chain, parse_entry, read_sig, sig_ok, Body, ChainValue, RawManifest, FORMAT_VERSION,
    MANIFEST_FILE, SIG_FILE,
};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The manifest as a whole (missing, not finished, …).
    Manifest,
    /// A manifest line (1-based; entry `seq` = line − 1 when intact).
    Entry {
        /// 1-based line number in `manifest.jsonl`.
        line: usize,
    },
    /// A recorded file, by path relative to the session folder.
    File {
        /// Relative path as in the manifest.
        path: String,
    },
    /// `manifest.sig`.
    Signature,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Manifest => write!(f, "manifest"),
            Location::Entry { line } => write!(f, "manifest line {line}"),
            Location::File { path } => write!(f, "file {path}"),
            Location::Signature => write!(f, "signature ({SIG_FILE})"),
        }
    }
}

/// One mismatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The culprit.
    pub location: Location,
    /// What is wrong, in plain words.
    pub message: String,
}

/// The result of [`verify`]. `is_ok()` only when nothing at all is wrong.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The folder checked.
    pub session_dir: PathBuf,
    /// Session id from the header entry, if readable.
    pub session_id: Option<String>,
    /// Room id from the header entry.
    pub room: Option<String>,
    /// Case id from the header entry.
    pub case_id: Option<String>,
    /// Complete (LF-terminated) manifest lines.
    pub entries: usize,
    /// Chain head over all complete lines: the integrity check value.
    pub head: Option<ChainValue>,
    /// Key id in `manifest.sig`.
    pub key_id: Option<String>,
    /// Files whose size, SHA-256 and every chunk hash matched.
    pub files_ok: Vec<String>,
    /// Everything wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Remarks that are not failures (e.g. files in the folder the manifest does not list).
    pub notes: Vec<String>,
}

impl Report {
    /// True when there is no problem.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Whether some problem is located at `loc`.
    pub fn blames(&self, loc: &Location) -> bool {
        self.problems.iter().any(|p| &p.location == loc)
    }

    fn bad(&mut self, location: Location, message: impl Into<String>) {
        self.problems.push(Problem { location, message: message.into() });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Evidence check of {}", self.session_dir.display())?;
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        writeln!(f, "  session {}  room {}  case {}", o(&self.session_id), o(&self.room), o(&self.case_id))?;
        writeln!(f, "  manifest entries: {}", self.entries)?;
        if let Some(h) = &self.head {
            writeln!(f, "  chain head computed from the manifest (integrity check value): {h}")?;
        }
        writeln!(f, "  signing key id: {}", o(&self.key_id))?;
        for p in &self.files_ok {
            writeln!(f, "  ok   {p}")?;
        }
        for n in &self.notes {
            writeln!(f, "  note {n}")?;
        }
        for p in &self.problems {
            writeln!(f, "  BAD  {}: {}", p.location, p.message)?;
        }
        if self.is_ok() {
            write!(f, "RESULT: OK — every file, the chain and the signature check")
        } else {
            write!(f, "RESULT: FAILED — {} problem(s)", self.problems.len())
        }
    }
}

/// Checks `session_dir` (a `data/sessions/<session-id>/` folder): every line of
/// `manifest.jsonl` (canonical form, `seq`, `prev` chaining), every listed
/// file's size, SHA-256 and 16 MiB chunk hashes, that the manifest ends with
/// `end` or `interrupted` and leaves no file open, and that `manifest.sig` is a
/// valid Ed25519 signature (RFC 8032) by `key` of the chain head over all lines.
///
/// Never panics on bad input; every problem goes into the [`Report`], naming the
/// file, the manifest line or the signature.
pub fn verify(session_dir: &Path, key: &PublicKey) -> Report {
    let mut r = Report { session_dir: session_dir.to_owned(), ..Report::default() };
    let mpath = session_dir.join(MANIFEST_FILE);
    let data = match std::fs::read(&mpath) {
        Ok(d) => d,
        Err(e) => {
            r.bad(Location::Manifest, format!("cannot read {MANIFEST_FILE}: {e}"));
            return r;
        }
    };
    let raw = RawManifest::split(&data);
    let n = raw.lines.len();
    r.entries = n;
    let head = raw.head_after(n);
    r.head = Some(head);
    if let Some(t) = &raw.torn_tail {
        r.bad(
            Location::Entry { line: n + 1 },
            format!("last line is incomplete ({} bytes without LF): truncated, or a crash not yet closed out", t.len()),
        );
    }
    if n == 0 {
        r.bad(Location::Manifest, "the manifest has no entries");
    }

    // Lines: canonical entries; seq and prev checked locally against the line
    // before, so a removed, inserted, reordered or altered entry is named where
    // it breaks the chain rather than at every later line.
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    let mut listed: Vec<String> = Vec::new();
    let mut last_type: Option<&'static str> = None;
    let mut ended_at: Option<usize> = None;
    let mut prev_seq: Option<u64> = None;
    let mut prev_claim: Option<ChainValue> = None; // the `prev` the previous line claimed
    let mut header_ok = false;
    for (i, l) in raw.lines.iter().enumerate() {
        let line = l.line_no;
        let expected_prev = if i == 0 {
            ChainValue::genesis()
        } else {
            prev_claim.unwrap_or(raw.lines[i - 1].before).next(&raw.lines[i - 1].bytes)
        };
        let e = match parse_entry(&l.bytes) {
            Ok(e) => e,
            Err(why) => {
                r.bad(Location::Entry { line }, why);
                prev_seq = None;
                prev_claim = None;
                last_type = None;
                continue;
            }
        };
        let want_seq = prev_seq.map_or(i as u64, |s| s + 1);
        if e.seq != want_seq {
            r.bad(
                Location::Entry { line },
                format!("seq {} where {want_seq} was expected: an entry was removed, inserted or reordered here", e.seq),
            );
        }
        match parse_chain(&e.prev) {
            Some(p) if p == expected_prev => {}
            _ if i == 0 => r.bad(Location::Entry { line }, "prev is not the genesis value"),
            _ => r.bad(
                Location::Entry { line: line - 1 },
                format!(
                    "chain broken between line {} and line {line}: line {} was altered, line {line}'s prev was altered, or entries between them were removed or reordered",
                    line - 1,
                    line - 1
                ),
            ),
        }
        prev_seq = Some(e.seq);
        prev_claim = parse_chain(&e.prev);
        if let Some(at) = ended_at {
            r.bad(Location::Entry { line }, format!("entry after the end entry at line {at}"));
        }
        match &e.body {
            Body::Session { v, room, case_id, session_id, chunk_size, .. } => {
                if i != 0 {
                    r.bad(Location::Entry { line }, "a session entry may only be the first line");
                } else {
                    header_ok = true;
                    r.session_id = Some(session_id.clone());
                    r.room = Some(room.clone());
                    r.case_id = case_id.clone();
                    if *v != FORMAT_VERSION || *chunk_size != CHUNK_SIZE {
                        r.bad(Location::Entry { line }, format!("unsupported format v {v} / chunk_size {chunk_size}"));
                    }
                }
            }
            Body::FileOpen { path, .. } => {
                if let Err(why) = check_rel_path(path) {
                    r.bad(Location::Entry { line }, why);
                } else if open.insert(path.clone(), line).is_some() {
                    r.bad(Location::Entry { line }, format!("{path} opened twice"));
                }
            }
            Body::File { path, size, sha256, chunks, .. } => {
                if open.remove(path).is_none() {
                    r.bad(Location::Entry { line }, format!("{path} closed without a file_open entry"));
                }
                if let Err(why) = check_rel_path(path) {
                    r.bad(Location::Entry { line }, why);
                } else {
                    listed.push(path.clone());
                    check_file(&mut r, session_dir, path, *size, sha256, chunks);
                }
            }
            Body::FileLost { path, .. } => {
                if open.remove(path).is_none() {
                    r.bad(Location::Entry { line }, format!("{path} lost without a file_open entry"));
                }
                listed.push(path.clone());
            }
            Body::End {} => ended_at = Some(line),
            _ => {}
        }
        last_type = Some(e.body.type_name());
    }
    if n > 0 && !header_ok {
        r.bad(Location::Entry { line: 1 }, "the first line is not a valid session entry");
    }
    for (path, line) in &open {
        r.bad(
            Location::File { path: path.clone() },
            format!("opened at manifest line {line} but never closed, and no close-out recorded it"),
        );
    }
    if n > 0 && !matches!(last_type, Some("end" | "interrupted")) {
        r.bad(
            Location::Manifest,
            "not finished: the last entry is neither `end` nor `interrupted` (still recording, or cut short and not closed out)",
        );
    }

    check_signature(&mut r, session_dir, key, &raw, head);
    note_unlisted(&mut r, session_dir, &listed);
    r
}

fn check_file(r: &mut Report, dir: &Path, path: &str, size: u64, sha: &str, chunks: &[String]) {
    let loc = || Location::File { path: path.to_owned() };
    let d = match hash_file(&dir.join(path)) {
        Ok(d) => d,
        Err(e) => {
            r.bad(loc(), format!("cannot be read: {e}"));
            return;
        }
    };
    let mut why = Vec::new();
    if d.size != size {
        why.push(format!("size is {} bytes, the manifest says {size}", d.size));
    }
    if d.sha256_hex() != sha {
        why.push("SHA-256 of the whole file differs".to_owned());
    }
    let got = d.chunks_hex();
    let bad_chunks: Vec<String> = (0..got.len().max(chunks.len()))
        .filter(|&k| got.get(k) != chunks.get(k))
        .map(|k| {
            let a = k as u64 * CHUNK_SIZE;
            format!("{k} (bytes {a}–{})", (a + CHUNK_SIZE).min(d.size.max(size)).saturating_sub(1))
        })
        .collect();
    if !bad_chunks.is_empty() {
        why.push(format!("16 MiB chunk(s) differ: {}", bad_chunks.join(", ")));
    }
    if why.is_empty() {
        r.files_ok.push(path.to_owned());
    } else {
        r.bad(loc(), why.join("; "));
    }
}

fn check_signature(r: &mut Report, dir: &Path, key: &PublicKey, raw: &RawManifest, head: ChainValue) {
    let n = raw.lines.len();
    let (s, sig) = match read_sig(dir) {
        Ok(Some(x)) => x,
        Ok(None) => {
            r.bad(Location::Signature, format!("{SIG_FILE} is missing"));
            return;
        }
        Err(why) => {
            r.bad(Location::Signature, why);
            return;
        }
    };
    r.key_id = Some(s.key_id.clone());
    if s.key_id != key.key_id() {
        r.bad(
            Location::Signature,
            format!("signed with key id {}, but the trusted key has id {} (wrong key)", s.key_id, key.key_id()),
        );
        return;
    }
    if r.session_id.as_deref().is_some_and(|id| id != s.session_id) {
        r.bad(Location::Signature, format!("names session {}, the manifest is session {:?}", s.session_id, r.session_id));
    }
    if sig_ok(key, head, &sig) && s.entries == n as u64 && s.head == head.to_hex() {
        return;
    }
    // Diagnose. Is the signature genuine for the head it names?
    let claimed = parse_chain(&s.head);
    let genuine = claimed.is_some_and(|h| sig_ok(key, h, &sig));
    if !genuine {
        r.bad(Location::Signature, "the signature does not verify (manifest.sig altered, or made by another key)");
        return;
    }
    let claimed = claimed.unwrap_or(head);
    // Genuine for `claimed`: where does the manifest part from it?
    if let Some(k) = (0..=n).rev().find(|&k| raw.head_after(k) == claimed) {
        if k < n {
            r.bad(
                Location::Entry { line: k + 1 },
                format!("lines {}–{n} are not covered by the signature (appended after signing)", k + 1),
            );
        } else {
            r.bad(Location::Signature, format!("names {} entries, the manifest has {n}", s.entries));
        }
    } else if s.entries > n as u64 {
        r.bad(
            Location::Manifest,
            format!("truncated or altered: the signature covers {} entries, the manifest has {n}", s.entries),
        );
    } else if r.problems.iter().all(|p| !matches!(p.location, Location::Entry { .. })) && s.entries == n as u64 && n > 0 {
        // Every line chains locally to the one before, so only the last line can differ.
        r.bad(
            Location::Entry { line: n },
            format!("altered: the signed chain head is {}, the manifest hashes to {head}", s.head),
        );
    } else {
        r.bad(Location::Manifest, format!("the manifest hashes to {head}, the signed head is {}", s.head));
    }
}

fn note_unlisted(r: &mut Report, dir: &Path, listed: &[String]) {
    let mut found = Vec::new();
    walk(dir, "", &mut found, 0);
    for f in found {
        if f != MANIFEST_FILE && f != SIG_FILE && !listed.contains(&f) {
            r.notes.push(format!("{f} is in the folder but not in the manifest (not covered by the evidence check)"));
        }
    }
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>, depth: usize) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<_> = rd.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        match e.file_type() {
            Ok(t) if t.is_dir() && depth < 8 => walk(&e.path(), &rel, out, depth + 1),
            Ok(t) if t.is_file() => out.push(rel),
            _ => {}
        }
    }
}
