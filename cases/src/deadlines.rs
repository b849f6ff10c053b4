//! Due dates for each step of `domain.md`'s deadline table, on a working-day calendar.
//!
//! Reckoning (all in local time, [`crate::CasesConfig::utc_offset_hours`]):
//! - **hours** (the 48-hour triage answer): exactly that many hours after the start;
//! - **calendar days**: the starting day is not counted and the period ends at the end
//!   (23:59:59) of its last day; when the last day is not a working day (weekend or
//!   holiday) the period ends on the next working day (Civil Procedure Law, rules on
//!   periods 期间);
//! - **working days**: the end of the N-th working day after the starting day; weekends
//!   and configured holidays do not count, configured make-up days (调休) do.

use crate::config::{CasesConfig, DeadlineConfig};
use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Weekday};
use serde::Serialize;
use std::collections::HashSet;

/// A working-day calendar in one time zone.
#[derive(Debug, Clone)]
pub struct Calendar {
    offset: FixedOffset,
    holidays: HashSet<NaiveDate>,
    extra_working_days: HashSet<NaiveDate>,
}

impl Calendar {
    /// A calendar with UTC offset `offset_hours`, the given holidays and make-up
    /// working days.
    pub fn new(
        offset_hours: i32,
        holidays: &[NaiveDate],
        extra_working_days: &[NaiveDate],
    ) -> Self {
        let offset = FixedOffset::east_opt(offset_hours.clamp(-23, 23) * 3600)
            .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero offset"));
        Self {
            offset,
            holidays: holidays.iter().copied().collect(),
            extra_working_days: extra_working_days.iter().copied().collect(),
        }
    }

    /// The calendar configured in `cfg`.
    pub fn from_config(cfg: &CasesConfig) -> Self {
        Self::new(cfg.settings.utc_offset_hours, &cfg.settings.holidays, &cfg.settings.extra_working_days)
    }

    /// True for a working day: a configured make-up day, or a weekday that is not a
    /// holiday.
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.extra_working_days.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The local calendar date of Unix time `ts` (seconds).
    pub fn local_date(&self, ts: i64) -> NaiveDate {
        self.offset
            .timestamp_opt(ts, 0)
            .single()
            .map(|t| t.date_naive())
            .unwrap_or_default()
    }

    /// Unix time of local midnight at the start of `d`.
    pub fn start_of_day(&self, d: NaiveDate) -> i64 {
        let naive = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        naive.and_utc().timestamp() - i64::from(self.offset.local_minus_utc())
    }

    /// Unix time of the last second (23:59:59 local) of `d`.
    pub fn end_of_day(&self, d: NaiveDate) -> i64 {
        self.start_of_day(d + Duration::days(1)) - 1
    }

    /// `hours` hours after `start` (seconds).
    pub fn add_hours(&self, start: i64, hours: i64) -> i64 {
        start + hours * 3600
    }

    /// The end of the `days`-th calendar day after `start`'s date, moved forward to the
    /// next working day when that day is a weekend or holiday.
    pub fn add_calendar_days(&self, start: i64, days: i64) -> i64 {
        let mut d = self.local_date(start) + Duration::days(days.max(0));
        let mut guard = 0;
        while !self.is_working_day(d) && guard < 366 {
            d += Duration::days(1);
            guard += 1;
        }
        self.end_of_day(d)
    }

    /// The end of the `days`-th working day after `start`'s date.
    pub fn add_working_days(&self, start: i64, days: i64) -> i64 {
        let mut d = self.local_date(start);
        let mut counted = 0;
        let mut guard = 0;
        while counted < days.max(0) && guard < 3660 {
            d += Duration::days(1);
            guard += 1;
            if self.is_working_day(d) {
                counted += 1;
            }
        }
        self.end_of_day(d)
    }
}

