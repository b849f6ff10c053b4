//! Disc export (issue 9): a case's recordings as burnable ISO 9660 images (level 3,
//! Rock Ridge, Joliet) made by xorriso, spread over as many discs as needed, each
//! disc self-describing (disc manifest, evidence manifests, public key, offline
//! `index.html` verifier), read back after writing; and burning with read-back.
//!
//! The disc layout, the disc manifest format and the naming rules are specified in
//! `docs/disc.md`; the evidence manifest in `docs/evidence.md`.

pub mod names;
pub mod plan;
pub mod xorriso;

use crate::hash::CHUNK_SIZE;
use crate::keys::{EvidenceKey, PublicKey};
use crate::manifest::Timestamp;
use crate::{to_hex, RecorderError};
use base64::Engine as _;
use ring::digest::{Context, SHA256};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The offline page, embedded (`recorder/assets/disc/index.html`).
pub const INDEX_HTML: &str = include_str!("../../assets/disc/index.html");
/// Its script (`recorder/assets/disc/disc.js`).
pub const DISC_JS: &str = include_str!("../../assets/disc/disc.js");
/// File name of the disc manifest at the root of every disc.
pub const DISC_MANIFEST: &str = "disc-manifest.json";
/// File name of the disc manifest's signature.
pub const DISC_SIG: &str = "disc-manifest.sig";
/// File name of the server's public key (PEM) on every disc.
pub const PUBLIC_KEY_FILE: &str = "evidence-public-key.pem";
/// Prefix of the message signed over a disc manifest: `"fengqiao-disc-v1\n" + sha256 hex`.
pub const DISC_SIGNED_PREFIX: &str = "fengqiao-disc-v1\n";

/// A disc medium and its usable data capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Media {
    /// CD-R 80 min: 360 000 blocks = 737 280 000 bytes.
    Cd,
    /// DVD±R single layer: 2 295 104 blocks (DVD+R, the smaller of ±) = 4 700 372 992 bytes.
    Dvd,
    /// DVD+R DL: 4 173 824 blocks = 8 547 991 552 bytes.
    DvdDl,
    /// BD-R 25 GB: 12 219 392 blocks = 25 025 314 816 bytes.
    Bd25,
    /// BD-R 50 GB (dual layer): 24 438 784 blocks = 50 050 629 632 bytes.
    Bd50,
}

impl Media {
    /// All media, smallest first.
    pub const ALL: [Media; 5] = [Media::Cd, Media::Dvd, Media::DvdDl, Media::Bd25, Media::Bd50];

    /// Usable bytes (2048-byte blocks × block count above).
    pub fn capacity(self) -> u64 {
        2048 * match self {
            Media::Cd => 360_000,
            Media::Dvd => 2_295_104,
            Media::DvdDl => 4_173_824,
            Media::Bd25 => 12_219_392,
            Media::Bd50 => 24_438_784,
        }
    }

    /// `cd`, `dvd`, `dvd-dl`, `bd25` or `bd50`.
    pub fn as_str(self) -> &'static str {
        match self {
            Media::Cd => "cd",
            Media::Dvd => "dvd",
            Media::DvdDl => "dvd-dl",
            Media::Bd25 => "bd25",
            Media::Bd50 => "bd50",
        }
    }

    /// Parses [`Media::as_str`] names.
    ///
    /// # Errors
    /// [`RecorderError::Invalid`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Media, RecorderError> {
        Media::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| RecorderError::Invalid(format!("media {s:?}: one of cd, dvd, dvd-dl, bd25, bd50")))
    }
}

impl std::str::FromStr for Media {
    type Err = RecorderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Media::parse(s)
    }
}

/// One session to export: its case-service id and its folder.
#[derive(Debug, Clone)]
pub struct SessionSource {
    /// The case service's session id (shown, and named in the disc manifest).
    pub session_id: String,
    /// The session folder's name under `data/sessions/` (also its folder on the disc,
    /// shortened if too long: [`names::shorten_component`]).
    pub folder: String,
    /// The session folder.
    pub dir: PathBuf,
}

