//! The dispute lifecycle of `domain.md` ("A dispute's life") as a state machine.
//!
//! ```text
//! registered ─triage─▶ triaged ─accept─▶ accepted ─start─▶ in_mediation ─agree─▶ agreement_reached
//!                      │  ▲ reroute                                     └─fail──▶ failed
//!                      └──┘
//! registered | triaged | accepted | in_mediation ─withdraw─▶ withdrawn
//! agreement_reached ─apply_confirmation─▶ confirmation_applied ─accept_confirmation─▶
//!     confirmation_accepted ─confirm─▶ confirmed | ─reject─▶ rejected
//! ```
//! Any other step is illegal and answered with 409 and the reason
//! ([`crate::CasesError::IllegalTransition`]).

use serde::{Deserialize, Serialize};

/// The state of a dispute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// 登记: registered by a triage officer.
    Registered,
    /// 分流: routed to an organisation, waiting for its answer (48 hours).
    Triaged,
    /// 受理: accepted by the organisation, mediator assigned.
    Accepted,
    /// 调解中: in mediation (one or more sessions).
    InMediation,
    /// 调解成功: agreement reached and uploaded.
    AgreementReached,
    /// 调解不成: failed, with the reason recorded.
    Failed,
    /// Withdrawn by the parties.
    Withdrawn,
    /// 申请司法确认: judicial confirmation applied for.
    ConfirmationApplied,
    /// The court accepted the application.
    ConfirmationAccepted,
    /// 裁定确认有效: the court confirmed the agreement.
    Confirmed,
    /// 驳回: the court rejected the application.
    Rejected,
}

impl Status {
    /// Every state, in lifecycle order.
    pub const ALL: [Status; 11] = [
        Status::Registered,
        Status::Triaged,
        Status::Accepted,
        Status::InMediation,
        Status::AgreementReached,
        Status::Failed,
        Status::Withdrawn,
        Status::ConfirmationApplied,
        Status::ConfirmationAccepted,
        Status::Confirmed,
        Status::Rejected,
    ];

    /// The wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Registered => "registered",
            Status::Triaged => "triaged",
            Status::Accepted => "accepted",
            Status::InMediation => "in_mediation",
            Status::AgreementReached => "agreement_reached",
            Status::Failed => "failed",
            Status::Withdrawn => "withdrawn",
            Status::ConfirmationApplied => "confirmation_applied",
            Status::ConfirmationAccepted => "confirmation_accepted",
            Status::Confirmed => "confirmed",
            Status::Rejected => "rejected",
        }
    }

    /// Parses a wire name; `None` for anything else.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True once the mediation itself is over (agreement, failure, withdrawal and the
    /// court stages after an agreement).
    pub fn mediation_concluded(self) -> bool {
        !matches!(
            self,
            Status::Registered | Status::Triaged | Status::Accepted | Status::InMediation
        )
    }
}

