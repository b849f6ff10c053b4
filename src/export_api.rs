//! Disc export for the clerk (issue 9): a case's recordings as ISO images
//! (`fengqiao_recorder::disc`, `docs/disc.md`), through the API and the command line.
//!
//! Routes (JSON; errors as the case service's `{code, message, field}`):
//!
//! - `POST /api/disputes/{id}/disc-exports` body [`ExportParams`] → 202 [`JobView`]:
//!   starts an export in the background (images in
//!   `data_dir/exports/<dispute id>/<export id>/`);
//! - `GET /api/disputes/{id}/disc-exports` → `[JobView]`, newest first (running ones
//!   and those finished before, also across restarts);
//! - `GET /api/disc-exports/{eid}` → [`JobView`] (`percent` 0–100, `state`);
//! - `GET /api/disc-exports/{eid}/images/{name}` → the `.iso` (download, audited).
//!
//! Who: `clerk` (书记员) and `admin`; anyone else 403 (audited), no credentials 401.
//! Every export is written to the case's audit log (`disc.export`, object `dispute`
//! `<id>`: who, case, media, files, image names, sizes and SHA-256), also when it
//! fails (`disc.export.failed`, with the reason); every download as `disc.image.download`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use fengqiao_cases::model::{DisputeRow, StaffRole};
use fengqiao_cases::{Actor, CasesError, CasesState, Ctx, Store};
use fengqiao_recorder::disc::{self, ExportReport, Media, Phase, Progress, SessionSource};
use fengqiao_recorder::{EvidenceKey, RecorderError, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Who may export.
pub const ROLES: &[StaffRole] = &[StaffRole::Clerk, StaffRole::Admin];

/// Body of `POST /api/disputes/{id}/disc-exports`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `cd`, `dvd`, `dvd-dl`, `bd25` or `bd50`.
    pub media: String,
    /// Session ids to export; absent or null = every session with recordings.
    #[serde(default)]
    pub sessions: Option<Vec<i64>>,
    /// Include caucus (背靠背) recordings, marked confidential. Default false.
    #[serde(default)]
    pub include_caucus: bool,
}

/// One image of an export, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageView {
    /// File name, `<volume id>.iso`.
    pub name: String,
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
    /// Download URL (`GET`, audited).
    pub url: String,
}

/// An export job: `state` `running` → `done` | `failed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobView {
    /// Export id.
    pub export_id: String,
    /// Dispute id.
    pub dispute_id: i64,
    /// Case number.
    pub case_number: String,
    /// Medium.
    pub media: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// 0–100.
    pub percent: u8,
    /// `check`, `build`, `read_back` while running.
    pub phase: Option<String>,
    /// Disc being written (1-based), 0 while checking.
    pub disc: usize,
    /// Discs planned (0 until planned).
    pub discs: usize,
    /// The error when `failed`.
    pub error: Option<String>,
    /// Images when `done`.
    pub images: Vec<ImageView>,
    /// Caucus files left out (disc paths).
    pub caucus_left_out: Vec<String>,
    /// Who started it.
    pub by: String,
    /// Started, Unix seconds.
    pub started_at: i64,
}

type Jobs = Arc<Mutex<BTreeMap<String, JobView>>>;

/// Finds a dispute by id (digits) or case number.
///
/// # Errors
/// 404 `dispute` when there is none.
pub async fn resolve_case(store: &Store, case: &str) -> Result<DisputeRow, CasesError> {
    let id = match case.trim().parse::<i64>() {
        Ok(id) => Some(id),
        Err(_) => store.dispute_id_by_case_number(case.trim()).await?,
    };
    match id {
        Some(id) => store.get_dispute(id).await?.ok_or_else(|| CasesError::NotFound(format!("case {case}"))),
        None => Err(CasesError::NotFound(format!("case {case}"))),
    }
}