/// What a file on the disc is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    /// `manifest.jsonl` of a session.
    EvidenceManifest,
    /// `manifest.sig` of a session.
    EvidenceSignature,
    /// An original Matroska segment (`tracks/…`).
    Original,
    /// Decoded audio (`audio/<pid>.wav`).
    Wav,
    /// Speaking activity (`audio/<pid>.activity.json`).
    Activity,
    /// A review video (`review/*.mp4`).
    Review,
    /// Any other file the evidence manifest lists (e.g. `review/render.json`).
    Other,
}

impl FileRole {
    /// Evidence manifest or signature (copied onto every disc holding the session).
    pub fn is_evidence(self) -> bool {
        matches!(self, FileRole::EvidenceManifest | FileRole::EvidenceSignature)
    }
}

/// One file of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscFile {
    /// Session id it belongs to.
    pub session: String,
    /// Path relative to the session folder (as in the evidence manifest).
    pub rel: String,
    /// Where it is read from.
    #[serde(skip)]
    pub source: PathBuf,
    /// Path on the disc, `/`-separated, relative to the root (shortened if needed).
    pub path: String,
    /// The unshortened path when `path` was shortened, else `None`.
    pub original_path: Option<String>,
    /// What it is.
    pub role: FileRole,
    /// Holds caucus (side-room) media: confidential.
    pub confidential: bool,
    /// Listed by a `file` entry of the session's evidence manifest.
    pub in_evidence_manifest: bool,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// SHA-256 of each 16 MiB chunk, hex.
    pub chunks: Vec<String>,
    /// Disc number (1-based) of a recording file; 0 for evidence files (on every
    /// disc holding the session).
    pub disc: usize,
}

/// A session in a disc manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscSession {
    /// Case-service session id.
    pub session_id: String,
    /// Folder on the disc.
    pub folder: String,
    /// Integrity check value (evidence chain head), hex.
    pub head: String,
    /// Last evidence entry: `end` or `interrupted`.
    pub last_entry: String,
    /// Participants, pid → name (from the evidence manifest).
    pub participants: BTreeMap<String, String>,
    /// Caucus files left out of the export (session-relative paths).
    pub caucus_left_out: Vec<String>,
}

/// A file of the set that is on another disc.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Elsewhere {
    /// Path on that disc.
    pub path: String,
    /// Its disc number.
    pub disc: usize,
    /// Bytes.
    pub size: u64,
    /// SHA-256, hex.
    pub sha256: String,
}

/// `disc-manifest.json` (format `docs/disc.md` § "Disc manifest").
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscManifest {
    /// Format version, 1.
    pub v: u32,
    /// Case number, e.g. `(2026)枫调字第00001号`.
    pub case_number: String,
    /// Case-service dispute id.
    pub dispute_id: i64,
    /// Full label (Chinese): `<case number> 第n/m盘`.
    pub label: String,
    /// ISO 9660 volume id (d-characters).
    pub volume_id: String,
    /// This disc's number, 1-based.
    pub disc: usize,
    /// Number of discs in the set.
    pub discs: usize,
    /// Medium the set was planned for.
    pub media: Media,
    /// Export time, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub created: String,
    /// Who exported (staff user name).
    pub exported_by: String,
    /// Key id of the evidence key (`evidence-public-key.pem`).
    pub key_id: String,
    /// Chunk size of `chunks`: 16 777 216.
    pub chunk_size: u64,
    /// Whether caucus recordings were chosen.
    pub caucus_included: bool,
    /// Sessions with files on this disc.
    pub sessions: Vec<DiscSession>,
    /// Every file on this disc (besides the manifest, its signature, the page and the key).
    pub files: Vec<DiscFile>,
    /// Recording files of the set on other discs.
    pub elsewhere: Vec<Elsewhere>,
}

/// `disc-manifest.sig`: Ed25519 over `"fengqiao-disc-v1\n" + sha256` of the
/// manifest's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscSig {
    /// 1.
    pub v: u32,
    /// `Ed25519`.
    pub alg: String,
    /// Signing key id.
    pub key_id: String,
    /// SHA-256 of `disc-manifest.json`, hex.
    pub sha256: String,
    /// Signature, standard base64 (88 characters).
    pub sig: String,
}

