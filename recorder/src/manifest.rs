//! The evidence manifest: `manifest.jsonl` (hash-chained canonical JSON Lines)
//! and `manifest.sig` (Ed25519 signature of the chain head).
//!
//! The byte-exact format is `docs/evidence.md`; this module is its reference
//! implementation. Chain: `c_0 = SHA-256("fengqiao-evidence-v1")`,
//! `c_i = SHA-256(c_{i-1} ‖ line_i)` over the line's bytes without its LF; the
//! chain head `c_n` is the session's integrity check value (完整性校验值, SPC
//! Provisions on hearing audio-video recording 2017, art. 9).

use crate::hash::{hash_file, sha256, CHUNK_SIZE};
use crate::keys::{EvidenceKey, PublicKey};
use crate::{from_hex32, to_hex, RecorderError};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The manifest file inside a session folder.
pub const MANIFEST_FILE: &str = "manifest.jsonl";
/// The signature file inside a session folder.
pub const SIG_FILE: &str = "manifest.sig";
const SIG_TMP: &str = "manifest.sig.tmp";
/// Format version in the `session` entry and `manifest.sig`.
pub const FORMAT_VERSION: u32 = 1;
/// Input of the genesis chain value: `c_0 = SHA-256(GENESIS_INPUT)`.
pub const GENESIS_INPUT: &[u8] = b"fengqiao-evidence-v1";
/// Prefix of the signed message: the signature covers
/// `SIGNED_PREFIX ‖ hex(chain head)` (ASCII, no trailing newline).
pub const SIGNED_PREFIX: &[u8] = b"fengqiao-evidence-v1\n";
/// `actor` value for actions the server takes on its own.
pub const SYSTEM_ACTOR: &str = "system";

/// Server UTC time with millisecond resolution. JSON form: exactly
/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (RFC 3339 §5.6 profile), years 1970–9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Last millisecond of 9999-12-31.
const MAX_MS: i64 = 253_402_300_799_999;

impl Timestamp {
    /// From Unix time in milliseconds.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] outside 1970-01-01 … 9999-12-31.
    pub fn from_unix_millis(ms: i64) -> Result<Self, RecorderError> {
        if (0..=MAX_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(RecorderError::Invalid(format!("time {ms} ms is outside 1970–9999")))
        }
    }
    /// The current system time (UTC).
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self(ms.clamp(0, MAX_MS))
    }
    /// Unix time in milliseconds.
    pub fn unix_millis(&self) -> i64 {
        self.0
    }
    /// The canonical text form, e.g. `2026-11-29T18:20:28.123Z`.
    pub fn to_rfc3339(&self) -> String {
        // In range by construction, so from_timestamp_millis succeeds.
        chrono::DateTime::from_timestamp_millis(self.0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_default()
    }
    /// Parses the canonical text form only.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] for any other text.
    pub fn parse(s: &str) -> Result<Self, RecorderError> {
        let bad = || RecorderError::Invalid(format!("time {s:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ"));
        if s.len() != 24 {
            return Err(bad());
        }
        let n = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3fZ").map_err(|_| bad())?;
        let t = Self::from_unix_millis(n.and_utc().timestamp_millis()).map_err(|_| bad())?;
        if t.to_rfc3339() != s {
            return Err(bad());
        }
        Ok(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A chain value: 32 bytes of SHA-256; JSON and display form 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainValue(pub [u8; 32]);

impl ChainValue {
    /// `c_0 = SHA-256("fengqiao-evidence-v1")`.
    pub fn genesis() -> Self {
        Self(sha256(GENESIS_INPUT))
    }
    /// `c_i = SHA-256(c_{i-1} ‖ line)`, `line` without its LF.
    pub fn next(&self, line: &[u8]) -> Self {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.0);
        ctx.update(line);
        let mut o = [0u8; 32];
        o.copy_from_slice(ctx.finish().as_ref());
        Self(o)
    }
    /// 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }
    /// The message an Ed25519 signature covers: `"fengqiao-evidence-v1\n" ‖ hex(self)`.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut m = SIGNED_PREFIX.to_vec();
        m.extend_from_slice(self.to_hex().as_bytes());
        m
    }
}

impl std::fmt::Debug for ChainValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl std::fmt::Display for ChainValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A consent answer (Online Mediation Rules art. 4; recording notice, issue 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// Consents to recording.
    Accept,
    /// Refuses recording.
    Refuse,
}

/// The kind of a recorded file's track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackKind {
    /// An audio track (or a file derived from one, e.g. WAV).
    Audio,
    /// A video track.
    Video,
    /// Anything else (speaking activity JSON, review video, …).
    Other,
}