/// The session folders to export: every session of the dispute with a registered
/// recording (or those of `sessions`), in session order. A session's folder is the
/// first component of its recordings' `file_path` under `data_dir/sessions`.
///
/// # Errors
/// 422 `sessions` when a chosen session is not of this dispute or has no recording;
/// 422 `case` when the dispute has no recordings at all.
pub async fn sources(store: &Store, d: &DisputeRow, sessions: Option<&[i64]>) -> Result<Vec<SessionSource>, CasesError> {
    let detail = store.dispute_detail(d.id).await?;
    if detail.recordings.is_empty() {
        return Err(CasesError::invalid("case", format!("case {} has no recordings to export", d.case_number)));
    }
    let mut folders: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for r in &detail.recordings {
        let first = r.file_path.split('/').next().unwrap_or_default().to_owned();
        let v = folders.entry(r.session_id).or_default();
        if !first.is_empty() && !v.contains(&first) {
            v.push(first);
        }
    }
    let chosen: Vec<i64> = match sessions {
        Some(list) => {
            if list.is_empty() {
                return Err(CasesError::invalid("sessions", "choose at least one session"));
            }
            for sid in list {
                if !detail.sessions.iter().any(|s| s.id == *sid) {
                    return Err(CasesError::invalid("sessions", format!("session {sid} is not a session of case {}", d.case_number)));
                }
                if !folders.contains_key(sid) {
                    return Err(CasesError::invalid("sessions", format!("session {sid} has no recordings")));
                }
            }
            list.to_vec()
        }
        None => folders.keys().copied().collect(),
    };
    let root = store.recordings_dir();
    let mut out = Vec::new();
    for sid in chosen {
        for folder in folders.get(&sid).into_iter().flatten() {
            out.push(SessionSource { session_id: sid.to_string(), folder: folder.clone(), dir: root.join(folder) });
        }
    }
    Ok(out)
}