/// What an export is asked to do.
#[derive(Debug)]
pub struct ExportRequest<'a> {
    /// Case number (Chinese), for labels and the manifest.
    pub case_number: String,
    /// Dispute id.
    pub dispute_id: i64,
    /// Sessions, in order.
    pub sessions: Vec<SessionSource>,
    /// Medium.
    pub media: Media,
    /// Folder the `.iso` files go to.
    pub out_dir: PathBuf,
    /// Include caucus (side-room) recordings, marked confidential.
    pub include_caucus: bool,
    /// The server's evidence key: checks the session manifests, signs disc manifests.
    pub key: &'a EvidenceKey,
    /// Export time.
    pub now: Timestamp,
    /// Who exports (user name), written into the disc manifest.
    pub exported_by: String,
}

/// One image written.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedImage {
    /// The `.iso` file.
    pub path: PathBuf,
    /// Disc number, 1-based.
    pub disc: usize,
    /// Discs in the set.
    pub discs: usize,
    /// ISO volume id.
    pub volume_id: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the image, hex.
    pub sha256: String,
    /// Disc paths of every file on it (as in its manifest).
    pub files: Vec<String>,
}

/// The result of [`export`].
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// Images, by disc number.
    pub images: Vec<ExportedImage>,
    /// Caucus files left out (disc paths they would have had).
    pub caucus_left_out: Vec<String>,
    /// Bytes of recording and evidence files read.
    pub bytes: u64,
}

/// Export phases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Hashing the session files against their evidence manifests.
    Check,
    /// xorriso writing image `disc`.
    Build,
    /// Reading image `disc` back and comparing every file's hash.
    ReadBack,
    /// Burning (`burn`).
    Burn,
}

/// Progress of an export or burn: `done` of `total` work units (bytes).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Progress {
    /// Current phase.
    pub phase: Phase,
    /// Current disc (1-based), 0 while checking.
    pub disc: usize,
    /// Discs in the set (0 until planned).
    pub discs: usize,
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl Progress {
    /// 0–100.
    pub fn percent(&self) -> u8 {
        if self.total == 0 {
            return 0;
        }
        ((self.done.min(self.total) as u128 * 100) / self.total as u128) as u8
    }
}

/// SHA-256 of each 16 MiB chunk of a stream, and of the whole stream unless
/// built with [`ChunkHasher::chunks_only`] (the chunks and the size establish a file,
/// `docs/evidence.md`; skipping the whole-file hash halves the hashing work).
pub(crate) struct ChunkHasher {
    whole: Option<Context>,
    chunk: Context,
    in_chunk: u64,
    size: u64,
    chunks: Vec<String>,
}

impl ChunkHasher {
    pub(crate) fn new() -> Self {
        Self { whole: Some(Context::new(&SHA256)), chunk: Context::new(&SHA256), in_chunk: 0, size: 0, chunks: Vec::new() }
    }
    pub(crate) fn chunks_only() -> Self {
        Self { whole: None, ..Self::new() }
    }
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        if let Some(w) = self.whole.as_mut() {
            w.update(data);
        }
        self.size += data.len() as u64;
        while !data.is_empty() {
            let take = ((CHUNK_SIZE - self.in_chunk) as usize).min(data.len());
            self.chunk.update(&data[..take]);
            self.in_chunk += take as u64;
            data = &data[take..];
            if self.in_chunk == CHUNK_SIZE {
                let done = std::mem::replace(&mut self.chunk, Context::new(&SHA256));
                self.chunks.push(to_hex(done.finish().as_ref()));
                self.in_chunk = 0;
            }
        }
    }
    /// (size, sha256 hex — empty when chunks only, chunk hex).
    pub(crate) fn finish(mut self) -> (u64, String, Vec<String>) {
        if self.in_chunk > 0 {
            self.chunks.push(to_hex(self.chunk.finish().as_ref()));
        }
        (self.size, self.whole.map(|w| to_hex(w.finish().as_ref())).unwrap_or_default(), self.chunks)
    }
}

fn hash_with_progress(path: &Path, whole: bool, progress: &mut dyn FnMut(u64)) -> Result<(u64, String, Vec<String>), RecorderError> {
    let mut f = std::fs::File::open(path).map_err(RecorderError::io(path))?;
    let mut h = if whole { ChunkHasher::new() } else { ChunkHasher::chunks_only() };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RecorderError::io(path)(e)),
        };
        h.update(&buf[..n]);
        progress(n as u64);
    }
    Ok(h.finish())
}

