//! Evidence API for the judge's review page (issue 8): what one recorded mediation
//! session holds, read from its session folder `data_dir/sessions/<session-id>/`
//! (`docs/interfaces.md`), and a server-side check of its manifest (`docs/evidence.md`).
//!
//! Routes (JSON, errors as the case service's `{code, message, field}`):
//!
//! - `GET  /api/evidence/disputes/{id}/sessions/{sid}`: [`EvidenceView`]: the manifest
//!   summary (participants with their consent answers, the start/pause/resume/stop
//!   log with reasons, files, integrity check value = chain head), the speaking
//!   activity lanes (`audio/<pid>.activity.json`) and the session's registered
//!   recordings with their range-request URLs (`/api/recordings/{rid}/file`, audited
//!   by the case service on every read);
//! - `POST /api/evidence/disputes/{id}/sessions/{sid}/verify`: [`VerifyResult`]:
//!   [`fengqiao_recorder::verify`] with the server's evidence public key
//!   (`data_dir/keys/evidence-ed25519.pk8`), one result per file.
//!
//! Who: the judge and the clerk (every dispute), the mediator assigned to the dispute;
//! anyone else gets 403 (audited), no credentials 401. Every answer, success or
//! refusal, is written to the case service's audit log (`evidence.view`,
//! `evidence.verify`).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use fengqiao_cases::model::StaffRole;
use fengqiao_cases::{CasesError, CasesState, Ctx, Store};
use fengqiao_recorder::{Body, ChainValue, Entry, EvidenceKey, Location};
use serde::{Deserialize, Serialize};
use std::path::{Path as FsPath, PathBuf};

/// Roles that may open a session's evidence.
const ROLES: &[StaffRole] = &[StaffRole::Judge, StaffRole::Clerk, StaffRole::Mediator];

/// Largest `manifest.jsonl` or activity file read, bytes (a long session's manifest is
/// a few hundred KiB; activity JSON is ~4 bytes per 100 ms).
const MAX_READ: u64 = 64 * 1024 * 1024;

/// One participant of the manifest with their recording-consent answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EvidenceParticipant {
    /// Participant id (invite token `pid`).
    pub pid: String,
    /// Display name as invited.
    pub name: String,
    /// `mediator`, `applicant`, `respondent`, `agent` or `observer`.
    pub role: String,
    /// The last consent answer: `accept`, `refuse`, or `None` when never asked/answered.
    pub consent: Option<String>,
    /// When that answer was given, `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
    pub consent_at: Option<String>,
}

/// One line of the recording log (consent, start, pause, resume, stop, moved,
/// interrupted, end, and `track_end` of a track that lost packets), in manifest order.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogEntry {
    /// Entry `seq` (manifest line − 1).
    pub seq: u64,
    /// Server UTC time of the entry.
    pub t: String,
    /// Position on the session timeline, ms (negative before the first `start`).
    pub at_ms: Option<i64>,
    /// Who acted: a participant id, `system`, or `None`.
    pub actor: Option<String>,
    /// Entry type (`docs/evidence.md`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Pause reason, consent answer, room moved to, or interruption reason.
    pub detail: Option<String>,
}

/// One evidence file listed by the manifest.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EvidenceFile {
    /// Path relative to the session folder.
    pub path: String,
    /// `closed`, `interrupted`, `lost` or `open` (no `file` entry yet).
    pub status: String,
    /// `audio`, `video` or `other`.
    pub kind: String,
    /// Codec or format (`Opus`, `VP8`, `WAV`, …).
    pub codec: Option<String>,
    /// The participant the file belongs to.
    pub pid: Option<String>,
    /// Size, bytes, as recorded.
    pub size: Option<u64>,
    /// SHA-256 hex, as recorded.
    pub sha256: Option<String>,
}

/// One lane of the speaking timeline.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Lane {
    /// Participant id.
    pub pid: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Speaking intervals `[from_ms, to_ms]` on the session timeline.
    pub segments: Vec<[u64; 2]>,
    /// Session timeline length covered by the activity file, ms (levels × resolution).
    pub covered_ms: u64,
}

/// A registered recording of the session, playable with HTTP ranges.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EvidenceVideo {
    /// Recording id of the case service.
    pub recording_id: i64,
    /// Path relative to `data_dir/sessions`.
    pub file_path: String,
    /// MIME type.
    pub media_type: String,
    /// `/api/recordings/{rid}/file` (Range requests, audited).
    pub url: String,
    /// SHA-256 of the file as registered.
    pub integrity_sha256: String,
}

