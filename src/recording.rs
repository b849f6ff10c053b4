//! Wiring of the evidence recorder into the server: the evidence key, the
//! close-out of sessions a crash interrupted, the recorder thread, and the
//! registration of closed records with the case service.

use crate::config::Config;
use anyhow::Context as _;
use fengqiao_cases::Store;
use fengqiao_recorder::live::{ClosedRecord, LiveConfig};
use fengqiao_recorder::{close_out_interrupted, needs_close_out, scan_sessions, EvidenceKey, Timestamp};
use fengqiao_sfu::record::{record_queue, RecordSink, RecordSource};
use fengqiao_sfu::Sfu;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{error, info, warn};

/// Loads (or makes) the evidence key, closes out every session folder left open by a
/// crash (logging each one), and makes the recorder queue.
///
/// # Errors
/// The key cannot be read or written.
pub fn prepare(cfg: &Config) -> anyhow::Result<(Arc<EvidenceKey>, RecordSink, RecordSource)> {
    let key = Arc::new(
        EvidenceKey::load_or_generate(&cfg.keys_dir())
            .with_context(|| format!("loading the evidence key in {}", cfg.keys_dir().display()))?,
    );
    close_out_on_start(&cfg.data_dir.join("sessions"), &key);
    let (sink, source) = record_queue();
    Ok((key, sink, source))
}

/// The restart scan: every session whose manifest was left open (a crash, a kill)
/// is closed out as interrupted (`docs/evidence.md`, "Close-out").
pub fn close_out_on_start(sessions_dir: &std::path::Path, key: &EvidenceKey) {
    let dirs = match scan_sessions(sessions_dir) {
        Ok(d) => d,
        Err(e) => {
            error!("cannot scan {} for interrupted sessions: {e}", sessions_dir.display());
            return;
        }
    };
    for d in dirs {
        match needs_close_out(&d, key) {
            Ok(false) => {}
            Ok(true) => match close_out_interrupted(&d, key, "server restarted after an interruption", Timestamp::now()) {
                Ok(c) => warn!(session = %d.display(), result = ?c, "closed out a session interrupted by a crash or kill"),
                Err(e) => error!(session = %d.display(), "cannot close out an interrupted session: {e}"),
            },
            Err(e) => error!(session = %d.display(), "cannot check the session's manifest: {e}"),
        }
    }
}

/// Starts the recorder thread. Closed records of case sessions are registered with the
/// case service (each WAV as a recording, with the session's integrity check value).
///
/// # Errors
/// The thread cannot be spawned.
pub fn spawn(
    cfg: &Config,
    key: Arc<EvidenceKey>,
    source: RecordSource,
    sfu: Sfu,
    cases: Store,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let live = LiveConfig {
        sessions_dir: cfg.data_dir.join("sessions"),
        segment: Duration::from_secs(cfg.recorder.segment_secs),
    };
    let rt = tokio::runtime::Handle::current();
    let renders = if cfg.recorder.render_after_stop {
        Some(spawn_renderer(*key.public_key(), cases.clone(), rt.clone())?)
    } else {
        None
    };
    let on_closed = Box::new(move |r: ClosedRecord| {
        let cases = cases.clone();
        let renders = renders.clone();
        rt.spawn(async move {
            if let Err(e) = register(&cases, &r).await {
                warn!(session = %r.session_id, "recording not registered with the case service: {e}");
            }
            if let Some(tx) = renders {
                if tx.try_send(r).is_err() {
                    warn!("review render queue full; render the session later with `fengqiao render`");
                }
            }
        });
    });
    fengqiao_recorder::live::spawn(live, key, source, sfu, on_closed).context("starting the recorder thread")
}