/// How a file came to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Closed by the recorder normally.
    Closed,
    /// Hashed as found by [`crate::close_out_interrupted`] after a crash or shutdown.
    Interrupted,
}

/// The type-specific part of an entry; JSON field `type` names the variant.
/// Field order in JSON is the declaration order below (`docs/evidence.md` § "Entries").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// Entry 0 and only there: the session header.
    Session {
        /// Format version, 1.
        v: u32,
        /// Room id.
        room: String,
        /// Case id, if the session belongs to a case.
        case_id: Option<String>,
        /// Session id (the folder name under `data/sessions/`).
        session_id: String,
        /// Chunk size of per-chunk hashes in bytes; 16 777 216 in format v1.
        chunk_size: u64,
        /// Key id of the signing key (see [`PublicKey::key_id`]).
        key_id: String,
        /// Software that wrote the manifest, e.g. `fengqiao-recorder 0.1.0`.
        recorder: String,
    },
    /// A participant present in the session (identity record).
    Participant {
        /// Participant id (invite token `pid`).
        pid: String,
        /// Display name, as invited.
        name: String,
        /// Role: mediator, applicant, respondent, agent or observer.
        role: String,
    },
    /// A consent answer; `actor` is the answering participant.
    Consent {
        /// The answer.
        answer: Answer,
    },
    /// Recording started; `actor` is the mediator.
    Start {},
    /// Recording paused (SPC 2017 art. 3: every break with its reason).
    Pause {
        /// Why, e.g. `consent refused by applicant-1`.
        reason: String,
    },
    /// Recording resumed.
    Resume {},
    /// Recording stopped.
    Stop {},
    /// A file was opened for writing (not yet hashable).
    FileOpen {
        /// Path relative to the session folder, `/`-separated.
        path: String,
        /// The participant whose track it holds, if any.
        pid: Option<String>,
        /// Track kind.
        kind: TrackKind,
        /// Codec or format, e.g. `VP8`, `Opus`, `H264`, `WAV`.
        codec: Option<String>,
    },
    /// A file is complete: its size and hashes.
    File {
        /// Path relative to the session folder (as in its `file_open`).
        path: String,
        /// Closed normally or hashed at close-out.
        status: FileStatus,
        /// Length in bytes.
        size: u64,
        /// SHA-256 of the whole file, hex.
        sha256: String,
        /// SHA-256 of each consecutive 16 MiB chunk, hex; `[]` for an empty file.
        chunks: Vec<String>,
    },
    /// A recorded track's place on the session timeline (written once per track,
    /// when its first RTCP sender report arrived, or 5 s after its first packet
    /// without one). Timeline zero is the `t` of the first `start` entry.
    Track {
        /// The originals' segment stem, relative to the session folder, e.g.
        /// `tracks/a1-audio-0`; its segments are `<track>-NNNNN.mkv`.
        track: String,
        /// The publishing participant.
        pid: String,
        /// Audio or video.
        kind: TrackKind,
        /// Codec as received: `VP8`, `H264` or `Opus`.
        codec: String,
        /// The room the track was published in: `main` or a side room (caucus).
        room: String,
        /// RTP clock rate, Hz (48000 Opus, 90000 video).
        clock_rate: u32,
        /// The RTP timestamp of the track's first recorded packet.
        rtp_ts: u32,
        /// That packet's position on the session timeline, ms.
        offset_ms: u64,
        /// How `offset_ms` was found: `sr` (RTCP sender report NTP↔RTP, RFC 3550
        /// §6.4.1, mapped to server time by the report's arrival) or `arrival`
        /// (the packet's arrival time only).
        sync: String,
    },
    /// A recorded track ended (its publisher left, or the recording stopped): how many
    /// packets were recorded and how many are missing, so loss is on the record.
    TrackEnd {
        /// The segment stem, as in the track's `track` entry.
        track: String,
        /// RTP packets the recorder received for the track.
        packets: u64,
        /// Packets missing from the RTP sequence while recording ran (RFC 3550 A.3:
        /// expected − received, counted per stretch between pauses): lost on the
        /// network and not repaired, or dropped by the SFU because the recorder fell
        /// behind.
        lost: u64,
        /// Packets the originals writer dropped because its own queue was full.
        queue_dropped: u64,
    },
    /// A participant changed rooms (joint room `main` ↔ a side room, 背靠背):
    /// media after this entry belongs to `room`.
    Moved {
        /// The participant moved.
        pid: String,
        /// `main` or the side room's name.
        room: String,
    },
    /// An open file was missing at close-out.
    FileLost {
        /// Path relative to the session folder.
        path: String,
        /// What was found.
        reason: String,
    },
    /// The session was cut short (crash, shutdown) and closed out.
    Interrupted {
        /// Why, e.g. `server restarted after a crash`.
        reason: String,
        /// Entries that had been appended but were not yet covered by `manifest.sig`.
        unsigned_entries: u64,
        /// Bytes of a torn (unterminated) last line removed at close-out, standard
        /// base64 with padding (RFC 4648 §4); `null` if there was none.
        torn_tail: Option<String>,
    },
    /// The manifest is complete; nothing follows.
    End {},
}

