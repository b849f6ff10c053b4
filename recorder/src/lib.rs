//! `fengqiao-recorder`: the evidence side of a recorded mediation session.
//!
//! This crate holds the foundation of the evidence recorder (issue 3):
//!
//! - [`manifest`]: the signed, hash-chained evidence manifest
//!   (`manifest.jsonl` + `manifest.sig` in `data/sessions/<session-id>/`),
//!   its canonical entries and the [`ManifestWriter`];
//! - [`keys`]: the server's Ed25519 evidence key in `data/keys/`;
//! - [`hash`]: file SHA-256 with per-16-MiB chunk hashes;
//! - [`verify()`]: checks a session folder and returns a readable [`Report`];
//! - [`close_out_interrupted`]: closes a session cut short by a crash or shutdown;
//! - [`originals`]: per-track RTP → Matroska segment writer (GStreamer).
//! - [`render`]: the review video (`review/main.mp4`, caucus MP4s) with the
//!   recording-time overlay, from a verified session folder (GStreamer).
//!
//! The byte-exact format is specified in `docs/evidence.md`; the rules it serves
//! are in `shared/domain.md` ("Session rules": SPC Provisions on hearing
//! audio-video recording 2017 arts. 3, 4, 9, 15; Internet Courts Provisions 2018
//! art. 11).

pub mod closeout;
pub mod disc;
pub mod hash;
pub mod keys;
pub mod live;
pub mod manifest;
pub mod originals;
pub mod render;
pub mod verify;

pub use closeout::{close_out_interrupted, needs_close_out, scan_sessions, CloseOut};
pub use hash::{hash_file, FileDigest, CHUNK_SIZE};
pub use keys::{EvidenceKey, PublicKey};
pub use manifest::{
    Answer, Body, ChainValue, Entry, FileStatus, ManifestWriter, SessionHeader, SigFile, Timestamp, TrackKind,
    MANIFEST_FILE, SIG_FILE,
};
pub use originals::{Codec, Pushed, SegmentEvent, TrackWriter, TrackWriterConfig};
pub use verify::{verify, Location, Problem, Report};

use std::path::PathBuf;

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The evidence key file exists but is not a valid Ed25519 PKCS#8 v2 document
    /// (RFC 8410 §7), or a public key is not 32 bytes / a valid SPKI.
    #[error("evidence key {path}: {reason}")]
    BadKey {
        /// The key file (or the text source) concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The manifest cannot be continued or closed out because it is malformed or
    /// its chain or signature does not check (see `docs/evidence.md`).
    #[error("manifest {path}: {reason}")]
    BadManifest {
        /// The `manifest.jsonl` concerned.
        path: PathBuf,
        /// What is wrong, naming the line where it applies.
        reason: String,
    },
    /// A value handed to the writer breaks a rule of `docs/evidence.md`
    /// (unsafe path, appending after `end`, an out-of-range time, …).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// `manifest.jsonl` already exists where a new session was to be created.
    #[error("{0}: a manifest exists already")]
    Exists(PathBuf),
    /// GStreamer failed: not initialised, an element (plugin) missing, or a
    /// pipeline error; the text names the element or step.
    #[error("media pipeline: {0}")]
    Media(String),
    /// Random key generation failed (the system RNG is unavailable).
    #[error("random number generator failed")]
    Rng,
    /// Disc export: a single file is larger than one disc of the chosen medium.
    #[error("{path} is {size} bytes, more than one {media} disc holds ({capacity} bytes with the disc's own files); choose a larger medium: {suggestion}")]
    FileTooLarge {
        /// The file (its path on the disc, original name).
        path: String,
        /// Its size in bytes.
        size: u64,
        /// The medium chosen (`cd`, `dvd`, …).
        media: String,
        /// That medium's capacity in bytes.
        capacity: u64,
        /// E.g. `--media dvd-dl`.
        suggestion: String,
    },
    /// Disc export: nothing to put on a disc (no session, no recording file chosen).
    #[error("nothing to export: {0}")]
    NothingToExport(String),
    /// Disc export: a session's evidence manifest, signature or a file does not
    /// check, so it is not exported (`fengqiao verify` gives the full report).
    #[error("session {session} does not verify: {}", problems.join("; "))]
    Unverified {
        /// Session id.
        session: String,
        /// What is wrong.
        problems: Vec<String>,
    },
    /// An external tool (xorriso) is missing or failed; `message` carries its error lines.
    #[error("{tool}: {message}")]
    Tool {
        /// The program.
        tool: String,
        /// Its error output, or why it could not start.
        message: String,
    },
    /// The output device or folder is full.
    #[error("{path}: no space left on the output device ({message})")]
    NoSpace {
        /// The image or device written.
        path: PathBuf,
        /// The tool's message.
        message: String,
    },
    /// Burning: no optical drive at `device`.
    #[error("no optical drive at {device}: {reason}")]
    NoDrive {
        /// The device path given.
        device: String,
        /// Why.
        reason: String,
    },
    /// Read-back after writing an image or burning a disc found files that differ.
    #[error("read-back of {image} failed: {}", mismatches.join("; "))]
    ReadBack {
        /// The image or device read.
        image: String,
        /// One line per missing or differing file.
        mismatches: Vec<String>,
    },
}

impl RecorderError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RecorderError {
        let path = path.into();
        move |source| RecorderError::Io { path, source }
    }
}

/// Lower-case hexadecimal of `bytes`.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}

/// Parses exactly 64 lower-case hex digits into 32 bytes; `None` otherwise.
pub(crate) fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = (nib(b[2 * i])? << 4) | nib(b[2 * i + 1])?;
    }
    Some(out)
}