/// Removes the listed paths on drop unless disarmed: no partial image is left
/// behind by a failed export.
struct Cleanup(Vec<PathBuf>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = std::fs::remove_dir_all(p);
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

/// Exports the sessions of `req` as ISO images in `req.out_dir`, named
/// `<volume id>.iso` (see [`names::volume_id`]), and returns what was written.
///
/// Steps: read and check every session's evidence manifest and signature against
/// the server key; hash every file (one pass) and compare with its `file` entry;
/// choose files (caucus left out unless `include_caucus`); plan discs; per disc
/// write the disc manifest, its signature, the public key and `index.html` into a
/// staging folder, let xorriso build `<volid>.iso.part`, set the Joliet label,
/// read every file back from the image by its extents and compare with the
/// manifest, then rename to `.iso`. On any error the `.part` and staging files
/// are removed, so no partial image is left looking complete.
///
/// # Errors
/// [`RecorderError::NothingToExport`] (no session, or no recording file chosen);
/// [`RecorderError::Unverified`] (a manifest, signature or file does not check);
/// [`RecorderError::FileTooLarge`]; [`RecorderError::Io`] (output folder not
/// writable, …); [`RecorderError::NoSpace`]; [`RecorderError::Exists`] (an image of
/// that name exists); [`RecorderError::Tool`] (xorriso missing or failed);
/// [`RecorderError::ReadBack`].
pub fn export(req: &ExportRequest<'_>, progress: &mut dyn FnMut(&Progress)) -> Result<ExportReport, RecorderError> {
    if req.sessions.is_empty() {
        return Err(RecorderError::NothingToExport(format!("case {}: no session chosen has recordings", req.case_number)));
    }
    let pk = *req.key.public_key();
    // 1. Evidence manifests and file lists.
    let mut all: Vec<DiscFile> = Vec::new();
    let mut sessions: Vec<DiscSession> = Vec::new();
    let mut evidence = Vec::new();
    for s in &req.sessions {
        let ev = plan::read_evidence(&s.dir, &pk)
            .map_err(|m| RecorderError::Unverified { session: s.session_id.clone(), problems: vec![m] })?;
        let files = plan::session_files(s, &ev).map_err(|m| RecorderError::Unverified {
            session: s.session_id.clone(),
            problems: vec![m],
        })?;
        evidence.push(ev);
        all.extend(files);
    }
    let caucus_left_out: Vec<String> =
        if req.include_caucus { Vec::new() } else { all.iter().filter(|f| f.confidential).map(|f| f.path.clone()).collect() };
    if !req.include_caucus {
        all.retain(|f| !f.confidential);
    }
    for (s, ev) in req.sessions.iter().zip(&evidence) {
        let left: Vec<String> = if req.include_caucus {
            Vec::new()
        } else {
            caucus_left_out
                .iter()
                .filter_map(|p| p.strip_prefix(&format!("{}/", names::shorten_component(&s.folder))).map(str::to_owned))
                .collect()
        };
        sessions.push(DiscSession {
            session_id: s.session_id.clone(),
            folder: names::shorten_component(&s.folder),
            head: ev.head.clone(),
            last_entry: ev.last.clone(),
            participants: ev.names.clone(),
            caucus_left_out: left,
        });
    }
    if !all.iter().any(|f| !f.role.is_evidence()) {
        return Err(RecorderError::NothingToExport(format!(
            "case {}: the chosen sessions have no recording files{}",
            req.case_number,
            if caucus_left_out.is_empty() { "" } else { " outside caucus (choose caucus recordings to include them)" }
        )));
    }
    // 2. Plan before the long hashing pass, so a too-large file is named at once.
    let discs = plan::span(&mut all, req.media)?;
    let bytes: u64 = all.iter().map(|f| f.size).sum();
    // Bytes of files on each disc (index = disc number; evidence files count on
    // every disc holding their session).
    let mut per_disc = vec![0u64; discs + 1];
    for f in &all {
        if f.role.is_evidence() {
            for (d, bytes) in per_disc.iter_mut().enumerate().skip(1) {
                if all.iter().any(|g| g.disc == d && g.session == f.session) {
                    *bytes += f.size;
                }
            }
        } else {
            per_disc[f.disc] += f.size;
        }
    }
    let total = bytes + 2 * per_disc.iter().sum::<u64>();
    let mut done = 0u64;
    let mut report = |phase, disc, done: u64| progress(&Progress { phase, disc, discs, done, total });
    report(Phase::Check, 0, 0);
    // 3. Hash (one pass) and compare with the evidence manifests.
    // A file the evidence manifest lists is established by its size and chunk
    // hashes (docs/evidence.md), so only those are computed and its whole-file
    // SHA-256 is taken from the manifest; other files get both.
    for f in all.iter_mut() {
        let ev = &evidence[req.sessions.iter().position(|s| s.session_id == f.session).unwrap_or(0)];
        let listed = ev.files.get(&f.rel);
        let (size, sha, chunks) = hash_with_progress(&f.source, listed.is_none(), &mut |n| {
            done += n;
            report(Phase::Check, 0, done);
        })?;
        let sha = match listed {
            Some((esize, esha, echunks)) => {
                if *esize != size || *echunks != chunks || (size <= CHUNK_SIZE && chunks.first().is_some_and(|c| c != esha)) {
                    return Err(RecorderError::Unverified {
                        session: f.session.clone(),
                        problems: vec![format!("{}: size or SHA-256 differs from its evidence manifest entry", f.rel)],
                    });
                }
                esha.clone()
            }
            None => sha,
        };
        f.size = size;
        f.sha256 = sha;
        f.chunks = chunks;
    }
    // 4. Per disc: stage, build, label, read back, rename.
    std::fs::create_dir_all(&req.out_dir).map_err(RecorderError::io(&req.out_dir))?;
    let mut images = Vec::new();
    #[allow(clippy::needless_range_loop)] // d is the disc number, also used in names
    for d in 1..=discs {
        let volume_id = names::volume_id(&req.case_number, req.dispute_id, d, discs);
        let final_path = req.out_dir.join(format!("{volume_id}.iso"));
        if final_path.exists() {
            return Err(RecorderError::Exists(final_path));
        }
        let part = req.out_dir.join(format!("{volume_id}.iso.part"));
        let staging = req.out_dir.join(format!(".{volume_id}.staging"));
        let guard = Cleanup(vec![part.clone(), staging.clone()]);
        let _ = std::fs::remove_file(&part);
        let _ = std::fs::remove_dir_all(&staging);
        let on_disc: Vec<DiscFile> = all
            .iter()
            .filter(|f| f.disc == d || (f.role.is_evidence() && all.iter().any(|g| g.disc == d && g.session == f.session)))
            .cloned()
            .collect();
        let manifest = DiscManifest {
            v: 1,
            case_number: req.case_number.clone(),
            dispute_id: req.dispute_id,
            label: format!("{} 第{d}/{discs}盘", req.case_number),
            volume_id: volume_id.clone(),
            disc: d,
            discs,
            media: req.media,
            created: req.now.to_rfc3339(),
            exported_by: req.exported_by.clone(),
            key_id: pk.key_id(),
            chunk_size: CHUNK_SIZE,
            caucus_included: req.include_caucus,
            sessions: sessions.iter().filter(|s| on_disc.iter().any(|f| f.session == s.session_id)).cloned().collect(),
            files: on_disc.clone(),
            elsewhere: all
                .iter()
                .filter(|f| !f.role.is_evidence() && f.disc != d)
                .map(|f| Elsewhere { path: f.path.clone(), disc: f.disc, size: f.size, sha256: f.sha256.clone() })
                .collect(),
        };
        std::fs::create_dir_all(&staging).map_err(RecorderError::io(&staging))?;
        let generated = write_generated(&staging, &manifest, req.key)?;
        let mut map: Vec<(PathBuf, String)> = generated;
        map.extend(on_disc.iter().map(|f| (f.source.clone(), f.path.clone())));
        let base = done;
        let disc_bytes = per_disc[d];
        xorriso::build(&part, &volume_id, "Fengqiao disc export (docs/disc.md)", &map, &mut |p| {
            report(Phase::Build, d, base + (disc_bytes as f64 * p / 100.0) as u64);
        })?;
        done += disc_bytes;
        report(Phase::Build, d, done);
        xorriso::set_joliet_label(&part, &names::joliet_label(&req.case_number))?;
        let size = std::fs::metadata(&part).map_err(RecorderError::io(&part))?.len();
        if size > req.media.capacity() {
            return Err(RecorderError::Invalid(format!(
                "image {} is {size} bytes, more than a {} disc holds ({} bytes)",
                part.display(),
                req.media.as_str(),
                req.media.capacity()
            )));
        }
        let base = done;
        let check = read_back(&part, &manifest, &mut |n| report(Phase::ReadBack, d, base + n.min(disc_bytes)))?;
        if !check.mismatches.is_empty() {
            return Err(RecorderError::ReadBack { image: part.display().to_string(), mismatches: check.mismatches });
        }
        done += disc_bytes;
        report(Phase::ReadBack, d, done);
        std::fs::rename(&part, &final_path).map_err(RecorderError::io(&final_path))?;
        let _ = std::fs::remove_dir_all(&staging);
        drop(guard);
        images.push(ExportedImage {
            path: final_path,
            disc: d,
            discs,
            volume_id,
            size,
            sha256: check.image_sha256,
            files: on_disc.iter().map(|f| f.path.clone()).collect(),
        });
    }
    Ok(ExportReport { images, caucus_left_out, bytes })
}

/// Writes `disc-manifest.json`, `disc-manifest.sig`, the public key, `index.html`
/// and `disc.js` into `staging`; returns their (source, disc path) pairs.
fn write_generated(staging: &Path, m: &DiscManifest, key: &EvidenceKey) -> Result<Vec<(PathBuf, String)>, RecorderError> {
    let json = serde_json::to_vec_pretty(m).map_err(|e| RecorderError::Invalid(format!("disc manifest: {e}")))?;
    let sha = to_hex(ring::digest::digest(&SHA256, &json).as_ref());
    let sig = key.sign(format!("{DISC_SIGNED_PREFIX}{sha}").as_bytes());
    let s = DiscSig {
        v: 1,
        alg: "Ed25519".into(),
        key_id: key.public_key().key_id(),
        sha256: sha,
        sig: base64::engine::general_purpose::STANDARD.encode(sig),
    };
    let mut sig_bytes = serde_json::to_vec(&s).unwrap_or_default();
    sig_bytes.push(b'\n');
    // The manifest is embedded in the page too (a file:// page cannot read its
    // neighbours until the user picks the folder); `<` is escaped for the script element.
    let embedded = String::from_utf8_lossy(&json).replace('<', "\\u003c");
    let html = INDEX_HTML.replace("__DISC_MANIFEST_JSON__", &embedded).replace("__DISC_LABEL__", &html_escape(&m.label));
    let pem = key.public_key().to_pem();
    let files: [(&str, &[u8]); 5] = [
        (DISC_MANIFEST, &json),
        (DISC_SIG, &sig_bytes),
        (PUBLIC_KEY_FILE, pem.as_bytes()),
        ("index.html", html.as_bytes()),
        ("disc.js", DISC_JS.as_bytes()),
    ];
    let mut out = Vec::new();
    for (name, bytes) in files {
        let p = staging.join(name);
        std::fs::write(&p, bytes).map_err(RecorderError::io(&p))?;
        out.push((p, name.to_owned()));
    }
    Ok(out)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Result of reading an image or disc back.
#[derive(Debug, Clone, Default)]
pub struct ReadBack {
    /// SHA-256 of the whole image file (empty when reading a drive).
    pub image_sha256: String,
    /// Files whose size, SHA-256 and chunks match the manifest.
    pub ok: Vec<String>,
    /// One line per file that is missing or differs.
    pub mismatches: Vec<String>,
}

/// Reads every file of `manifest.files` back from `dev` (an image file or a disc)
/// by its data extents (xorriso `report_sections`) in one sequential pass and
/// compares the size and every 16 MiB chunk hash (which together establish the
/// file, `docs/evidence.md`); also hashes the whole image when `dev` is a regular
/// file. `progress` gets the bytes read so far.
///
/// # Errors
/// [`RecorderError::Tool`] when xorriso cannot list the image, [`RecorderError::Io`].
pub fn read_back(dev: &Path, manifest: &DiscManifest, progress: &mut dyn FnMut(u64)) -> Result<ReadBack, RecorderError> {
    let ext = xorriso::extents(dev)?;
    let mut out = ReadBack::default();
    // (lba, bytes, file index) in disc order; each file's extents must be ascending.
    let mut pieces: Vec<(u64, u64, usize)> = Vec::new();
    let mut hashers: Vec<Option<ChunkHasher>> = Vec::new();
    for (i, f) in manifest.files.iter().enumerate() {
        // Size and chunk hashes establish the file (docs/evidence.md).
        hashers.push(Some(ChunkHasher::chunks_only()));
        match ext.get(&f.path) {
            Some(xs) => {
                let mut last = 0;
                for x in xs {
                    if x.lba < last {
                        out.mismatches.push(format!("{}: extents out of order", f.path));
                    }
                    last = x.lba;
                    pieces.push((x.lba * 2048, x.bytes, i));
                }
            }
            None if f.size == 0 => {}
            None => {
                out.mismatches.push(format!("{}: missing from the image", f.path));
                hashers[i] = None;
            }
        }
    }
    pieces.sort();
    let is_file = std::fs::metadata(dev).map(|m| m.is_file()).unwrap_or(false);
    let mut image = Context::new(&SHA256);
    let mut fd = std::fs::File::open(dev).map_err(RecorderError::io(dev))?;
    let mut pos = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut read_total = 0u64;
    // Reads [pos, to) sequentially, handing the bytes to `sink`.
    let mut advance = |fd: &mut std::fs::File, pos: &mut u64, to: u64, sink: &mut dyn FnMut(&[u8])| -> std::io::Result<()> {
        while *pos < to {
            let n = ((to - *pos) as usize).min(buf.len());
            fd.read_exact(&mut buf[..n])?;
            if is_file {
                image.update(&buf[..n]);
            }
            sink(&buf[..n]);
            *pos += n as u64;
        }
        Ok(())
    };
    for (start, len, i) in pieces {
        if start < pos {
            out.mismatches.push(format!("{}: overlapping extents", manifest.files[i].path));
            continue;
        }
        if is_file {
            advance(&mut fd, &mut pos, start, &mut |_| {}).map_err(RecorderError::io(dev))?;
        } else {
            use std::io::Seek as _;
            fd.seek(std::io::SeekFrom::Start(start)).map_err(RecorderError::io(dev))?;
            pos = start;
        }
        let h = &mut hashers[i];
        advance(&mut fd, &mut pos, start + len, &mut |b| {
            if let Some(h) = h.as_mut() {
                h.update(b)
            }
            read_total += b.len() as u64;
            progress(read_total);
        })
        .map_err(RecorderError::io(dev))?;
    }
    if is_file {
        let end = std::fs::metadata(dev).map_err(RecorderError::io(dev))?.len();
        advance(&mut fd, &mut pos, end, &mut |_| {}).map_err(RecorderError::io(dev))?;
        out.image_sha256 = to_hex(image.finish().as_ref());
    }
    for (f, h) in manifest.files.iter().zip(hashers) {
        let Some(h) = h else { continue };
        let (size, _, chunks) = h.finish();
        if size != f.size || chunks != f.chunks {
            let k = chunks.iter().zip(&f.chunks).position(|(a, b)| a != b);
            let what = match k {
                Some(k) => format!("chunk {k} (from byte {}) differs", k as u64 * CHUNK_SIZE),
                None => format!("{size} bytes read back, the manifest says {}", f.size),
            };
            out.mismatches.push(format!("{}: {what}", f.path));
        } else {
            out.ok.push(f.path.clone());
        }
    }
    Ok(out)
}

/// Reads `disc-manifest.json` from the image or disc at `dev` and checks its
/// signature with `key`.
///
/// # Errors
/// [`RecorderError::Tool`], [`RecorderError::Io`], [`RecorderError::Invalid`]
/// (no manifest, not parseable, or its signature does not verify under `key`).
pub fn read_disc_manifest(dev: &Path, key: &PublicKey) -> Result<DiscManifest, RecorderError> {
    let ext = xorriso::extents(dev)?;
    let mut fd = std::fs::File::open(dev).map_err(RecorderError::io(dev))?;
    let mut read = |name: &str| -> Result<Vec<u8>, RecorderError> {
        let xs = ext.get(name).ok_or_else(|| RecorderError::Invalid(format!("{}: no {name} on it (not a Fengqiao disc?)", dev.display())))?;
        let mut v = Vec::new();
        xorriso::read_extents(&mut fd, xs, &mut |b| v.extend_from_slice(b)).map_err(RecorderError::io(dev))?;
        Ok(v)
    };
    let json = read(DISC_MANIFEST)?;
    let sig_line = read(DISC_SIG)?;
    let sig: DiscSig = serde_json::from_slice(&sig_line).map_err(|e| RecorderError::Invalid(format!("{DISC_SIG}: {e}")))?;
    let sha = to_hex(ring::digest::digest(&SHA256, &json).as_ref());
    let raw = base64::engine::general_purpose::STANDARD.decode(&sig.sig).unwrap_or_default();
    if sig.sha256 != sha || !key.verify(format!("{DISC_SIGNED_PREFIX}{sha}").as_bytes(), &raw) {
        return Err(RecorderError::Invalid(format!("{DISC_SIG}: the disc manifest's signature does not verify under key {}", key.key_id())));
    }
    serde_json::from_slice(&json).map_err(|e| RecorderError::Invalid(format!("{DISC_MANIFEST}: {e}")))
}

/// What [`burn`] found.
#[derive(Debug, Clone)]
pub struct BurnReport {
    /// The disc manifest read back from the burnt disc.
    pub manifest: DiscManifest,
    /// The read-back comparison (success only when `mismatches` is empty).
    pub check: ReadBack,
}

/// Burns `image` to `device` (`/dev/srN`, or a regular file standing in for a
/// drive: an existing file, or a new path outside `/dev`), then reads the disc back: its disc manifest (signature checked with
/// `key`) and every file against it.
///
/// # Errors
/// [`RecorderError::NoDrive`] when `device` is under `/dev` and does not exist (no
/// drive present), or is neither a device node nor a regular file; [`RecorderError::Tool`] (burn failed);
/// [`RecorderError::ReadBack`] when any file differs.
pub fn burn(image: &Path, device: &Path, key: &PublicKey, progress: &mut dyn FnMut(&Progress)) -> Result<BurnReport, RecorderError> {
    if !image.is_file() {
        return Err(RecorderError::Invalid(format!("image {}: no such file", image.display())));
    }
    match std::fs::metadata(device) {
        // A new path outside /dev is an image file to write (tests, USB images).
        Err(_) if !device.starts_with("/dev") => {}
        Err(_) => {
            return Err(RecorderError::NoDrive {
                device: device.display().to_string(),
                reason: "no such device: no optical drive is present there (check `ls /dev/sr*`)".into(),
            })
        }
        Ok(m) if !(m.is_file() || xorriso::is_block_or_char(device)) => {
            return Err(RecorderError::NoDrive {
                device: device.display().to_string(),
                reason: "not an optical drive".into(),
            })
        }
        Ok(_) => {}
    }
    let size = std::fs::metadata(image).map_err(RecorderError::io(image))?.len();
    let total = 2 * size;
    progress(&Progress { phase: Phase::Burn, disc: 0, discs: 0, done: 0, total });
    xorriso::burn(image, device, &mut |p| {
        progress(&Progress { phase: Phase::Burn, disc: 0, discs: 0, done: (size as f64 * p / 100.0) as u64, total })
    })?;
    let manifest = read_disc_manifest(device, key)?;
    let check = read_back(device, &manifest, &mut |n| {
        progress(&Progress { phase: Phase::ReadBack, disc: manifest.disc, discs: manifest.discs, done: size + n.min(size), total })
    })?;
    progress(&Progress { phase: Phase::ReadBack, disc: manifest.disc, discs: manifest.discs, done: total, total });
    if !check.mismatches.is_empty() {
        return Err(RecorderError::ReadBack { image: device.display().to_string(), mismatches: check.mismatches });
    }
    Ok(BurnReport { manifest, check })
}