impl Body {
    /// The JSON `type` value.
    pub fn type_name(&self) -> &'static str {
        match self {
            Body::Session { .. } => "session",
            Body::Participant { .. } => "participant",
            Body::Consent { .. } => "consent",
            Body::Start {} => "start",
            Body::Pause { .. } => "pause",
            Body::Resume {} => "resume",
            Body::Stop {} => "stop",
            Body::FileOpen { .. } => "file_open",
            Body::File { .. } => "file",
            Body::Track { .. } => "track",
            Body::Moved { .. } => "moved",
            Body::TrackEnd { .. } => "track_end",
            Body::FileLost { .. } => "file_lost",
            Body::Interrupted { .. } => "interrupted",
            Body::End {} => "end",
        }
    }
}

/// One manifest line: `{"seq":…,"prev":…,"t":…,"actor":…,"type":…, …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 0-based position in the manifest.
    pub seq: u64,
    /// The chain value before this entry (`c_{i-1}` for line i, i.e. `c_seq`), hex.
    pub prev: String,
    /// Server UTC time of the event.
    pub t: Timestamp,
    /// Participant id of who acted, `"system"` for the server, `null` where no one acts.
    pub actor: Option<String>,
    /// The type-specific part.
    #[serde(flatten)]
    pub body: Body,
}

impl Entry {
    /// The canonical bytes (no LF): serde_json compact output in declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Strings, integers, arrays and options only: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The session header handed to [`ManifestWriter::create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHeader {
    /// Room id.
    pub room: String,
    /// Case id, if any.
    pub case_id: Option<String>,
    /// Session id; also the session folder's name.
    pub session_id: String,
}

/// `manifest.sig`: one canonical JSON line
/// `{"v":1,"alg":"Ed25519","key_id":…,"session_id":…,"entries":…,"head":…,"sig":…}` + LF.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigFile {
    /// Format version, 1.
    pub v: u32,
    /// Always `Ed25519`.
    pub alg: String,
    /// Key id of the signing key.
    pub key_id: String,
    /// Session id (informational; the header entry is what is signed).
    pub session_id: String,
    /// Number of manifest entries the signature covers.
    pub entries: u64,
    /// Chain head after those entries, hex.
    pub head: String,
    /// Ed25519 signature of `"fengqiao-evidence-v1\n" ‖ head`, standard base64 (88 chars).
    pub sig: String,
}

