//! The session event log: `data/sessions/<session-id>/events.jsonl`.
//!
//! The media task produces [`SessionEvent`]s (joins, leaves and every mediator
//! control) and hands them to a bounded channel with `try_send`; this writer owns the
//! other end on its own thread, so the media task never waits for a disk. Each event is
//! one JSON line, appended and fsynced (`sync_data`) before the next:
//! `{"t":"2026-11-29T18:20:29.123Z","actor":"m1","action":"admit","target":"a1",...}`.

use fengqiao_sfu::{EventSink, SessionEvent, EVENT_LOG_QUEUE};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{error, warn};

/// Starts the writer thread for `sessions_dir` (normally `<data_dir>/sessions`) and
/// returns the sink to give [`Sfu::start_with_events`](fengqiao_sfu::Sfu::start_with_events).
/// The thread ends when every sender is gone (the media task stopped).
///
/// # Errors
/// The thread cannot be spawned.
pub fn spawn_writer(sessions_dir: PathBuf) -> std::io::Result<EventSink> {
    let (tx, rx) = mpsc::channel(EVENT_LOG_QUEUE);
    std::thread::Builder::new().name("fq-event-log".into()).spawn(move || run(&sessions_dir, rx))?;
    Ok(tx)
}

fn run(dir: &Path, mut rx: mpsc::Receiver<SessionEvent>) {
    let mut files: HashMap<String, File> = HashMap::new();
    while let Some(mut ev) = rx.blocking_recv() {
        let folder = safe_name(&ev.session);
        if let Some(jpeg) = ev.still_jpeg.take() {
            let target = ev.target.clone().unwrap_or_default();
            match store_still(&dir.join(&folder), &target, &jpeg) {
                Ok(rel) => ev.still = Some(rel),
                Err(e) => error!(session = %folder, "cannot store the identity still: {e}"),
            }
        }
        let line = line(&ev);
        if !files.contains_key(&folder) {
            let d = dir.join(&folder);
            let opened = std::fs::create_dir_all(&d)
                .and_then(|()| OpenOptions::new().create(true).append(true).open(d.join("events.jsonl")));
            match opened {
                Ok(f) => {
                    files.insert(folder.clone(), f);
                }
                Err(e) => {
                    error!(session = %folder, "cannot open the session event log: {e}; event lost: {} by {}", ev.action, ev.actor);
                    continue;
                }
            }
        }
        let Some(f) = files.get_mut(&folder) else { continue };
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|()| f.sync_data()) {
            error!(session = %folder, "cannot write the session event log: {e}; event: {} by {}", ev.action, ev.actor);
            files.remove(&folder);
        }
        if files.len() > 256 {
            files.clear(); // long-running servers: do not hold every session's file open
        }
    }
}

/// Stores an identity-check still as `<session folder>/stills/<pid>-<n>.jpg` (n = 1, 2, …,
/// never overwriting), fsynced; returns its path relative to the session folder.
fn store_still(session_dir: &Path, pid: &str, jpeg: &[u8]) -> std::io::Result<String> {
    let d = session_dir.join("stills");
    std::fs::create_dir_all(&d)?;
    let pid = safe_name(pid);
    for n in 1..=100_000u32 {
        let name = format!("{pid}-{n}.jpg");
        match OpenOptions::new().write(true).create_new(true).open(d.join(&name)) {
            Ok(mut f) => {
                f.write_all(jpeg)?;
                f.sync_all()?;
                return Ok(format!("stills/{name}"));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("too many stills for one participant"))
}

/// One JSONL line, `t` first, newline-terminated.
pub fn line(ev: &SessionEvent) -> String {
    // SessionEvent holds strings, bools and options only: serialising cannot fail.
    let body = serde_json::to_string(ev).unwrap_or_else(|e| {
        warn!("event does not serialise: {e}");
        "{}".into()
    });
    let rest = body.strip_prefix('{').unwrap_or("}");
    let sep = if rest == "}" { "" } else { "," };
    format!("{{\"t\":\"{}\"{sep}{rest}\n", rfc3339(ev.time))
}

/// A folder name from a session id: letters, digits, `-`, `_`, `.` kept (no leading
/// dot), anything else `_`; at most 128 characters.
pub fn safe_name(id: &str) -> String {
    let mut s: String = id
        .chars()
        .take(128)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

/// UTC RFC 3339 with milliseconds, e.g. `2026-11-29T18:20:29.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_time_and_names() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_062_829_123);
        assert_eq!(rfc3339(t), "2026-11-30T18:20:29.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(safe_name("../etc"), "_.._etc");
        assert_eq!(safe_name("s-1_a.b"), "s-1_a.b");
        assert_eq!(safe_name(""), "_");
    }

    #[test]
    fn line_has_time_first() {
        let ev = SessionEvent {
            time: UNIX_EPOCH,
            session: "s".into(),
            room: "r".into(),
            actor: "m1".into(),
            action: "admit",
            target: Some("a1".into()),
            role: None,
            admitted: None,
            reason: None,
            to: None,
            audio: None,
            video: None,
            method: None,
            result: None,
            still: None,
            still_sha256: None,
            still_jpeg: None,
        };
        let l = line(&ev);
        assert!(l.starts_with("{\"t\":\"1970-01-01T00:00:00.000Z\",\"room\":\"r\""), "{l}");
        assert!(l.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["action"], "admit");
        assert_eq!(v["target"], "a1");
        assert!(v.get("reason").is_none());
    }
}
