//! The district's six KPIs (`domain.md`, "The district's KPIs"), each as a numerator
//! over a denominator, per organisation or district-wide, over a date window.
//!
//! Definitions (window = local dates `from..=to`):
//! 1. `orgs_online`: organisations in scope marked online / organisations in scope
//!    (target 100%).
//! 2. `triage_response_48h`: triage notices to organisations in scope, notified in the
//!    window, that were answered (accepted or re-routed) within the limit / those
//!    notices that were answered or whose limit has passed (notices closed by a
//!    withdrawal are left out).
//! 3. `concluded_within_limit`: mediations in scope that ended (agreement or failure)
//!    in the window on or before their due time / mediations that ended in the window
//!    plus those still open whose due time fell in the window and has passed.
//! 4. `online_share`: disputes in scope registered in the window with at least one
//!    online session (not cancelled) / last year's screened disputes (an input;
//!    target ≥ 20%).
//! 5. `success_rate`: agreements / mediations concluded (agreement or failure) in the
//!    window (target ≥ 60%; withdrawals are not conclusions).
//! 6. `trainings`: trainings held in the window / required trainings, 2 per year of
//!    window (rounded up) (target ≥ 2 a year).

use serde::Serialize;

/// One KPI.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Kpi {
    /// Number 1–6 in `domain.md`.
    pub number: u8,
    /// Key, e.g. `success_rate`.
    pub key: String,
    /// What it measures.
    pub name: String,
    /// Numerator.
    pub numerator: i64,
    /// Denominator.
    pub denominator: i64,
    /// numerator / denominator, `None` when the denominator is 0.
    pub value: Option<f64>,
    /// The target ratio, when the plan sets one.
    pub target: Option<f64>,
    /// Whether the target is met (`None` when there is no target or no value).
    pub met: Option<bool>,
}

/// The KPI report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KpiReport {
    /// First local date of the window.
    pub from: String,
    /// Last local date of the window (inclusive).
    pub to: String,
    /// Organisation filter, `None` for district-wide.
    pub org_id: Option<i64>,
    /// The six KPIs in order.
    pub kpis: Vec<Kpi>,
}

/// Input rows for the computation (already filtered to the organisation scope).
#[derive(Debug, Clone, Default)]
pub struct KpiInput {
    /// `(online)` of each organisation in scope.
    pub orgs_online: Vec<bool>,
    /// `(notified_at, due_at, responded_at, response)` of triage notices in scope.
    pub notices: Vec<(i64, i64, Option<i64>, Option<String>)>,
    /// Mediations in scope: `(due_at, concluded_at, outcome)` for every accepted dispute.
    pub mediations: Vec<(i64, Option<i64>, Option<String>)>,
    /// `registered_at` of disputes in scope that had at least one online session.
    pub online_registered: Vec<i64>,
    /// Last year's screened disputes.
    pub last_year_screened: i64,
    /// Number of trainings in scope held in the window.
    pub trainings_in_window: i64,
}

fn kpi(number: u8, key: &str, name: &str, num: i64, den: i64, target: Option<f64>) -> Kpi {
    let value = (den > 0).then(|| num as f64 / den as f64);
    let met = match (value, target) {
        (Some(v), Some(t)) => Some(v + 1e-9 >= t),
        _ => None,
    };
    Kpi {
        number,
        key: key.into(),
        name: name.into(),
        numerator: num,
        denominator: den,
        value,
        target,
        met,
    }
}

/// Computes the six KPIs over the window `[start, end)` (Unix seconds) at time `now`;
/// `window_days` is the length of the window in days (for the training requirement).
pub fn compute(input: &KpiInput, start: i64, end: i64, now: i64, window_days: i64) -> Vec<Kpi> {
    let inw = |t: i64| t >= start && t < end;
    let online = input.orgs_online.iter().filter(|o| **o).count() as i64;
    let k1 = kpi(
        1,
        "orgs_online",
        "organisations online",
        online,
        input.orgs_online.len() as i64,
        Some(1.0),
    );

    let (mut n2, mut d2) = (0, 0);
    for (notified, due, responded, response) in &input.notices {
        if !inw(*notified) || response.as_deref() == Some("withdrawn") {
            continue;
        }
        match responded {
            Some(r) => {
                d2 += 1;
                if r <= due {
                    n2 += 1;
                }
            }
            None if *due < now => d2 += 1,
            None => {}
        }
    }
    let k2 = kpi(
        2,
        "triage_response_48h",
        "triage notices answered within 48 hours",
        n2,
        d2,
        None,
    );

    let (mut n3, mut d3, mut n5, mut d5) = (0, 0, 0, 0);
    for (due, concluded, outcome) in &input.mediations {
        let ended = matches!(outcome.as_deref(), Some("agreement") | Some("failed"));
        match concluded {
            Some(c) if ended && inw(*c) => {
                d3 += 1;
                d5 += 1;
                if c <= due {
                    n3 += 1;
                }
                if outcome.as_deref() == Some("agreement") {
                    n5 += 1;
                }
            }
            None if outcome.is_none() && inw(*due) && *due < now => d3 += 1,
            _ => {}
        }
    }
    let k3 = kpi(
        3,
        "concluded_within_limit",
        "mediations concluded within the 30-day limit",
        n3,
        d3,
        None,
    );
    let n4 = input.online_registered.iter().filter(|t| inw(**t)).count() as i64;
    let k4 = kpi(
        4,
        "online_share",
        "online cases / last year's screened disputes",
        n4,
        input.last_year_screened,
        Some(0.2),
    );
    let k5 = kpi(
        5,
        "success_rate",
        "agreements / concluded mediations",
        n5,
        d5,
        Some(0.6),
    );
    let years = (window_days.max(1) + 364) / 365;
    let k6 = kpi(
        6,
        "trainings",
        "trainings held / required (2 a year)",
        input.trainings_in_window,
        2 * years,
        Some(1.0),
    );
    vec![k1, k2, k3, k4, k5, k6]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets() {
        let input = KpiInput {
            orgs_online: vec![true, true, false],
            notices: vec![
                (10, 20, Some(15), Some("accepted".into())),  // on time
                (10, 20, Some(25), Some("rerouted".into())),  // late
                (10, 20, None, None),                         // overdue, counts against
                (10, 200, None, None),                        // pending, not counted
                (10, 20, Some(12), Some("withdrawn".into())), // left out
                (1000, 2000, Some(1001), Some("accepted".into())), // outside window
            ],
            mediations: vec![
                (50, Some(40), Some("agreement".into())),
                (50, Some(60), Some("failed".into())),
                (50, None, None),
                (50, Some(45), Some("withdrawn".into())),
            ],
            online_registered: vec![1, 2, 3, 999],
            last_year_screened: 10,
            trainings_in_window: 1,
        };
        let k = compute(&input, 0, 100, 100, 365);
        let nd: Vec<(i64, i64)> = k.iter().map(|k| (k.numerator, k.denominator)).collect();
        assert_eq!(nd, vec![(2, 3), (1, 3), (1, 3), (3, 10), (1, 2), (1, 2)]);
        assert_eq!(k[0].met, Some(false));
        assert_eq!(k[3].met, Some(true));
        assert_eq!(k[4].met, Some(false));
        assert_eq!(k[1].met, None);
    }
}