/// Checks a file path for a `file_open` / `file` entry: relative, `/`-separated,
/// no empty, `.` or `..` component, no backslash or control character, and not
/// one of the manifest's own files.
pub(crate) fn check_rel_path(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 1024 {
        return Err(format!("path {p:?}: empty or longer than 1024 bytes"));
    }
    if p.starts_with('/') || p.contains('\\') || p.chars().any(|c| c.is_control()) {
        return Err(format!("path {p:?}: must be relative, '/'-separated, without control characters"));
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("path {p:?}: empty, '.' or '..' component"));
    }
    if [MANIFEST_FILE, SIG_FILE, SIG_TMP].contains(&p) {
        return Err(format!("path {p:?}: the manifest's own file"));
    }
    Ok(())
}

/// One raw line of a manifest as read from disk.
pub(crate) struct RawLine {
    /// 1-based line number.
    pub line_no: usize,
    /// The line's bytes without LF.
    pub bytes: Vec<u8>,
    /// Chain value before this line.
    pub before: ChainValue,
    /// Chain value after this line.
    pub after: ChainValue,
}

/// A manifest split into LF-terminated lines (chained) and a torn tail.
pub(crate) struct RawManifest {
    pub lines: Vec<RawLine>,
    /// Bytes after the last LF (a torn write), if any.
    pub torn_tail: Option<Vec<u8>>,
}

impl RawManifest {
    pub fn split(data: &[u8]) -> Self {
        let mut lines = Vec::new();
        let mut chain = ChainValue::genesis();
        let mut rest = data;
        let mut line_no = 1;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let bytes = rest[..i].to_vec();
            let after = chain.next(&bytes);
            lines.push(RawLine { line_no, bytes, before: chain, after });
            chain = after;
            rest = &rest[i + 1..];
            line_no += 1;
        }
        let torn_tail = if rest.is_empty() { None } else { Some(rest.to_vec()) };
        Self { lines, torn_tail }
    }

    /// The chain value after `n` lines.
    pub fn head_after(&self, n: usize) -> ChainValue {
        if n == 0 {
            ChainValue::genesis()
        } else {
            self.lines[n - 1].after
        }
    }
}

/// Parses one line strictly: valid UTF-8 JSON of a known entry type whose
/// canonical re-serialisation is byte-identical. Returns a reason on failure.
pub(crate) fn parse_entry(bytes: &[u8]) -> Result<Entry, String> {
    let e: Entry = serde_json::from_slice(bytes).map_err(|e| format!("not a valid entry: {e}"))?;
    if e.canonical_bytes() != bytes {
        return Err(format!(
            "not canonical (re-serialised bytes differ: unknown field, field order, spacing or escaping) for type {:?}",
            e.body.type_name()
        ));
    }
    Ok(e)
}

/// [`parse_entry`] plus `seq` = `index` and `prev` = the chain value before it.
pub(crate) fn parse_line(raw: &RawLine, index: usize) -> Result<Entry, String> {
    let e = parse_entry(&raw.bytes)?;
    if e.seq != index as u64 {
        return Err(format!("seq is {} but the entry is at position {index} (entry removed, inserted or reordered)", e.seq));
    }
    if e.prev != raw.before.to_hex() {
        return Err(format!(
            "prev {} does not match the chain value {} of the entries before it (altered, removed or reordered)",
            e.prev,
            raw.before.to_hex()
        ));
    }
    Ok(e)
}

/// Reads and parses `manifest.sig`; a reason on failure.
pub(crate) fn read_sig(dir: &Path) -> Result<Option<(SigFile, [u8; 64])>, String> {
    let path = dir.join(SIG_FILE);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let Some(line) = data.strip_suffix(b"\n") else {
        return Err("does not end with LF".into());
    };
    let s: SigFile = serde_json::from_slice(line).map_err(|e| format!("not valid: {e}"))?;
    if serde_json::to_vec(&s).unwrap_or_default() != line {
        return Err("not canonical".into());
    }
    if s.v != FORMAT_VERSION || s.alg != "Ed25519" {
        return Err(format!("unsupported v {} / alg {:?}", s.v, s.alg));
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(&s.sig).map_err(|_| "sig is not base64".to_string())?;
    let sig: [u8; 64] = raw.try_into().map_err(|_| "sig is not 64 bytes".to_string())?;
    if base64::engine::general_purpose::STANDARD.encode(sig) != s.sig {
        return Err("sig base64 is not canonical".into());
    }
    Ok(Some((s, sig)))
}

fn sync_dir(dir: &Path) -> Result<(), RecorderError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(RecorderError::io(dir))
}