/// The review-video worker (`fq-render`): renders closed records one at a time
/// (`fengqiao_recorder::render`), then registers the joint room's `review/main.mp4`
/// with the case. Caucus videos stay in the session folder only (confidential).
fn spawn_renderer(
    key: fengqiao_recorder::PublicKey,
    cases: Store,
    rt: tokio::runtime::Handle,
) -> anyhow::Result<std::sync::mpsc::SyncSender<ClosedRecord>> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<ClosedRecord>(64);
    std::thread::Builder::new()
        .name("fq-render".into())
        .spawn(move || {
            let opts = fengqiao_recorder::render::RenderOptions::new(key);
            while let Ok(r) = rx.recv() {
                let t = std::time::Instant::now();
                let rendered = fengqiao_recorder::render::render(&r.dir, &opts, |_| {});
                crate::ops::job_finished("render", rendered.is_ok(), t.elapsed());
                match rendered {
                    Ok(files) => {
                        info!(session = %r.session_id, outputs = files.len(), took_ms = t.elapsed().as_millis() as u64, "review video rendered");
                        if files.iter().any(|f| f.path == "review/main.mp4") {
                            let cases = cases.clone();
                            let r = r.clone();
                            rt.spawn(async move {
                                if let Err(e) = register_review(&cases, &r).await {
                                    warn!(session = %r.session_id, "review video not registered with the case service: {e}");
                                }
                            });
                        }
                    }
                    Err(e) => error!(session = %r.session_id, "review video render failed: {e}"),
                }
            }
        })
        .context("starting the render thread")?;
    Ok(tx)
}

/// The case session of a closed record, if it is one of the case service's.
async fn case_session(cases: &Store, r: &ClosedRecord) -> anyhow::Result<Option<(fengqiao_cases::model::DisputeRow, i64)>> {
    let (Some(case), Ok(session)) = (r.case_id.as_deref(), r.session_id.parse::<i64>()) else { return Ok(None) };
    let Ok(dispute_id) = case.parse::<i64>() else { return Ok(None) };
    let Some(d) = cases.get_dispute(dispute_id).await? else {
        anyhow::bail!("no dispute {dispute_id}");
    };
    Ok(Some((d, session)))
}

async fn register_review(cases: &Store, r: &ClosedRecord) -> anyhow::Result<()> {
    let Some((d, session)) = case_session(cases, r).await? else { return Ok(()) };
    let rec = fengqiao_cases::service::NewRecording {
        file_path: format!("{}/review/main.mp4", r.session_id),
        manifest_path: format!("{}/manifest.jsonl", r.session_id),
        integrity_sha256: r.integrity.clone(),
        media_type: "video/mp4".into(),
        started_at: rfc(r.started),
        ended_at: rfc(r.ended),
    };
    cases.add_recording(&fengqiao_cases::Actor::system(), &d, session, &rec).await?;
    info!(session = %r.session_id, dispute = d.id, "review video registered with the case");
    Ok(())
}

fn rfc(t: SystemTime) -> String {
    Timestamp::from_unix_millis(unix_ms(t)).map(|t| t.to_rfc3339()).unwrap_or_default()
}

/// Registers a closed record's WAV files with its case session, if the session is one
/// of the case service's (invite `case_id` = dispute id, `session_id` = session id).
async fn register(cases: &Store, r: &ClosedRecord) -> anyhow::Result<()> {
    // Not a case-service session (e.g. `fengqiao invite` demo rooms): nothing to register.
    let Some((d, session)) = case_session(cases, r).await? else { return Ok(()) };
    let dispute_id = d.id;
    let actor = fengqiao_cases::Actor::system();
    for f in r.files.iter().filter(|f| f.ends_with(".wav")) {
        let rec = fengqiao_cases::service::NewRecording {
            file_path: format!("{}/{f}", r.session_id),
            manifest_path: format!("{}/manifest.jsonl", r.session_id),
            integrity_sha256: r.integrity.clone(),
            media_type: "audio/wav".into(),
            started_at: rfc(r.started),
            ended_at: rfc(r.ended),
        };
        cases.add_recording(&actor, &d, session, &rec).await?;
    }
    info!(session = %r.session_id, dispute = dispute_id, "recordings registered with the case");
    Ok(())
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