/// What the judge's review page shows for one session.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceView {
    /// Dispute id.
    pub dispute_id: i64,
    /// Case number.
    pub case_number: String,
    /// Session id (also the folder name under `data_dir/sessions`).
    pub session_id: i64,
    /// Room id of the session.
    pub room: String,
    /// Whether a manifest exists for this session.
    pub recorded: bool,
    /// Manifest entries (complete lines).
    pub entries: u64,
    /// Chain head after the last complete line: the integrity check value, 64 hex.
    pub integrity_check_value: Option<String>,
    /// Signing key id named by the manifest header.
    pub key_id: Option<String>,
    /// `t` of the first `start` entry: timeline zero.
    pub timeline_start: Option<String>,
    /// Timeline length, ms: the last `stop` (else the last entry) − timeline zero, or the
    /// longest activity file if longer.
    pub duration_ms: u64,
    /// Participants with consent.
    pub participants: Vec<EvidenceParticipant>,
    /// Recording log.
    pub log: Vec<LogEntry>,
    /// Files.
    pub files: Vec<EvidenceFile>,
    /// Speaking activity lanes, one per participant with an activity file.
    pub lanes: Vec<Lane>,
    /// Review videos / recordings registered for this session.
    pub videos: Vec<EvidenceVideo>,
    /// Lines that could not be read (a torn tail, a non-JSON line): shown, never hidden.
    pub unreadable: Vec<String>,
}

/// The per-file outcome of a verify run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileCheck {
    /// Path relative to the session folder.
    pub path: String,
    /// True when size, SHA-256 and every chunk hash match.
    pub ok: bool,
    /// What is wrong, empty when ok.
    pub problems: Vec<String>,
}

/// The answer of `POST …/verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    /// True only when nothing at all is wrong (files, chain, end, signature).
    pub ok: bool,
    /// Chain head recomputed from the manifest.
    pub integrity_check_value: Option<String>,
    /// The trusted key's id (the server's evidence key).
    pub key_id: String,
    /// Complete manifest lines checked.
    pub entries: usize,
    /// One result per file the manifest lists.
    pub files: Vec<FileCheck>,
    /// Problems not tied to a file: `{location, message}` (manifest, line, signature).
    pub problems: Vec<VerifyProblem>,
    /// Remarks that are not failures.
    pub notes: Vec<String>,
}

/// A verify problem outside the files.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VerifyProblem {
    /// `manifest`, `manifest line N` or `signature (manifest.sig)`.
    pub location: String,
    /// What is wrong.
    pub message: String,
}

#[derive(Deserialize)]
struct Activity {
    pid: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    resolution_ms: u64,
    #[serde(default)]
    levels: Vec<u8>,
    #[serde(default)]
    segments: Vec<[u64; 2]>,
}

/// The routes above, with the case service's state (its login and audit log).
pub fn router(state: CasesState) -> Router {
    Router::new()
        .route("/api/evidence/disputes/{id}/sessions/{sid}", get(view))
        .route("/api/evidence/disputes/{id}/sessions/{sid}/verify", post(verify))
        .with_state(state)
}

fn parse_id(field: &str, s: &str) -> Result<i64, CasesError> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| CasesError::invalid(field, "must be a positive integer id"))
}

/// Checks role and scope, and that the session belongs to the dispute; returns the
/// session view and the dispute's detail.
async fn authorise(
    st: &Store,
    ctx: &Ctx,
    id: &str,
    sid: &str,
    what: &str,
) -> Result<(fengqiao_cases::service::SessionView, fengqiao_cases::model::DisputeDetail), CasesError> {
    let (id, sid) = (parse_id("id", id)?, parse_id("sid", sid)?);
    let u = ctx.staff(st, ROLES, what).await?;
    let d = st.get_dispute(id).await?.ok_or_else(|| CasesError::NotFound("dispute".into()))?;
    if !u.scope().covers(&d) {
        return Err(ctx
            .deny(st, what, &format!("dispute {id}"), "this dispute is outside your organisation or assignment")
            .await);
    }
    let sv = st.session_view(id, sid).await?;
    let detail = st.dispute_detail(id).await?;
    Ok((sv, detail))
}