/// Writes the audit entry of an export (success or failure) in the case's log:
/// action `disc.export` (or `disc.export.failed`), object `dispute` `<id>`, outcome
/// `ok`, detail a JSON object with the case number, medium, files and images (name,
/// size, SHA-256) or the error.
///
/// # Errors
/// [`CasesError::Database`].
pub async fn audit_export(
    store: &Store,
    actor: &Actor,
    d: &DisputeRow,
    media: Media,
    result: &Result<ExportReport, RecorderError>,
) -> Result<(), CasesError> {
    // The audit log's `outcome` is `ok` or `denied` (the request was allowed); a
    // failed export is its own action.
    let (action, detail) = match result {
        Ok(r) => (
            "disc.export",
            serde_json::json!({
                "case_number": d.case_number,
                "media": media.as_str(),
                "files": r.images.iter().flat_map(|i| i.files.iter().map(move |f| format!("{}#{}", i.disc, f))).collect::<Vec<_>>(),
                "caucus_left_out": r.caucus_left_out,
                "images": r.images.iter().map(|i| serde_json::json!({
                    "name": i.path.file_name().map(|n| n.to_string_lossy().into_owned()),
                    "size": i.size, "sha256": i.sha256, "disc": i.disc, "discs": i.discs})).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => ("disc.export.failed", serde_json::json!({"case_number": d.case_number, "media": media.as_str(), "error": e.to_string()})),
    };
    store.audit(actor, action, "dispute", &d.id.to_string(), "ok", &detail.to_string()).await
}

/// The server's evidence key (`data_dir/keys`), needed to check manifests and sign
/// disc manifests.
///
/// # Errors
/// 500 naming the key file when it cannot be loaded.
pub fn load_key(store: &Store) -> Result<EvidenceKey, CasesError> {
    let keys = store.config().data_dir.join("keys");
    EvidenceKey::load(&keys).map_err(|e| CasesError::Internal(format!("evidence key: {e}")))
}

/// `data_dir/exports/<dispute>/`.
fn exports_dir(store: &Store, dispute: i64) -> PathBuf {
    store.config().data_dir.join("exports").join(dispute.to_string())
}

/// The routes above, on the case store (mounted by `server::start`).
pub fn router(store: Store) -> Router {
    let jobs: Jobs = Arc::new(Mutex::new(BTreeMap::new()));
    Router::new()
        .route("/api/disputes/{id}/disc-exports", get(list).post(start))
        .route("/api/disc-exports/{eid}", get(status))
        .route("/api/disc-exports/{eid}/images/{name}", get(download))
        .layer(Extension(jobs))
        .with_state(CasesState::new(store))
}

fn parse_id(field: &str, s: &str) -> Result<i64, CasesError> {
    s.parse().map_err(|_| CasesError::invalid(field, "must be an integer id"))
}

async fn start(
    State(st): State<CasesState>,
    Extension(jobs): Extension<Jobs>,
    ctx: Ctx,
    Path(id): Path<String>,
    body: Result<Json<ExportParams>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<JobView>), CasesError> {
    let store = st.store.clone();
    let user = ctx.staff(&store, ROLES, "disc.export").await?.clone();
    let id = parse_id("id", &id)?;
    let Json(p) = body.map_err(|e| CasesError::invalid("body", e.body_text()))?;
    let media = Media::parse(&p.media).map_err(|_| CasesError::invalid("media", "one of cd, dvd, dvd-dl, bd25, bd50"))?;
    let d = store.get_dispute(id).await?.ok_or_else(|| CasesError::NotFound("dispute".into()))?;
    let srcs = sources(&store, &d, p.sessions.as_deref()).await?;
    let key = load_key(&store)?;
    let export_id = format!("{}-{:04x}", store.now(), rand::random::<u16>());
    let out_dir = exports_dir(&store, d.id).join(&export_id);
    let job = JobView {
        export_id: export_id.clone(),
        dispute_id: d.id,
        case_number: d.case_number.clone(),
        media: media.as_str().into(),
        state: "running".into(),
        percent: 0,
        phase: None,
        disc: 0,
        discs: 0,
        error: None,
        images: Vec::new(),
        caucus_left_out: Vec::new(),
        by: user.username.clone(),
        started_at: store.now(),
    };
    jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(export_id.clone(), job.clone());
    let actor = ctx.actor();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let jobs2 = jobs.clone();
        let eid = export_id.clone();
        let case_number = d.case_number.clone();
        let by = user.username.clone();
        let out = out_dir.clone();
        let include = p.include_caucus;
        let now = Timestamp::from_unix_millis(store.now() * 1000).unwrap_or_else(|_| Timestamp::now());
        let dispute_id = d.id;
        let result = tokio::task::spawn_blocking(move || {
            let req = disc::ExportRequest {
                case_number,
                dispute_id,
                sessions: srcs,
                media,
                out_dir: out,
                include_caucus: include,
                key: &key,
                now,
                exported_by: by,
            };
            disc::export(&req, &mut |pr: &Progress| {
                if let Some(j) = jobs2.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&eid) {
                    j.percent = pr.percent().min(99);
                    j.phase = Some(phase_name(pr.phase).into());
                    j.disc = pr.disc;
                    j.discs = pr.discs;
                }
            })
        })
        .await
        .unwrap_or_else(|join| Err(RecorderError::Invalid(format!("export task failed: {join}"))));
        crate::ops::job_finished("export", result.is_ok(), started.elapsed());
        if let Err(e) = audit_export(&store, &actor, &d, media, &result).await {
            tracing::error!("disc export audit: {e}");
        }
        let mut g = jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = g.get_mut(&export_id) {
            match &result {
                Ok(r) => {
                    j.state = "done".into();
                    j.percent = 100;
                    j.phase = None;
                    j.caucus_left_out = r.caucus_left_out.clone();
                    j.images = r
                        .images
                        .iter()
                        .map(|i| {
                            let name = i.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                            ImageView {
                                url: format!("/api/disc-exports/{}/images/{}", j.export_id, name),
                                name,
                                disc: i.disc,
                                discs: i.discs,
                                volume_id: i.volume_id.clone(),
                                size: i.size,
                                sha256: i.sha256.clone(),
                            }
                        })
                        .collect();
                    let _ = std::fs::write(out_dir.join("export.json"), serde_json::to_vec_pretty(&*j).unwrap_or_default());
                }
                Err(e) => {
                    j.state = "failed".into();
                    j.phase = None;
                    j.error = Some(e.to_string());
                }
            }
        }
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Check => "check",
        Phase::Build => "build",
        Phase::ReadBack => "read_back",
        Phase::Burn => "burn",
    }
}

/// Finished exports of a dispute on disk (`export.json` of each export folder).
fn on_disk(store: &Store, dispute: i64) -> Vec<JobView> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(exports_dir(store, dispute)) else { return out };
    for e in rd.flatten() {
        if let Ok(bytes) = std::fs::read(e.path().join("export.json")) {
            if let Ok(j) = serde_json::from_slice::<JobView>(&bytes) {
                out.push(j);
            }
        }
    }
    out
}

