//! Database rows and the JSON shapes of the API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Staff roles (`domain.md`, "Who uses it").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StaffRole {
    /// 管理员: organisations, roster, users, settings, audit log.
    Admin,
    /// 综治中心 / 分流: registers disputes and routes them.
    Triage,
    /// 调解机构管理员: accepts or re-routes disputes sent to the organisation.
    OrgAdmin,
    /// 调解员: hosts sessions, records outcomes.
    Mediator,
    /// 法官: judicial confirmation.
    Judge,
    /// 书记员: recordings, exports, archive; registers confirmation applications.
    Clerk,
}

impl StaffRole {
    /// Every staff role.
    pub const ALL: [StaffRole; 6] = [
        StaffRole::Admin,
        StaffRole::Triage,
        StaffRole::OrgAdmin,
        StaffRole::Mediator,
        StaffRole::Judge,
        StaffRole::Clerk,
    ];

    /// Wire and database name.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Admin => "admin",
            StaffRole::Triage => "triage",
            StaffRole::OrgAdmin => "org_admin",
            StaffRole::Mediator => "mediator",
            StaffRole::Judge => "judge",
            StaffRole::Clerk => "clerk",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<StaffRole> {
        StaffRole::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Organisation kinds (`domain.md`).
pub const ORG_KINDS: [&str; 6] = [
    "peoples_committee",
    "industry",
    "court",
    "special_invited",
    "lawyer",
    "arbitration",
];

/// Dispute categories accepted at registration.
pub const CATEGORIES: [&str; 12] = [
    "family",
    "neighbour",
    "labour",
    "contract",
    "debt",
    "property",
    "tenancy",
    "consumer",
    "traffic",
    "medical",
    "land",
    "other",
];

/// A mediation organisation.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Organisation {
    /// Id.
    pub id: i64,
    /// Name, unique.
    pub name: String,
    /// One of [`ORG_KINDS`].
    pub kind: String,
    /// District.
    pub district: String,
    /// Street (街道).
    pub street: String,
    /// 1 when the organisation is online on the platform (KPI 1), else 0.
    pub online: i64,
    /// Created, Unix seconds.
    pub created_at: i64,
}

/// A staff account as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Role name.
    pub role: String,
    /// Organisation (org admins and mediators).
    pub org_id: Option<i64>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// 1 when the account may log in.
    pub active: i64,
    /// Created, Unix seconds.
    pub created_at: i64,
}

/// A staff account as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Role.
    pub role: StaffRole,
    /// Organisation (org admins and mediators).
    pub org_id: Option<i64>,
    /// The roster entry of a mediator account.
    pub mediator_id: Option<i64>,
    /// Whether the account may log in.
    pub active: bool,
}

/// A mediator on the roster.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Mediator {
    /// Id.
    pub id: i64,
    /// Organisation.
    pub org_id: i64,
    /// Login account, when the mediator has one.
    pub user_id: Option<i64>,
    /// Name.
    pub name: String,
    /// Specialties, comma-separated.
    pub specialties: String,
    /// `active`, `inactive` or `suspended`.
    pub status: String,
    /// Created, Unix seconds.
    pub created_at: i64,
}

/// A dispute as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct DisputeRow {
    /// Id.
    pub id: i64,
    /// Case number (configurable format).
    pub case_number: String,
    /// Category, one of [`CATEGORIES`].
    pub category: String,
    /// Description of the dispute.
    pub description: String,
    /// Amount in dispute, fen (1/100 yuan).
    pub amount_fen: Option<i64>,
    /// Lifecycle state (see [`crate::lifecycle::Status`]).
    pub status: String,
    /// Organisation it is triaged to.
    pub org_id: Option<i64>,
    /// Assigned mediator.
    pub mediator_id: Option<i64>,
    /// 1 when the parties chose public mediation (People's Mediation Law art. 23).
    pub is_public: i64,
    /// Registering user id.
    pub registered_by: Option<i64>,
    /// Registered (登记), Unix seconds.
    pub registered_at: i64,
    /// Last triage (分流) notification.
    pub triaged_at: Option<i64>,
    /// Accepted (受理) with a mediator assigned.
    pub accepted_at: Option<i64>,
    /// The mediator accepted the assignment.
    pub mediator_confirmed_at: Option<i64>,
    /// Mediation started.
    pub mediation_started_at: Option<i64>,
    /// Mediation ended (agreement, failure or withdrawal).
    pub concluded_at: Option<i64>,
    /// `agreement`, `failed` or `withdrawn`.
    pub outcome: Option<String>,
    /// Why mediation failed.
    pub failure_reason: Option<String>,
    /// Why the parties withdrew.
    pub withdrawal_reason: Option<String>,
    /// Days the mediation period was extended with the parties' consent.
    pub extension_days: i64,
    /// Judicial confirmation applied for.
    pub confirmation_applied_at: Option<i64>,
    /// The court accepted the application.
    pub confirmation_accepted_at: Option<i64>,
    /// The court ruled.
    pub ruled_at: Option<i64>,
    /// The judge's note on the ruling.
    pub ruling_note: Option<String>,
    /// 1 when the ruling period was extended with approval.
    pub ruling_extended: i64,
    /// Optimistic-concurrency version, bumped on every change.
    pub version: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A party as stored (full identity; never returned as is).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartyRow {
    /// Id.
    pub id: i64,
    /// Dispute.
    pub dispute_id: i64,
    /// `applicant`, `respondent` or `agent`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// ID-card number.
    pub id_number: Option<String>,
    /// Phone.
    pub phone: Option<String>,
    /// For an agent: the party represented.
    pub represents: Option<i64>,
}