/// A step of the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Route a registered dispute to an organisation.
    Triage,
    /// The organisation admin sends a triaged dispute to another organisation.
    Reroute,
    /// The organisation admin accepts and assigns a mediator.
    Accept,
    /// The mediator opens the mediation.
    Start,
    /// Agreement reached (agreement document uploaded).
    Agree,
    /// Mediation failed (reason recorded).
    Fail,
    /// The parties withdrew.
    Withdraw,
    /// Judicial confirmation applied for.
    ApplyConfirmation,
    /// The court accepts the application.
    AcceptConfirmation,
    /// The court confirms the agreement.
    Confirm,
    /// The court rejects the application.
    Reject,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 11] = [
        Action::Triage,
        Action::Reroute,
        Action::Accept,
        Action::Start,
        Action::Agree,
        Action::Fail,
        Action::Withdraw,
        Action::ApplyConfirmation,
        Action::AcceptConfirmation,
        Action::Confirm,
        Action::Reject,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Triage => "triage",
            Action::Reroute => "reroute",
            Action::Accept => "accept",
            Action::Start => "start",
            Action::Agree => "agree",
            Action::Fail => "fail",
            Action::Withdraw => "withdraw",
            Action::ApplyConfirmation => "apply_confirmation",
            Action::AcceptConfirmation => "accept_confirmation",
            Action::Confirm => "confirm",
            Action::Reject => "reject",
        }
    }

    /// The states this action may start from.
    pub fn from_states(self) -> &'static [Status] {
        use Status::*;
        match self {
            Action::Triage => &[Registered],
            Action::Reroute => &[Triaged],
            Action::Accept => &[Triaged],
            Action::Start => &[Accepted],
            Action::Agree | Action::Fail => &[InMediation],
            Action::Withdraw => &[Registered, Triaged, Accepted, InMediation],
            Action::ApplyConfirmation => &[AgreementReached],
            Action::AcceptConfirmation => &[ConfirmationApplied],
            Action::Confirm | Action::Reject => &[ConfirmationAccepted],
        }
    }

    /// The state this action leads to.
    pub fn to_state(self) -> Status {
        match self {
            Action::Triage | Action::Reroute => Status::Triaged,
            Action::Accept => Status::Accepted,
            Action::Start => Status::InMediation,
            Action::Agree => Status::AgreementReached,
            Action::Fail => Status::Failed,
            Action::Withdraw => Status::Withdrawn,
            Action::ApplyConfirmation => Status::ConfirmationApplied,
            Action::AcceptConfirmation => Status::ConfirmationAccepted,
            Action::Confirm => Status::Confirmed,
            Action::Reject => Status::Rejected,
        }
    }
}

/// Checks that `action` may be taken from `from`, returning the new state.
///
/// # Errors
/// The reason, in words, when the step is illegal (the API answers 409 with it).
pub fn transition(from: Status, action: Action) -> Result<Status, String> {
    if action.from_states().contains(&from) {
        return Ok(action.to_state());
    }
    let allowed: Vec<&str> = action.from_states().iter().map(|s| s.as_str()).collect();
    let why = match from {
        Status::Confirmed | Status::Rejected => "the court has already ruled".to_owned(),
        Status::Failed | Status::Withdrawn => "the dispute is closed".to_owned(),
        _ => format!(
            "'{}' is only allowed from {}",
            action.as_str(),
            allowed.join(" or ")
        ),
    };
    Err(format!(
        "cannot {} a dispute that is {}: {}",
        action.as_str(),
        from.as_str(),
        why
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_exactly_the_domain_graph() {
        use Action::*;
        use Status::*;
        let legal: &[(Status, Action, Status)] = &[
            (Registered, Triage, Triaged),
            (Triaged, Reroute, Triaged),
            (Triaged, Accept, Accepted),
            (Accepted, Start, InMediation),
            (InMediation, Agree, AgreementReached),
            (InMediation, Fail, Failed),
            (Registered, Withdraw, Withdrawn),
            (Triaged, Withdraw, Withdrawn),
            (Accepted, Withdraw, Withdrawn),
            (InMediation, Withdraw, Withdrawn),
            (AgreementReached, ApplyConfirmation, ConfirmationApplied),
            (
                ConfirmationApplied,
                AcceptConfirmation,
                ConfirmationAccepted,
            ),
            (ConfirmationAccepted, Confirm, Confirmed),
            (ConfirmationAccepted, Reject, Rejected),
        ];
        let mut n_legal = 0;
        for from in Status::ALL {
            for action in Action::ALL {
                let expected = legal.iter().find(|(f, a, _)| *f == from && *a == action);
                match (transition(from, action), expected) {
                    (Ok(to), Some((_, _, want))) => {
                        assert_eq!(to, *want);
                        n_legal += 1;
                    }
                    (Err(why), None) => assert!(why.contains(from.as_str()), "{why}"),
                    (got, want) => panic!("{from:?} --{action:?}--> {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(n_legal, legal.len());
    }

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("bogus"), None);
        assert!(Status::Failed.mediation_concluded());
        assert!(!Status::InMediation.mediation_concluded());
    }
}