async fn list(
    State(st): State<CasesState>,
    Extension(jobs): Extension<Jobs>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> Result<Json<Vec<JobView>>, CasesError> {
    ctx.staff(&st.store, ROLES, "disc.export.list").await?;
    let id = parse_id("id", &id)?;
    st.store.get_dispute(id).await?.ok_or_else(|| CasesError::NotFound("dispute".into()))?;
    let mut all: BTreeMap<String, JobView> = on_disk(&st.store, id).into_iter().map(|j| (j.export_id.clone(), j)).collect();
    for j in jobs.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|j| j.dispute_id == id) {
        all.insert(j.export_id.clone(), j.clone());
    }
    let mut v: Vec<JobView> = all.into_values().collect();
    v.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.export_id.cmp(&a.export_id)));
    Ok(Json(v))
}

/// A job by id: in memory, else finished on disk.
fn find_job(store: &Store, jobs: &Jobs, eid: &str) -> Option<JobView> {
    if let Some(j) = jobs.lock().unwrap_or_else(|e| e.into_inner()).get(eid) {
        return Some(j.clone());
    }
    if !eid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return None;
    }
    let root = store.config().data_dir.join("exports");
    for e in std::fs::read_dir(root).ok()?.flatten() {
        if let Ok(bytes) = std::fs::read(e.path().join(eid).join("export.json")) {
            return serde_json::from_slice(&bytes).ok();
        }
    }
    None
}

async fn status(
    State(st): State<CasesState>,
    Extension(jobs): Extension<Jobs>,
    ctx: Ctx,
    Path(eid): Path<String>,
) -> Result<Json<JobView>, CasesError> {
    ctx.staff(&st.store, ROLES, "disc.export.status").await?;
    find_job(&st.store, &jobs, &eid).map(Json).ok_or_else(|| CasesError::NotFound("export".into()))
}

async fn download(
    State(st): State<CasesState>,
    Extension(jobs): Extension<Jobs>,
    ctx: Ctx,
    Path((eid, name)): Path<(String, String)>,
) -> Result<Response, CasesError> {
    ctx.staff(&st.store, ROLES, "disc.image.download").await?;
    let job = find_job(&st.store, &jobs, &eid).ok_or_else(|| CasesError::NotFound("export".into()))?;
    if !job.images.iter().any(|i| i.name == name) {
        return Err(CasesError::NotFound("image".into()));
    }
    let path = exports_dir(&st.store, job.dispute_id).join(&eid).join(&name);
    let file = tokio::fs::File::open(&path).await.map_err(|_| CasesError::NotFound("image".into()))?;
    let len = file.metadata().await?.len();
    st.store
        .audit(&ctx.actor(), "disc.image.download", "dispute", &job.dispute_id.to_string(), "ok", &format!("{eid}/{name}"))
        .await?;
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt as _;
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = Body::from_stream(stream).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-iso9660-image"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