/// Writes `manifest.sig` for `entries` entries ending at `head`, atomically
/// (temporary file, fsync, rename, fsync of the folder).
pub(crate) fn write_sig(
    dir: &Path,
    key: &EvidenceKey,
    session_id: &str,
    entries: u64,
    head: ChainValue,
) -> Result<(), RecorderError> {
    let sig = key.sign(&head.signed_message());
    let s = SigFile {
        v: FORMAT_VERSION,
        alg: "Ed25519".into(),
        key_id: key.public_key().key_id(),
        session_id: session_id.to_owned(),
        entries,
        head: head.to_hex(),
        sig: base64::engine::general_purpose::STANDARD.encode(sig),
    };
    let mut bytes = serde_json::to_vec(&s).unwrap_or_default();
    bytes.push(b'\n');
    let tmp = dir.join(SIG_TMP);
    let mut f = std::fs::File::create(&tmp).map_err(RecorderError::io(&tmp))?;
    f.write_all(&bytes).map_err(RecorderError::io(&tmp))?;
    f.sync_all().map_err(RecorderError::io(&tmp))?;
    let dst = dir.join(SIG_FILE);
    std::fs::rename(&tmp, &dst).map_err(RecorderError::io(&dst))?;
    sync_dir(dir)
}

/// Appends entries to one session's manifest, fsyncing each line and re-signing
/// the new chain head after each append, so a crash leaves at most the last
/// entry unsigned (see [`crate::close_out_interrupted`]).
#[derive(Debug)]
pub struct ManifestWriter {
    dir: PathBuf,
    file: std::fs::File,
    key: Arc<EvidenceKey>,
    session_id: String,
    next_seq: u64,
    head: ChainValue,
    open_files: BTreeSet<String>,
    ended: bool,
}