/// The steps of `domain.md`'s deadline table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineKind {
    /// Organisation admin accepts or re-routes a triaged dispute: 48 hours from
    /// notification (district plan, goal 3).
    TriageResponse,
    /// A court-mediation organisation appoints a mediator: 3 working days (SPC Online
    /// Mediation Rules art. 10).
    CourtAppoint,
    /// The assigned mediator accepts: 3 working days (art. 12).
    MediatorAccept,
    /// Mediation concluded: 30 days from acceptance, plus agreed extensions (plan goal
    /// 4; art. 24).
    Mediation,
    /// Parties apply for judicial confirmation: 30 days from the agreement (People's
    /// Mediation Law art. 33; Civil Procedure Law 2023 art. 205).
    ConfirmationApply,
    /// The court decides whether to accept the application: 3 days (2011 Provisions
    /// art. 4).
    CourtAccept,
    /// The court rules: 15 days from acceptance, +10 with approval (2011 Provisions
    /// art. 5).
    Ruling,
}

impl DeadlineKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TriageResponse => "triage_response",
            Self::CourtAppoint => "court_appoint",
            Self::MediatorAccept => "mediator_accept",
            Self::Mediation => "mediation",
            Self::ConfirmationApply => "confirmation_apply",
            Self::CourtAccept => "court_accept",
            Self::Ruling => "ruling",
        }
    }

    /// The rule the limit comes from.
    pub fn rule(self) -> &'static str {
        match self {
            Self::TriageResponse => "district implementation plan, goal 3 (48 hours)",
            Self::CourtAppoint => "SPC Online Mediation Rules (2021) art. 10 (3 working days)",
            Self::MediatorAccept => "SPC Online Mediation Rules (2021) art. 12 (3 working days)",
            Self::Mediation => "plan goal 4; SPC Online Mediation Rules (2021) art. 24 (30 days)",
            Self::ConfirmationApply => {
                "People's Mediation Law art. 33; Civil Procedure Law (2023) art. 205 (30 days)"
            }
            Self::CourtAccept => "SPC Provisions on judicial confirmation (2011) art. 4 (3 days)",
            Self::Ruling => {
                "SPC Provisions on judicial confirmation (2011) art. 5 (15 days, +10 with approval)"
            }
        }
    }
}

/// Where a deadline stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineState {
    /// Not yet met, not yet due.
    Open,
    /// Not met and past due.
    Overdue,
    /// Met on time.
    Met,
    /// Met after the due time.
    Late,
    /// Moot: the dispute ended before the step was taken.
    Cancelled,
}

/// One computed deadline of a dispute.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deadline {
    /// The dispute.
    pub dispute_id: i64,
    /// Its case number.
    pub case_number: String,
    /// Which step.
    pub kind: DeadlineKind,
    /// The rule, for display.
    pub rule: String,
    /// When the period started (Unix seconds).
    pub started_at: i64,
    /// When it is due (Unix seconds).
    pub due_at: i64,
    /// When the step was taken, if it was (Unix seconds).
    pub met_at: Option<i64>,
    /// Where it stands at the time of computation.
    pub state: DeadlineState,
}

/// The facts of a dispute that its deadlines depend on.
#[derive(Debug, Clone, Default)]
pub struct DeadlineFacts {
    /// Dispute id.
    pub dispute_id: i64,
    /// Case number.
    pub case_number: String,
    /// Current status (wire name).
    pub status: String,
    /// Kind of the organisation the dispute sits with, if any.
    pub org_kind: Option<String>,
    /// Notification time of the latest triage notice and its answer time.
    pub notice: Option<(i64, Option<i64>)>,
    /// Acceptance (受理) time.
    pub accepted_at: Option<i64>,
    /// When the mediator accepted the assignment.
    pub mediator_confirmed_at: Option<i64>,
    /// When mediation started.
    pub mediation_started_at: Option<i64>,
    /// When mediation ended, and how (`agreement`, `failed`, `withdrawn`).
    pub concluded_at: Option<i64>,
    /// Outcome.
    pub outcome: Option<String>,
    /// Agreed extension of the mediation period, days.
    pub extension_days: i64,
    /// Judicial confirmation applied for.
    pub confirmation_applied_at: Option<i64>,
    /// Application accepted by the court.
    pub confirmation_accepted_at: Option<i64>,
    /// Ruling time.
    pub ruled_at: Option<i64>,
    /// The ruling used the approved extension.
    pub ruling_extended: bool,
}

