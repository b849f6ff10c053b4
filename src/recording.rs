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
    let on_closed = Box::new(move |r: ClosedRecord| {
        let cases = cases.clone();
        rt.spawn(async move {
            if let Err(e) = register(&cases, &r).await {
                warn!(session = %r.session_id, "recording not registered with the case service: {e}");
            }
        });
    });
    fengqiao_recorder::live::spawn(live, key, source, sfu, on_closed).context("starting the recorder thread")
}

/// Registers a closed record's WAV files with its case session, if the session is one
/// of the case service's (invite `case_id` = dispute id, `session_id` = session id).
async fn register(cases: &Store, r: &ClosedRecord) -> anyhow::Result<()> {
    let (Some(case), Ok(session)) = (r.case_id.as_deref(), r.session_id.parse::<i64>()) else {
        return Ok(()); // not a case-service session (e.g. `fengqiao invite` demo rooms)
    };
    let Ok(dispute_id) = case.parse::<i64>() else { return Ok(()) };
    let Some(d) = cases.get_dispute(dispute_id).await? else {
        anyhow::bail!("no dispute {dispute_id}");
    };
    let rfc = |t: SystemTime| Timestamp::from_unix_millis(unix_ms(t)).map(|t| t.to_rfc3339()).unwrap_or_default();
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