impl ManifestWriter {
    /// Creates `session_dir` (if needed) and a new `manifest.jsonl` in it whose
    /// entry 0 is the session header, then signs.
    ///
    /// # Errors
    /// [`RecorderError::Exists`] when a manifest is already there;
    /// [`RecorderError::Io`] on file-system failure.
    pub fn create(
        session_dir: &Path,
        key: Arc<EvidenceKey>,
        header: SessionHeader,
        now: Timestamp,
    ) -> Result<Self, RecorderError> {
        std::fs::create_dir_all(session_dir).map_err(RecorderError::io(session_dir))?;
        let path = session_dir.join(MANIFEST_FILE);
        let file = std::fs::OpenOptions::new().append(true).create_new(true).open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                RecorderError::Exists(path.clone())
            } else {
                RecorderError::io(&path)(e)
            }
        })?;
        sync_dir(session_dir)?;
        let key_id = key.public_key().key_id();
        let mut w = Self {
            dir: session_dir.to_owned(),
            file,
            key,
            session_id: header.session_id.clone(),
            next_seq: 0,
            head: ChainValue::genesis(),
            open_files: BTreeSet::new(),
            ended: false,
        };
        w.push(
            now,
            None,
            Body::Session {
                v: FORMAT_VERSION,
                room: header.room,
                case_id: header.case_id,
                session_id: header.session_id,
                chunk_size: CHUNK_SIZE,
                key_id,
                recorder: concat!("fengqiao-recorder ", env!("CARGO_PKG_VERSION")).to_owned(),
            },
        )?;
        Ok(w)
    }

    /// Continues an existing, intact manifest (e.g. after a close-out, to record
    /// the rest of a resumed session).
    ///
    /// # Errors
    /// [`RecorderError::BadManifest`] if any line fails to parse or chain, the
    /// last line is torn, or the manifest has ended; [`RecorderError::Io`].
    pub fn open(session_dir: &Path, key: Arc<EvidenceKey>) -> Result<Self, RecorderError> {
        let path = session_dir.join(MANIFEST_FILE);
        let data = std::fs::read(&path).map_err(RecorderError::io(&path))?;
        let raw = RawManifest::split(&data);
        let bad = |reason: String| RecorderError::BadManifest { path: path.clone(), reason };
        if raw.torn_tail.is_some() {
            return Err(bad("last line is torn (no LF); close it out first".into()));
        }
        let mut session_id = None;
        let mut open_files = BTreeSet::new();
        let mut ended = false;
        for (i, l) in raw.lines.iter().enumerate() {
            let e = parse_line(l, i).map_err(|r| bad(format!("line {}: {r}", l.line_no)))?;
            match (&e.body, i) {
                (Body::Session { session_id: s, .. }, 0) => session_id = Some(s.clone()),
                (_, 0) | (Body::Session { .. }, _) => return Err(bad("the session entry must be entry 0, and only it".into())),
                (Body::FileOpen { path, .. }, _) => {
                    open_files.insert(path.clone());
                }
                (Body::File { path, .. } | Body::FileLost { path, .. }, _) => {
                    open_files.remove(path);
                }
                (Body::End {}, _) => ended = true,
                _ => {}
            }
        }
        let Some(session_id) = session_id else { return Err(bad("empty manifest".into())) };
        if ended {
            return Err(bad("the manifest has ended".into()));
        }
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(RecorderError::io(&path))?;
        Ok(Self {
            dir: session_dir.to_owned(),
            file,
            key,
            session_id,
            next_seq: raw.lines.len() as u64,
            head: raw.head_after(raw.lines.len()),
            open_files,
            ended,
        })
    }

    /// The chain head: the integrity check value after the last entry.
    pub fn head(&self) -> ChainValue {
        self.head
    }

    /// Number of entries written.
    pub fn entries(&self) -> u64 {
        self.next_seq
    }

    /// The session folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files opened and not yet closed, by relative path.
    pub fn open_files(&self) -> impl Iterator<Item = &str> {
        self.open_files.iter().map(String::as_str)
    }

    /// Appends one entry, fsyncs the manifest and re-signs. Returns the new head.
    ///
    /// `actor`: participant id, [`SYSTEM_ACTOR`], or `None` where no one acts.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] for a second `session` entry, after `end`, a
    /// bad path, `file_open` of an open path or `file`/`file_lost` of a path not
    /// open; [`RecorderError::Io`].
    pub fn append(&mut self, now: Timestamp, actor: Option<&str>, body: Body) -> Result<ChainValue, RecorderError> {
        match &body {
            Body::Session { .. } => return Err(RecorderError::Invalid("only entry 0 is a session entry".into())),
            Body::FileOpen { path, .. } => {
                check_rel_path(path).map_err(RecorderError::Invalid)?;
                if self.open_files.contains(path) {
                    return Err(RecorderError::Invalid(format!("{path} is open already")));
                }
            }
            Body::File { path, .. } | Body::FileLost { path, .. } if !self.open_files.contains(path) => {
                return Err(RecorderError::Invalid(format!("{path} is not open")));
            }
            _ => {}
        }
        self.push(now, actor.map(str::to_owned), body)
    }

    /// Appends a `file_open` entry for `path` (relative to the session folder).
    ///
    /// # Errors
    /// As [`ManifestWriter::append`].
    pub fn open_file(
        &mut self,
        now: Timestamp,
        path: &str,
        pid: Option<&str>,
        kind: TrackKind,
        codec: Option<&str>,
    ) -> Result<ChainValue, RecorderError> {
        let body = Body::FileOpen {
            path: path.to_owned(),
            pid: pid.map(str::to_owned),
            kind,
            codec: codec.map(str::to_owned),
        };
        self.append(now, None, body)
    }

    /// Hashes the (complete) file at `path` and appends its `file` entry with
    /// `status`. Call after the file is flushed and closed.
    ///
    /// # Errors
    /// As [`ManifestWriter::append`]; [`RecorderError::Io`] if it cannot be read.
    pub fn close_file(&mut self, now: Timestamp, path: &str, status: FileStatus) -> Result<ChainValue, RecorderError> {
        if !self.open_files.contains(path) {
            return Err(RecorderError::Invalid(format!("{path} is not open")));
        }
        let d = hash_file(&self.dir.join(path))?;
        let body = Body::File { path: path.to_owned(), status, size: d.size, sha256: d.sha256_hex(), chunks: d.chunks_hex() };
        self.append(now, None, body)
    }

    /// Appends `end`: the manifest is complete.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] while files are still open; [`RecorderError::Io`].
    pub fn finish(mut self, now: Timestamp) -> Result<ChainValue, RecorderError> {
        if let Some(p) = self.open_files.iter().next() {
            return Err(RecorderError::Invalid(format!("{p} is still open")));
        }
        self.push(now, None, Body::End {})
    }

    fn push(&mut self, now: Timestamp, actor: Option<String>, body: Body) -> Result<ChainValue, RecorderError> {
        if self.ended {
            return Err(RecorderError::Invalid("the manifest has ended".into()));
        }
        let entry = Entry { seq: self.next_seq, prev: self.head.to_hex(), t: now, actor, body };
        let mut line = entry.canonical_bytes();
        let head = self.head.next(&line);
        line.push(b'\n');
        let path = self.dir.join(MANIFEST_FILE);
        self.file.write_all(&line).map_err(RecorderError::io(&path))?;
        self.file.sync_data().map_err(RecorderError::io(&path))?;
        match &entry.body {
            Body::FileOpen { path, .. } => {
                self.open_files.insert(path.clone());
            }
            Body::File { path, .. } | Body::FileLost { path, .. } => {
                self.open_files.remove(path);
            }
            Body::End {} => self.ended = true,
            _ => {}
        }
        self.next_seq += 1;
        self.head = head;
        write_sig(&self.dir, &self.key, &self.session_id, self.next_seq, head)?;
        Ok(head)
    }
}