/// Due time of the mediation period that started at `accepted_at` (calendar days).
pub fn mediation_due(
    cal: &Calendar,
    lim: &DeadlineConfig,
    accepted_at: i64,
    extension_days: i64,
) -> i64 {
    cal.add_calendar_days(accepted_at, lim.mediation_days + extension_days.max(0))
}

/// Every deadline of one dispute that has started, with its state at `now`.
pub fn compute(cal: &Calendar, lim: &DeadlineConfig, f: &DeadlineFacts, now: i64) -> Vec<Deadline> {
    let closed = matches!(
        f.status.as_str(),
        "failed" | "withdrawn" | "confirmed" | "rejected"
    );
    let mut out = Vec::new();
    let mut push = |kind: DeadlineKind, started_at: i64, due_at: i64, met_at: Option<i64>| {
        let state = match met_at {
            Some(t) if t <= due_at => DeadlineState::Met,
            Some(_) => DeadlineState::Late,
            None if closed => DeadlineState::Cancelled,
            None if now > due_at => DeadlineState::Overdue,
            None => DeadlineState::Open,
        };
        out.push(Deadline {
            dispute_id: f.dispute_id,
            case_number: f.case_number.clone(),
            kind,
            rule: kind.rule().to_owned(),
            started_at,
            due_at,
            met_at,
            state,
        });
    };
    if let Some((notified, answered)) = f.notice {
        // An answer is acceptance or re-routing; withdrawal closes the notice (cancelled).
        push(
            DeadlineKind::TriageResponse,
            notified,
            cal.add_hours(notified, lim.triage_response_hours),
            answered,
        );
        if f.org_kind.as_deref() == Some("court") {
            let met = f.accepted_at.filter(|t| *t >= notified);
            push(
                DeadlineKind::CourtAppoint,
                notified,
                cal.add_working_days(notified, lim.court_appoint_working_days),
                met,
            );
        }
    }
    if let Some(acc) = f.accepted_at {
        let met = f.mediator_confirmed_at.or(f.mediation_started_at);
        push(
            DeadlineKind::MediatorAccept,
            acc,
            cal.add_working_days(acc, lim.mediator_accept_working_days),
            met,
        );
        let concluded = f
            .concluded_at
            .filter(|_| matches!(f.outcome.as_deref(), Some("agreement" | "failed")));
        push(
            DeadlineKind::Mediation,
            acc,
            mediation_due(cal, lim, acc, f.extension_days),
            concluded,
        );
    }
    if f.outcome.as_deref() == Some("agreement") {
        if let Some(effective) = f.concluded_at {
            push(
                DeadlineKind::ConfirmationApply,
                effective,
                cal.add_calendar_days(effective, lim.confirmation_apply_days),
                f.confirmation_applied_at,
            );
        }
    }
    if let Some(applied) = f.confirmation_applied_at {
        push(
            DeadlineKind::CourtAccept,
            applied,
            cal.add_calendar_days(applied, lim.court_accept_days),
            f.confirmation_accepted_at,
        );
    }
    if let Some(acc) = f.confirmation_accepted_at {
        let days = lim.ruling_days
            + if f.ruling_extended {
                lim.ruling_extension_days
            } else {
                0
            };
        push(
            DeadlineKind::Ruling,
            acc,
            cal.add_calendar_days(acc, days),
            f.ruled_at,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// 2025 National Day: 1–8 October off; Sunday 28 Sept and Saturday 11 Oct worked.
    fn cal() -> Calendar {
        let hol: Vec<NaiveDate> = (1..=8).map(|i| d(&format!("2025-10-0{i}"))).collect();
        Calendar::new(8, &hol, &[d("2025-09-28"), d("2025-10-11")])
    }

    fn at(cal: &Calendar, date: &str, h: i64) -> i64 {
        cal.start_of_day(d(date)) + h * 3600
    }

    #[test]
    fn local_days_use_the_offset() {
        let c = cal();
        // 2025-09-30 17:00 UTC is 2025-10-01 01:00 in UTC+8.
        let t = c.start_of_day(d("2025-10-01")) + 3600;
        assert_eq!(c.local_date(t), d("2025-10-01"));
        assert_eq!(
            c.end_of_day(d("2025-10-01")) - c.start_of_day(d("2025-10-01")),
            86_399
        );
    }

    #[test]
    fn working_days_skip_the_national_day_holiday() {
        let c = cal();
        assert!(c.is_working_day(d("2025-09-28")), "make-up Sunday");
        assert!(!c.is_working_day(d("2025-10-03")));
        assert!(c.is_working_day(d("2025-10-11")), "make-up Saturday");
        assert!(!c.is_working_day(d("2025-10-12")));
        // Accepted Tuesday 30 Sept 10:00: working days are 9 Oct (Thu), 10 Oct (Fri),
        // 11 Oct (make-up Sat) → due end of 11 Oct.
        let start = at(&c, "2025-09-30", 10);
        assert_eq!(c.add_working_days(start, 3), c.end_of_day(d("2025-10-11")));
        // Without the holiday it would be Friday 3 Oct.
        let plain = Calendar::new(8, &[], &[]);
        assert_eq!(
            plain.add_working_days(start, 3),
            plain.end_of_day(d("2025-10-03"))
        );
        // Friday before a normal weekend: Mon, Tue, Wed.
        assert_eq!(
            plain.add_working_days(at(&plain, "2025-09-19", 9), 3),
            plain.end_of_day(d("2025-09-24"))
        );
    }

    #[test]
    fn calendar_days_end_on_the_next_working_day() {
        let c = cal();
        // 3 days from 29 Sept lands on 2 Oct (holiday) → moves to 9 Oct.
        assert_eq!(
            c.add_calendar_days(at(&c, "2025-09-29", 15), 3),
            c.end_of_day(d("2025-10-09"))
        );
        // 30 days from 2 Sept lands on 2 Oct → 9 Oct.
        assert_eq!(
            c.add_calendar_days(at(&c, "2025-09-02", 9), 30),
            c.end_of_day(d("2025-10-09"))
        );
        // 15 days from 1 Sept: 16 Sept (Tuesday), unchanged.
        assert_eq!(
            c.add_calendar_days(at(&c, "2025-09-01", 9), 15),
            c.end_of_day(d("2025-09-16"))
        );
        // 48 hours is exact.
        let t = at(&c, "2025-09-30", 18);
        assert_eq!(c.add_hours(t, 48), t + 172_800);
    }

    #[test]
    fn states_of_a_dispute_deadlines() {
        let c = cal();
        let lim = DeadlineConfig::default();
        let notified = at(&c, "2025-09-01", 9);
        let f = DeadlineFacts {
            dispute_id: 1,
            case_number: "X".into(),
            status: "in_mediation".into(),
            org_kind: Some("court".into()),
            notice: Some((notified, Some(notified + 50 * 3600))),
            accepted_at: Some(notified + 50 * 3600),
            mediation_started_at: Some(notified + 51 * 3600),
            ..Default::default()
        };
        let now = at(&c, "2025-10-20", 0);
        let ds = compute(&c, &lim, &f, now);
        let get = |k| ds.iter().find(|x| x.kind == k).unwrap().clone();
        assert_eq!(get(DeadlineKind::TriageResponse).state, DeadlineState::Late);
        assert_eq!(get(DeadlineKind::CourtAppoint).state, DeadlineState::Met);
        assert_eq!(get(DeadlineKind::MediatorAccept).state, DeadlineState::Met);
        // Accepted 3 Sept + 30 days = 3 Oct (holiday) → 9 Oct; now is 20 Oct.
        let m = get(DeadlineKind::Mediation);
        assert_eq!(m.due_at, c.end_of_day(d("2025-10-09")));
        assert_eq!(m.state, DeadlineState::Overdue);
        let withdrawn = DeadlineFacts {
            status: "withdrawn".into(),
            ..f
        };
        let ds = compute(&c, &lim, &withdrawn, now);
        assert_eq!(
            ds.iter()
                .find(|x| x.kind == DeadlineKind::Mediation)
                .unwrap()
                .state,
            DeadlineState::Cancelled
        );
    }
}