/// A party as shown: ID number and phone masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Party {
    /// Id.
    pub id: i64,
    /// `applicant`, `respondent` or `agent`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// ID number with all but the first 3 and last 4 characters masked.
    pub id_number_masked: Option<String>,
    /// Phone with the middle digits masked.
    pub phone_masked: Option<String>,
    /// For an agent: the party represented.
    pub represents: Option<i64>,
}

/// Masks all but the first `keep_start` and last `keep_end` characters with `*`.
pub fn mask(s: &str, keep_start: usize, keep_end: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= keep_start + keep_end {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..keep_start].iter().collect();
    out.push_str(&"*".repeat(chars.len() - keep_start - keep_end));
    out.extend(&chars[chars.len() - keep_end..]);
    out
}

impl From<&PartyRow> for Party {
    fn from(p: &PartyRow) -> Self {
        Party {
            id: p.id,
            kind: p.kind.clone(),
            name: p.name.clone(),
            id_number_masked: p.id_number.as_deref().map(|s| mask(s, 3, 4)),
            phone_masked: p.phone.as_deref().map(|s| mask(s, 3, 4)),
            represents: p.represents,
        }
    }
}

/// One timestamped step in a dispute's history.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct DisputeEvent {
    /// Id.
    pub id: i64,
    /// Dispute.
    pub dispute_id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Who.
    pub actor: String,
    /// Action (lifecycle action or other step).
    pub action: String,
    /// State before.
    pub from_status: String,
    /// State after.
    pub to_status: String,
    /// Free detail (reason, organisation, mediator ...).
    pub detail: String,
}

/// A mediation session (one meeting of a case).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct MediationSession {
    /// Id.
    pub id: i64,
    /// Dispute.
    pub dispute_id: i64,
    /// Signaling room id.
    pub room: String,
    /// Scheduled start, Unix seconds.
    pub scheduled_at: i64,
    /// Planned length, minutes.
    pub duration_minutes: i64,
    /// `scheduled`, `held` or `cancelled`.
    pub status: String,
    /// Who scheduled it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A participant of a session, with attendance, consent and identity check.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Participant {
    /// Id.
    pub id: i64,
    /// Session.
    pub session_id: i64,
    /// Signaling role.
    pub role: String,
    /// The party, for applicants, respondents and agents.
    pub party_id: Option<i64>,
    /// Participant id in the invite token.
    pub pid: String,
    /// Display name.
    pub name: String,
    /// Invite token id.
    pub invite_tid: String,
    /// Invite expiry, Unix seconds.
    pub invite_expires_at: i64,
    /// Joined, Unix seconds.
    pub joined_at: Option<i64>,
    /// Left, Unix seconds.
    pub left_at: Option<i64>,
    /// 1 consented to recording, 0 refused, null not asked yet.
    pub recording_consent: Option<i64>,
    /// When consent was given or refused.
    pub consent_at: Option<i64>,
    /// How identity was verified (art. 17).
    pub identity_method: Option<String>,
    /// Who verified it.
    pub identity_checked_by: Option<String>,
    /// When.
    pub identity_checked_at: Option<i64>,
}

/// A recording registered by the recorder.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Recording {
    /// Id.
    pub id: i64,
    /// Session.
    pub session_id: i64,
    /// Dispute.
    pub dispute_id: i64,
    /// File path relative to `data_dir/sessions` (the session folders of docs/interfaces.md, e.g. `<session-id>/review.mp4`).
    pub file_path: String,
    /// Manifest path from the recorder.
    pub manifest_path: String,
    /// Integrity check value (完整性校验值): SHA-256, lower-case hex.
    pub integrity_sha256: String,
    /// File size, bytes.
    pub size_bytes: i64,
    /// MIME type.
    pub media_type: String,
    /// Recording start, Unix seconds.
    pub started_at: i64,
    /// Recording end, Unix seconds.
    pub ended_at: i64,
    /// Registered, Unix seconds.
    pub created_at: i64,
}