fn session_dir(st: &Store, sid: i64) -> PathBuf {
    st.recordings_dir().join(sid.to_string())
}

async fn read_capped(path: &FsPath) -> std::io::Result<Option<Vec<u8>>> {
    match tokio::fs::metadata(path).await {
        Ok(m) if m.is_file() && m.len() <= MAX_READ => tokio::fs::read(path).await.map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Summarises `manifest.jsonl` bytes: never fails; unreadable lines are listed.
pub fn summarise_manifest(data: &[u8]) -> ManifestSummary {
    let mut s = ManifestSummary::default();
    let mut head = ChainValue::genesis();
    let mut parts: Vec<&[u8]> = data.split(|b| *b == b'\n').collect();
    let torn = parts.pop().filter(|t| !t.is_empty());
    let mut zero: Option<i64> = None;
    let mut last_ms: Option<i64> = None;
    let mut last_stop: Option<i64> = None;
    let mut entries: Vec<Entry> = Vec::new();
    for (i, line) in parts.iter().enumerate() {
        head = head.next(line);
        s.entries += 1;
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(e) => s.unreadable.push(format!("manifest line {}: {e}", i + 1)),
        }
    }
    if let Some(t) = torn {
        s.unreadable.push(format!("manifest: torn last line ({} bytes, no LF)", t.len()));
    }
    if s.entries > 0 {
        s.head = Some(head.to_hex());
    }
    for e in &entries {
        if zero.is_none() && matches!(e.body, Body::Start {}) {
            zero = Some(e.t.unix_millis());
            s.timeline_start = Some(e.t.to_rfc3339());
        }
        // The timeline ends at the last `stop` (entries after it are file closings).
        if matches!(e.body, Body::Stop {}) || last_stop.is_none() {
            last_ms = Some(e.t.unix_millis());
        }
        if matches!(e.body, Body::Stop {}) {
            last_stop = Some(e.t.unix_millis());
        }
    }
    if let (Some(z), Some(l)) = (zero, last_ms) {
        s.duration_ms = (l - z).max(0) as u64;
    }
    let at = |e: &Entry| zero.map(|z| e.t.unix_millis() - z);
    for e in &entries {
        let mut log = |detail: Option<String>| {
            s.log.push(LogEntry {
                seq: e.seq,
                t: e.t.to_rfc3339(),
                at_ms: at(e),
                actor: e.actor.clone(),
                kind: e.body.type_name().to_owned(),
                detail,
            })
        };
        match &e.body {
            Body::Session { key_id, room, .. } => {
                s.key_id = Some(key_id.clone());
                s.room = Some(room.clone());
            }
            Body::Participant { pid, name, role } => {
                if !s.participants.iter().any(|p| &p.pid == pid) {
                    s.participants.push(EvidenceParticipant {
                        pid: pid.clone(),
                        name: name.clone(),
                        role: role.clone(),
                        consent: None,
                        consent_at: None,
                    });
                }
            }
            Body::Consent { answer } => {
                let a = match answer {
                    fengqiao_recorder::Answer::Accept => "accept",
                    fengqiao_recorder::Answer::Refuse => "refuse",
                };
                if let Some(p) = s.participants.iter_mut().find(|p| Some(&p.pid) == e.actor.as_ref()) {
                    p.consent = Some(a.into());
                    p.consent_at = Some(e.t.to_rfc3339());
                }
                log(Some(a.into()));
            }
            Body::Start {} | Body::Resume {} | Body::Stop {} | Body::End {} => log(None),
            Body::Pause { reason } => log(Some(reason.clone())),
            Body::Moved { pid, room } => log(Some(format!("{pid} → {room}"))),
            Body::Interrupted { reason, .. } => log(Some(reason.clone())),
            Body::FileOpen { path, pid, kind, codec } => {
                let kind = serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned));
                s.files.push(EvidenceFile {
                    path: path.clone(),
                    status: "open".into(),
                    kind: kind.unwrap_or_default(),
                    codec: codec.clone(),
                    pid: pid.clone(),
                    size: None,
                    sha256: None,
                });
            }
            Body::File { path, status, size, sha256, .. } => {
                if let Some(f) = s.files.iter_mut().rev().find(|f| &f.path == path) {
                    f.status = serde_json::to_value(status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    f.size = Some(*size);
                    f.sha256 = Some(sha256.clone());
                }
            }
            Body::FileLost { path, .. } => {
                if let Some(f) = s.files.iter_mut().rev().find(|f| &f.path == path) {
                    f.status = "lost".into();
                }
            }
            // Loss on the record: shown only when a track lost or dropped packets.
            Body::TrackEnd { track, packets, lost, queue_dropped } if lost + queue_dropped > 0 => {
                log(Some(format!("{track}: {packets} packets, {lost} lost, {queue_dropped} dropped")))
            }
            // Timeline placement of tracks (and any later entry type): not part of the log.
            _ => {}
        }
    }
    s
}