/// Parses a hex chain value.
pub(crate) fn parse_chain(s: &str) -> Option<ChainValue> {
    from_hex32(s).map(ChainValue)
}

/// Whether `sig` is a valid signature by `key` of the chain head `head`.
pub(crate) fn sig_ok(key: &PublicKey, head: ChainValue, sig: &[u8; 64]) -> bool {
    key.verify(&head.signed_message(), sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_canonical_form() {
        let t = Timestamp::from_unix_millis(1_795_976_428_123).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-29T18:20:28.123Z");
        assert_eq!(Timestamp::parse("2026-11-29T18:20:28.123Z").unwrap(), t);
        for bad in ["2026-11-29T18:20:28Z", "2026-11-29T18:20:28.1234Z", "2026-11-29 18:20:28.123Z", "2026-11-29T18:20:28.123+00:00", ""] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert!(Timestamp::from_unix_millis(-1).is_err());
    }

    #[test]
    fn entry_json_field_order_is_fixed() {
        let e = Entry {
            seq: 3,
            prev: "ab".into(),
            t: Timestamp::from_unix_millis(0).unwrap(),
            actor: Some("m1".into()),
            body: Body::Pause { reason: "休息 \"x\"".into() },
        };
        let s = String::from_utf8(e.canonical_bytes()).unwrap();
        assert_eq!(s, r#"{"seq":3,"prev":"ab","t":"1970-01-01T00:00:00.000Z","actor":"m1","type":"pause","reason":"休息 \"x\""}"#);
        let e2: Entry = serde_json::from_str(&s).unwrap();
        assert_eq!(e2, e);
        let start = Entry { body: Body::Start {}, actor: None, ..e };
        assert!(String::from_utf8(start.canonical_bytes()).unwrap().ends_with(r#""actor":null,"type":"start"}"#));
    }

    #[test]
    fn genesis_value() {
        // SHA-256("fengqiao-evidence-v1"), documented in docs/evidence.md.
        assert_eq!(ChainValue::genesis().to_hex(), "d98c85881cdbf720f1a2077bb2fd950cd3d1f1d87e40ffd4d0ff583816030a00");
        // c_1 = SHA-256(c_0 ‖ line): the worked example in docs/evidence.md.
        let line = br#"{"seq":0}"#;
        let mut cat = ChainValue::genesis().0.to_vec();
        cat.extend_from_slice(line);
        assert_eq!(ChainValue::genesis().next(line).0, sha256(&cat));
    }

    #[test]
    fn rel_paths() {
        assert!(check_rel_path("tracks/a-video-0001.mkv").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../b", "a//b", "a\\b", "manifest.jsonl", "a/./b", "x\n"] {
            assert!(check_rel_path(bad).is_err(), "{bad:?}");
        }
    }
}