/// The agreement's metadata (content is served separately).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct AgreementMeta {
    /// Dispute.
    pub dispute_id: i64,
    /// `pdf` or `text`.
    pub kind: String,
    /// File name.
    pub filename: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When, Unix seconds.
    pub uploaded_at: i64,
}

/// A party's signature of the agreement.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Signature {
    /// Id.
    pub id: i64,
    /// Dispute.
    pub dispute_id: i64,
    /// Party who signed.
    pub party_id: i64,
    /// When, Unix seconds.
    pub signed_at: i64,
    /// How the signer was identified (e.g. `id_card_in_video`, `e_signature`).
    pub method: String,
    /// Staff member who recorded it.
    pub recorded_by: String,
}

/// A training (KPI 6).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Training {
    /// Id.
    pub id: i64,
    /// Date held, `YYYY-MM-DD`.
    pub held_on: String,
    /// Topic.
    pub topic: String,
    /// Organiser.
    pub organiser: String,
    /// Number of attendees.
    pub attendance: i64,
    /// Organisation, or none for district-wide.
    pub org_id: Option<i64>,
    /// Who logged it.
    pub created_by: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// One notification in the outbox.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct OutboxItem {
    /// Id.
    pub id: i64,
    /// `invite`, `triage_notice`, `assignment`, `deadline_warning`, `deadline_overdue`.
    pub kind: String,
    /// Recipient (user name, `party:<id>` or a phone number).
    pub recipient: String,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// De-duplication key, when set.
    pub dedupe_key: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Delivered, Unix seconds.
    pub sent_at: Option<i64>,
    /// Delivery attempts.
    pub attempts: i64,
    /// Last delivery error.
    pub last_error: Option<String>,
}

/// One entry of the append-only audit log.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct AuditEntry {
    /// Id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// User name, `party:<pid>`, `system` or `anonymous`.
    pub actor: String,
    /// Role.
    pub actor_role: String,
    /// What was done, e.g. `dispute.accept`, `recording.view`, `access.denied`.
    pub action: String,
    /// Object type.
    pub object_type: String,
    /// Object id.
    pub object_id: String,
    /// `ok` or `denied`.
    pub outcome: String,
    /// Detail.
    pub detail: String,
    /// Client address.
    pub client_addr: String,
}

/// A page of results.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Page number, from 1.
    pub page: i64,
    /// Items per page (1–200).
    pub per_page: i64,
    /// Items on all pages.
    pub total: i64,
}

/// A dispute in a list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct DisputeSummary {
    /// Id.
    pub id: i64,
    /// Case number.
    pub case_number: String,
    /// Category.
    pub category: String,
    /// State.
    pub status: String,
    /// Organisation.
    pub org_id: Option<i64>,
    /// Mediator.
    pub mediator_id: Option<i64>,
    /// Amount in dispute, fen.
    pub amount_fen: Option<i64>,
    /// Registered, Unix seconds.
    pub registered_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
}

/// A dispute with everything shown on its page.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeDetail {
    /// The dispute.
    pub dispute: DisputeRow,
    /// Parties, identity masked.
    pub parties: Vec<Party>,
    /// History of transitions.
    pub events: Vec<DisputeEvent>,
    /// Sessions.
    pub sessions: Vec<MediationSession>,
    /// Recordings with their integrity check values.
    pub recordings: Vec<Recording>,
    /// The agreement, if any.
    pub agreement: Option<AgreementMeta>,
    /// Signatures of the agreement.
    pub signatures: Vec<Signature>,
    /// Deadlines with their state now.
    pub deadlines: Vec<crate::deadlines::Deadline>,
}

/// A party at registration.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewParty {
    /// `applicant`, `respondent` or `agent`.
    pub kind: String,
    /// Name (1–100 characters).
    pub name: String,
    /// ID-card number (up to 32 characters of letters and digits).
    #[serde(default)]
    pub id_number: Option<String>,
    /// Phone (up to 32 characters of digits, `+`, `-`, spaces).
    #[serde(default)]
    pub phone: Option<String>,
    /// For an agent: index in `parties` of the party represented.
    #[serde(default)]
    pub represents: Option<usize>,
}

/// Registration of a dispute.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDispute {
    /// One of [`CATEGORIES`].
    pub category: String,
    /// Description (1–20,000 characters).
    pub description: String,
    /// Amount in dispute, fen (0 or more).
    #[serde(default)]
    pub amount_fen: Option<i64>,
    /// Public mediation chosen by the parties (default false: non-public).
    #[serde(default)]
    pub is_public: bool,
    /// At least one applicant and one respondent.
    pub parties: Vec<NewParty>,
}