/// What [`summarise_manifest`] finds in a manifest.
#[derive(Debug, Clone, Default)]
pub struct ManifestSummary {
    /// Complete lines.
    pub entries: u64,
    /// Chain head after them (hex).
    pub head: Option<String>,
    /// Header key id.
    pub key_id: Option<String>,
    /// Header room.
    pub room: Option<String>,
    /// `t` of the first `start`.
    pub timeline_start: Option<String>,
    /// Last `stop` (else last entry) − timeline zero, ms.
    pub duration_ms: u64,
    /// Participants.
    pub participants: Vec<EvidenceParticipant>,
    /// Log lines.
    pub log: Vec<LogEntry>,
    /// Files.
    pub files: Vec<EvidenceFile>,
    /// Unreadable lines.
    pub unreadable: Vec<String>,
}

async fn lanes(dir: &FsPath, parts: &[EvidenceParticipant]) -> Result<(Vec<Lane>, Vec<String>), CasesError> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    let audio = dir.join("audio");
    let mut rd = match tokio::fs::read_dir(&audio).await {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, bad)),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    while let Some(ent) = rd.next_entry().await? {
        let n = ent.file_name().to_string_lossy().into_owned();
        if n.ends_with(".activity.json") {
            names.push(n);
        }
    }
    names.sort();
    for n in names {
        let Some(bytes) = read_capped(&audio.join(&n)).await? else { continue };
        match serde_json::from_slice::<Activity>(&bytes) {
            Ok(a) => {
                let p = parts.iter().find(|p| p.pid == a.pid);
                out.push(Lane {
                    name: p.map(|p| p.name.clone()).unwrap_or(a.name),
                    role: p.map(|p| p.role.clone()).unwrap_or(a.role),
                    covered_ms: a.levels.len() as u64 * a.resolution_ms,
                    segments: a.segments.into_iter().filter(|s| s[1] >= s[0]).collect(),
                    pid: a.pid,
                });
            }
            Err(e) => bad.push(format!("audio/{n}: {e}")),
        }
    }
    // Lanes follow the manifest's participant order.
    out.sort_by_key(|l| parts.iter().position(|p| p.pid == l.pid).unwrap_or(usize::MAX));
    Ok((out, bad))
}

