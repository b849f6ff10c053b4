//! The notification outbox and its pluggable sender (log by default), plus deadline
//! warnings.

use crate::db::Store;
use crate::deadlines::DeadlineState;
use crate::error::CasesError;
use crate::model::{OutboxItem, Page};
use crate::service::{enqueue, Scope};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Delivers one notification (SMS gateway, mail, ...). Return `Err(reason)` to retry
/// later.
pub trait NotificationSender: Send + Sync {
    /// Sends `item`.
    fn send<'a>(
        &'a self,
        item: &'a OutboxItem,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// The default sender: writes each notification to the log (`tracing`, target
/// `fengqiao_cases::outbox`).
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSender;

impl NotificationSender for LogSender {
    fn send<'a>(
        &'a self,
        item: &'a OutboxItem,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            let recipient = log_recipient(&item.recipient);
            tracing::info!(target: "fengqiao_cases::outbox", id = item.id, kind = %item.kind, recipient = %recipient, subject = %item.subject, "notification");
            Ok(())
        })
    }
}

/// A recipient as the log may show it: phone numbers masked like
/// [`mask_recipient`], internal addresses (`dispute:12`, `party:3`, `mediator:4`)
/// kept, anything else (a user name, an e-mail address) masked after its first
/// character, so no personal data reaches the log.
pub fn log_recipient(r: &str) -> String {
    let internal = r.split_once(':').is_some_and(|(k, v)| {
        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') && !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
    });
    let masked = mask_recipient(r);
    if internal || masked != r {
        masked
    } else {
        crate::model::mask(r, 1, 0)
    }
}

/// Masks a phone-number recipient (`138****5678`); other recipients are unchanged.
pub fn mask_recipient(r: &str) -> String {
    let digits = r.chars().filter(|c| c.is_ascii_digit()).count();
    if digits >= 7 && r.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' ')) {
        crate::model::mask(r, 3, 4)
    } else {
        r.to_owned()
    }
}

/// Replaces the token of every `/join/<token>` link with `…`.
pub fn redact_invites(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some(i) = rest.find("/join/") {
        out.push_str(&rest[..i + 6]);
        out.push('…');
        let after = &rest[i + 6..];
        let end = after.find(|c: char| c.is_whitespace()).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

impl Store {
    /// The outbox, newest first; only undelivered items when `pending_only`.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_outbox(
        &self,
        pending_only: bool,
        page: i64,
        per_page: i64,
    ) -> Result<Page<OutboxItem>, CasesError> {
        let cond = if pending_only {
            "sent_at IS NULL"
        } else {
            "1=1"
        };
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM outbox WHERE {cond}"))
            .fetch_one(self.pool())
            .await?;
        let mut items: Vec<OutboxItem> = sqlx::query_as(&format!(
            "SELECT * FROM outbox WHERE {cond} ORDER BY id DESC LIMIT $1 OFFSET $2"
        ))
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(self.pool())
        .await?;
        // Shown to people: phone numbers masked, live invite tokens cut.
        for it in &mut items {
            it.recipient = mask_recipient(&it.recipient);
            it.body = redact_invites(&it.body);
        }
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    /// Hands up to `max` undelivered notifications (at most 10 attempts each) to
    /// `sender`, oldest first; returns how many were delivered.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn deliver_outbox(
        &self,
        sender: &dyn NotificationSender,
        max: i64,
    ) -> Result<usize, CasesError> {
        let items: Vec<OutboxItem> = sqlx::query_as(
            "SELECT * FROM outbox WHERE sent_at IS NULL AND attempts < 10 ORDER BY id LIMIT $1",
        )
        .bind(max)
        .fetch_all(self.pool())
        .await?;
        let mut sent = 0;
        for item in items {
            let r = sender.send(&item).await;
            let now = self.now();
            match r {
                Ok(()) => {
                    sqlx::query("UPDATE outbox SET sent_at = $1, attempts = attempts + 1, last_error = NULL WHERE id = $2 AND sent_at IS NULL")
                        .bind(now)
                        .bind(item.id)
                        .execute(self.pool())
                        .await?;
                    sent += 1;
                }
                Err(e) => {
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $1 WHERE id = $2",
                    )
                    .bind(e.chars().take(1000).collect::<String>())
                    .bind(item.id)
                    .execute(self.pool())
                    .await?;
                }
            }
        }
        Ok(sent)
    }

    /// Queues a warning for every pending deadline due within
    /// `deadlines.warn_before_hours`, and an overdue notice for every overdue one
    /// (once each: de-duplicated by dispute, kind and due time). Returns how many were
    /// queued.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn enqueue_deadline_warnings(&self) -> Result<usize, CasesError> {
        let now = self.now();
        let warn = self.config().settings.deadlines.warn_before_hours * 3600;
        let mut n = 0;
        for d in self.pending_deadlines(Scope::All, false).await? {
            let (kind, key) = match d.state {
                DeadlineState::Overdue => (
                    "deadline_overdue",
                    format!("overdue:{}:{}:{}", d.dispute_id, d.kind.as_str(), d.due_at),
                ),
                DeadlineState::Open if d.due_at - now <= warn => (
                    "deadline_warning",
                    format!("warn:{}:{}:{}", d.dispute_id, d.kind.as_str(), d.due_at),
                ),
                _ => continue,
            };
            let subject = format!(
                "{} {}: {}",
                d.case_number,
                d.kind.as_str(),
                if kind == "deadline_overdue" {
                    "overdue"
                } else {
                    "due soon"
                }
            );
            let body = format!(
                "Dispute {} step {} is due at {} (Unix time). Rule: {}",
                d.case_number,
                d.kind.as_str(),
                d.due_at,
                d.rule
            );
            if enqueue(
                self.pool(),
                now,
                kind,
                &format!("dispute:{}", d.dispute_id),
                &subject,
                &body,
                Some(&key),
            )
            .await?
            {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Runs deadline warnings and outbox delivery every `period` until the task is
/// aborted. Errors are logged and retried on the next round.
pub fn spawn_outbox_worker(
    store: Store,
    sender: Arc<dyn NotificationSender>,
    period: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            if let Err(e) = store.enqueue_deadline_warnings().await {
                tracing::warn!(error = %e, "deadline warnings failed");
            }
            if let Err(e) = store.deliver_outbox(sender.as_ref(), 500).await {
                tracing::warn!(error = %e, "outbox delivery failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction() {
        assert_eq!(mask_recipient("13800000001"), "138****0001");
        assert_eq!(mask_recipient("orgadmin_a"), "orgadmin_a");
        assert_eq!(log_recipient("13800000001"), "138****0001");
        assert_eq!(log_recipient("dispute:12"), "dispute:12");
        assert_eq!(log_recipient("orgadmin_a"), "o*********");
        assert_eq!(log_recipient("王调解员"), "王***");
        assert_eq!(
            redact_invites("join at https://x/join/abc.def now; https://x/join/q"),
            "join at https://x/join/… now; https://x/join/…"
        );
    }
}