async fn view(
    State(st): State<CasesState>,
    ctx: Ctx,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<EvidenceView>, CasesError> {
    let (sv, detail) = authorise(&st.store, &ctx, &id, &sid, "evidence.view").await?;
    let sid = sv.session.id;
    let dir = session_dir(&st.store, sid);
    let manifest = read_capped(&dir.join(fengqiao_recorder::MANIFEST_FILE)).await?;
    let s = manifest.as_deref().map(summarise_manifest).unwrap_or_default();
    let (lanes, bad) = lanes(&dir, &s.participants).await?;
    let videos = detail
        .recordings
        .iter()
        .filter(|r| r.session_id == sid)
        .map(|r| EvidenceVideo {
            recording_id: r.id,
            file_path: r.file_path.clone(),
            media_type: r.media_type.clone(),
            url: format!("/api/recordings/{}/file", r.id),
            integrity_sha256: r.integrity_sha256.clone(),
        })
        .collect();
    st.store
        .audit(&ctx.actor(), "evidence.view", "session", &sid.to_string(), "ok", &format!("dispute {}", sv.session.dispute_id))
        .await?;
    let mut unreadable = s.unreadable;
    unreadable.extend(bad);
    Ok(Json(EvidenceView {
        dispute_id: detail.dispute.id,
        case_number: detail.dispute.case_number.clone(),
        session_id: sid,
        room: sv.session.room.clone(),
        recorded: manifest.is_some(),
        entries: s.entries,
        integrity_check_value: s.head,
        key_id: s.key_id,
        timeline_start: s.timeline_start,
        duration_ms: s.duration_ms.max(lanes.iter().map(|l| l.covered_ms).max().unwrap_or(0)),
        participants: s.participants,
        log: s.log,
        files: s.files,
        lanes,
        videos,
        unreadable,
    }))
}

async fn verify(
    State(st): State<CasesState>,
    ctx: Ctx,
    Path((id, sid)): Path<(String, String)>,
) -> Result<Json<VerifyResult>, CasesError> {
    let (sv, _) = authorise(&st.store, &ctx, &id, &sid, "evidence.verify").await?;
    let sid = sv.session.id;
    let dir = session_dir(&st.store, sid);
    let keys = st.store.config().data_dir.join("keys");
    let key = EvidenceKey::load(&keys).map_err(|e| {
        tracing::warn!("evidence key: {e}");
        CasesError::NotFound("the server's evidence key".into())
    })?;
    let public = *key.public_key();
    let listed_dir = dir.clone();
    let (report, listed) = tokio::task::spawn_blocking(move || {
        let report = fengqiao_recorder::verify(&listed_dir, &public);
        let listed = std::fs::read(listed_dir.join(fengqiao_recorder::MANIFEST_FILE))
            .map(|d| summarise_manifest(&d).files)
            .unwrap_or_default();
        (report, listed)
    })
    .await
    .map_err(|e| CasesError::Internal(format!("verify task: {e}")))?;
    let mut files: Vec<FileCheck> = Vec::new();
    let mut paths: Vec<String> = listed.into_iter().map(|f| f.path).collect();
    for p in &report.problems {
        if let Location::File { path } = &p.location {
            if !paths.contains(path) {
                paths.push(path.clone());
            }
        }
    }
    for path in paths {
        let problems: Vec<String> = report
            .problems
            .iter()
            .filter(|p| matches!(&p.location, Location::File { path: q } if *q == path))
            .map(|p| p.message.clone())
            .collect();
        let ok = problems.is_empty() && report.files_ok.contains(&path);
        let problems = if !ok && problems.is_empty() { vec!["not checked (see the manifest problems)".into()] } else { problems };
        files.push(FileCheck { path, ok, problems });
    }
    let problems = report
        .problems
        .iter()
        .filter(|p| !matches!(p.location, Location::File { .. }))
        .map(|p| VerifyProblem { location: p.location.to_string(), message: p.message.clone() })
        .collect();
    let ok = report.is_ok();
    st.store
        .audit(
            &ctx.actor(),
            "evidence.verify",
            "session",
            &sid.to_string(),
            "ok",
            &format!("{} head {}", if ok { "passed" } else { "FAILED" }, report.head.map(|h| h.to_hex()).unwrap_or_default()),
        )
        .await?;
    Ok(Json(VerifyResult {
        ok,
        integrity_check_value: report.head.map(|h| h.to_hex()),
        key_id: public.key_id(),
        entries: report.entries,
        files,
        problems,
        notes: report.notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of docs/evidence.md: participants, consent, log, file and head.
    #[test]
    fn summarises_the_test_vector() {
        let data = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/recorder/tests/vector/manifest.jsonl")).unwrap();
        let s = summarise_manifest(&data);
        assert_eq!(s.entries, 8);
        assert_eq!(s.head.as_deref(), Some("7283dabb1e3a8afeda5af16f7f7ec81f913ffa1ed0952d5dc0c4dc8202d773d5"));
        assert_eq!(s.key_id.as_deref(), Some("21fe31dfa154a261"));
        assert_eq!(s.participants.len(), 1);
        assert_eq!(s.participants[0].consent.as_deref(), Some("accept"));
        let kinds: Vec<&str> = s.log.iter().map(|l| l.kind.as_str()).collect();
        assert_eq!(kinds, ["consent", "start", "stop", "end"]);
        assert_eq!(s.log[2].at_ms, Some(8000));
        assert_eq!(s.duration_ms, 8000);
        assert_eq!(s.files.len(), 1);
        assert_eq!(s.files[0].status, "closed");
        assert_eq!(s.files[0].size, Some(3));
        assert!(s.unreadable.is_empty());
        // A torn tail and a garbage line are reported, not hidden.
        let mut bad = data.clone();
        bad.extend_from_slice(b"not json\n{\"seq\":");
        let s = summarise_manifest(&bad);
        assert_eq!(s.entries, 9);
        assert_eq!(s.unreadable.len(), 2, "{:?}", s.unreadable);
    }
}
