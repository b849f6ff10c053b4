//! The case service's operations on the store. Authorisation is the caller's job (the
//! API checks roles and scope first); these functions validate input, enforce the
//! lifecycle, write atomically (one transaction per step) and audit.

use crate::db::{audit, Actor, Store};
use crate::deadlines::{self, Deadline, DeadlineFacts, DeadlineState};
use crate::error::{is_unique_violation, CasesError};
use crate::kpi::{self, KpiInput, KpiReport};
use crate::lifecycle::{self, Action, Status};
use crate::model::*;
use crate::validate;
use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine as _;
use chrono::{Datelike, NaiveDate};
use fengqiao_signaling::invite::{random_id, InviteClaims, Role};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use utoipa::ToSchema;

/// Closed states: no deadline of these disputes is pending.
const CLOSED: &str = "('failed','withdrawn','confirmed','rejected')";

/// Which disputes a principal may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every dispute (admin, triage, judge, clerk).
    All,
    /// Disputes currently with this organisation (org admin).
    Org(i64),
    /// Disputes assigned to this mediator.
    Mediator(i64),
    /// Nothing.
    Nothing,
}

impl Scope {
    /// SQL condition on alias `d` (no parameters; ids are integers).
    fn sql(self) -> String {
        match self {
            Scope::All => "1=1".into(),
            Scope::Org(id) => format!("d.org_id = {id}"),
            Scope::Mediator(id) => format!("d.mediator_id = {id}"),
            Scope::Nothing => "1=0".into(),
        }
    }

    /// Whether the dispute is inside the scope.
    pub fn covers(self, d: &DisputeRow) -> bool {
        match self {
            Scope::All => true,
            Scope::Org(id) => d.org_id == Some(id),
            Scope::Mediator(id) => d.mediator_id == Some(id),
            Scope::Nothing => false,
        }
    }
}

/// An authenticated staff member.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StaffUser {
    /// User id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Role.
    pub role: StaffRole,
    /// Organisation (org admins, mediators).
    pub org_id: Option<i64>,
    /// Roster entry (mediators).
    pub mediator_id: Option<i64>,
}

impl StaffUser {
    /// The disputes this user may read.
    pub fn scope(&self) -> Scope {
        match self.role {
            StaffRole::Admin | StaffRole::Triage | StaffRole::Judge | StaffRole::Clerk => {
                Scope::All
            }
            StaffRole::OrgAdmin => self.org_id.map_or(Scope::Nothing, Scope::Org),
            StaffRole::Mediator => self.mediator_id.map_or(Scope::Nothing, Scope::Mediator),
        }
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AuthRow {
    id: i64,
    username: String,
    display_name: String,
    role: String,
    org_id: Option<i64>,
    mediator_id: Option<i64>,
}

impl AuthRow {
    fn into_staff(self) -> Option<StaffUser> {
        Some(StaffUser {
            id: self.id,
            username: self.username,
            display_name: self.display_name,
            role: StaffRole::parse(&self.role)?,
            org_id: self.org_id,
            mediator_id: self.mediator_id,
        })
    }
}

/// A new staff account.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 3–64 characters of letters, digits, `.`, `_`, `-`.
    pub username: String,
    /// Shown name.
    pub display_name: String,
    /// Role.
    pub role: String,
    /// Organisation: required for `org_admin` and `mediator`.
    #[serde(default)]
    pub org_id: Option<i64>,
    /// Password, at least 10 characters.
    pub password: String,
    /// For mediators: specialties for the roster entry made with the account.
    #[serde(default)]
    pub specialties: Option<String>,
}

/// Changes to a staff account (`PATCH /api/users/{id}`); absent fields stay as they are.
///
/// `org_id` distinguishes absent (unchanged) from `null` (no organisation). Rules as for
/// [`NewUser`]: `org_admin` and `mediator` need an organisation, other roles have none.
/// Deactivating (`active: false`) ends the account's login sessions at once; an admin
/// may not deactivate or demote themselves, nor remove the last active admin.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Shown name, 1–100 characters.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Role: `admin`, `triage`, `org_admin`, `mediator`, `judge` or `clerk`.
    #[serde(default)]
    pub role: Option<String>,
    /// Organisation; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub org_id: Option<Option<i64>>,
    /// Whether the account may log in.
    #[serde(default)]
    pub active: Option<bool>,
    /// New password, at least 10 characters (ends the account's login sessions).
    #[serde(default)]
    pub password: Option<String>,
}

/// Deserialises a field that is present (possibly `null`) as `Some(..)`; with
/// `#[serde(default)]` an absent field stays `None`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A new organisation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrganisation {
    /// Name.
    pub name: String,
    /// One of [`ORG_KINDS`].
    pub kind: String,
    /// District.
    pub district: String,
    /// Street.
    #[serde(default)]
    pub street: Option<String>,
    /// Online on the platform.
    #[serde(default)]
    pub online: bool,
}

/// Changes to an organisation.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrganisationPatch {
    /// Online status.
    #[serde(default)]
    pub online: Option<bool>,
    /// New street (0–100 characters; empty clears it).
    #[serde(default)]
    pub street: Option<String>,
    /// New name, 1–200 characters, unique (409 `name` when taken).
    #[serde(default)]
    pub name: Option<String>,
    /// New kind, one of [`ORG_KINDS`].
    #[serde(default)]
    pub kind: Option<String>,
    /// New district, 1–100 characters.
    #[serde(default)]
    pub district: Option<String>,
}

/// A new roster entry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMediator {
    /// Organisation.
    pub org_id: i64,
    /// Name.
    pub name: String,
    /// Specialties, comma-separated.
    #[serde(default)]
    pub specialties: Option<String>,
}

/// Changes to a roster entry.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MediatorPatch {
    /// `active`, `inactive` or `suspended`.
    #[serde(default)]
    pub status: Option<String>,
    /// Specialties.
    #[serde(default)]
    pub specialties: Option<String>,
    /// New name, 1–100 characters.
    #[serde(default)]
    pub name: Option<String>,
    /// New organisation (422 `org_id` when there is none such). A mediator with a login
    /// account moves with it: the account's `org_id` follows.
    #[serde(default)]
    pub org_id: Option<i64>,
}

/// The agreement document.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgreementUpload {
    /// `text` or `pdf`.
    pub kind: String,
    /// File name.
    pub filename: String,
    /// The text, for `kind = text` (up to 200,000 characters).
    #[serde(default)]
    pub text: Option<String>,
    /// Base64 of the PDF, for `kind = pdf` (up to 15 MB decoded).
    #[serde(default)]
    pub content_base64: Option<String>,
}

/// Scheduling of a session.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSession {
    /// Start, RFC 3339.
    pub scheduled_at: String,
    /// Length, minutes (5–600).
    pub duration_minutes: i64,
    /// Parties invited (default: every party of the dispute).
    #[serde(default)]
    pub party_ids: Option<Vec<i64>>,
}

/// One invite link of a session.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InviteLink {
    /// Participant row id.
    pub participant_id: i64,
    /// Participant id inside the token.
    pub pid: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: String,
    /// `{public_url}/join/{token}`.
    pub url: String,
    /// Expiry, Unix seconds.
    pub expires_at: i64,
}

/// A scheduled session with its invite links (shown once).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ScheduledSession {
    /// The session.
    pub session: MediationSession,
    /// One link per participant, the mediator's first.
    pub invites: Vec<InviteLink>,
}

/// A session with its participants.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SessionView {
    /// Case number.
    pub case_number: String,
    /// The session.
    pub session: MediationSession,
    /// Participants, attendance, consent and identity checks.
    pub participants: Vec<Participant>,
}

/// Attendance and identity check of one participant.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attendance {
    /// Participant row id.
    pub participant_id: i64,
    /// Joined, RFC 3339.
    #[serde(default)]
    pub joined_at: Option<String>,
    /// Left, RFC 3339.
    #[serde(default)]
    pub left_at: Option<String>,
    /// How identity was verified (e.g. `id_card_on_camera`), art. 17.
    #[serde(default)]
    pub identity_method: Option<String>,
}

/// A recording reported by the recorder.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRecording {
    /// File path relative to `data_dir/sessions` (the session folders of docs/interfaces.md, e.g. `<session-id>/review.mp4`).
    pub file_path: String,
    /// Manifest path.
    pub manifest_path: String,
    /// Integrity check value, SHA-256 hex.
    pub integrity_sha256: String,
    /// MIME type: `video/mp4`, `audio/wav`, `video/webm` or `audio/ogg`.
    pub media_type: String,
    /// Start, RFC 3339.
    pub started_at: String,
    /// End, RFC 3339.
    pub ended_at: String,
}

/// A training (KPI 6).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTraining {
    /// Date held, `YYYY-MM-DD`.
    pub held_on: String,
    /// Topic.
    pub topic: String,
    /// Organiser.
    pub organiser: String,
    /// Attendees (0–100,000).
    pub attendance: i64,
    /// Organisation, none for district-wide.
    #[serde(default)]
    pub org_id: Option<i64>,
}

/// A party's unmasked identity (audited read).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartyIdentity {
    /// Party.
    pub party_id: i64,
    /// Name.
    pub name: String,
    /// Full ID number.
    pub id_number: Option<String>,
    /// Full phone.
    pub phone: Option<String>,
}

/// A dispute's file for export (identity masked), with every integrity value.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeExport {
    /// Export time, Unix seconds.
    pub exported_at: i64,
    /// Who exported.
    pub exported_by: String,
    /// The file.
    pub detail: DisputeDetail,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct NoticeRow {
    dispute_id: i64,
    notified_at: i64,
    responded_at: Option<i64>,
    response: Option<String>,
}

enum Val {
    I(i64),
    S(String),
}

/// Hashes a password with Argon2id (default parameters), returning the PHC string.
///
/// # Errors
/// [`CasesError::Internal`] if hashing fails.
pub fn hash_password(password: &str) -> Result<String, CasesError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CasesError::Internal(format!("password hash: {e}")))
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

fn not_found(what: &str) -> CasesError {
    CasesError::NotFound(what.to_owned())
}

/// Formats a case number from the configured format.
pub fn format_case_number(fmt: &str, year: i32, seq: i64, district: &str) -> String {
    let mut out = String::new();
    let mut rest = fmt;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            out.push_str(&rest[open..]);
            rest = "";
            break;
        };
        let token = &rest[open + 1..open + close];
        match token {
            "year" => out.push_str(&year.to_string()),
            "seq" => out.push_str(&seq.to_string()),
            "district" => out.push_str(district),
            t if t.starts_with("seq:") => {
                let w: usize = t[4..].parse().unwrap_or(0);
                out.push_str(&format!("{seq:0w$}"));
            }
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

impl Store {
    // ---------------------------------------------------------------- accounts

    /// Creates a staff account (and, for a mediator, its roster entry).
    ///
    /// # Errors
    /// 422 naming the field for bad input; 409 (`username`) when the name is taken.
    pub async fn create_user(&self, actor: &Actor, u: &NewUser) -> Result<User, CasesError> {
        let username = validate::text("username", &u.username, 3, 64, false)?;
        if !username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(CasesError::invalid(
                "username",
                "may contain only letters, digits, '.', '_' and '-'",
            ));
        }
        let display = validate::text("display_name", &u.display_name, 1, 100, false)?;
        let role = parse_staff_role(&u.role)?;
        check_password(&u.password)?;
        let org_id = self.account_org(role, u.org_id).await?;
        let specialties =
            validate::opt_text("specialties", u.specialties.as_deref(), 500)?.unwrap_or_default();
        let pw = u.password.clone();
        let hash = tokio::task::spawn_blocking(move || hash_password(&pw))
            .await
            .map_err(|e| CasesError::Internal(e.to_string()))??;
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let id: i64 = match sqlx::query_scalar(
            "INSERT INTO users (username, display_name, role, org_id, password_hash, active, created_at) \
             VALUES ($1, $2, $3, $4, $5, 1, $6) RETURNING id",
        )
        .bind(&username)
        .bind(&display)
        .bind(role.as_str())
        .bind(org_id)
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => {
                return Err(CasesError::conflict("user name is taken", Some("username")))
            }
            Err(e) => return Err(e.into()),
        };
        let mut mediator_id = None;
        if role == StaffRole::Mediator {
            let mid: i64 = sqlx::query_scalar(
                "INSERT INTO mediators (org_id, user_id, name, specialties, status, created_at) \
                 VALUES ($1, $2, $3, $4, 'active', $5) RETURNING id",
            )
            .bind(org_id)
            .bind(id)
            .bind(&display)
            .bind(&specialties)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            mediator_id = Some(mid);
        }
        audit(
            &mut *tx,
            now,
            actor,
            "user.create",
            "user",
            &id.to_string(),
            "ok",
            &format!("{username} as {}", role.as_str()),
        )
        .await?;
        tx.commit().await?;
        Ok(User {
            id,
            username,
            display_name: display,
            role,
            org_id,
            mediator_id,
            active: true,
        })
    }

    /// Staff accounts, paginated.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_users(&self, page: i64, per_page: i64) -> Result<Page<User>, CasesError> {
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
            .fetch_one(&self.inner.pool)
            .await?;
        let rows: Vec<AccountRow> = sqlx::query_as(&format!("{USER_SELECT} ORDER BY u.id LIMIT $1 OFFSET $2"))
            .bind(per_page)
            .bind((page - 1) * per_page)
            .fetch_all(&self.inner.pool)
            .await?;
        let items = rows.into_iter().filter_map(user_from_row).collect();
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    /// The organisation of a staff account with `role`: required (and existing) for
    /// `org_admin` and `mediator`, absent for the other roles.
    ///
    /// # Errors
    /// 422 naming `org_id`; [`CasesError::Database`].
    async fn account_org(&self, role: StaffRole, org_id: Option<i64>) -> Result<Option<i64>, CasesError> {
        let needs_org = matches!(role, StaffRole::OrgAdmin | StaffRole::Mediator);
        match (needs_org, org_id) {
            (true, None) => Err(CasesError::invalid("org_id", "is required for org_admin and mediator")),
            (false, Some(_)) => Err(CasesError::invalid(
                "org_id",
                "only org_admin and mediator accounts belong to an organisation",
            )),
            (_, Some(o)) => {
                self.get_org(o).await?.ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
                Ok(Some(o))
            }
            (_, None) => Ok(None),
        }
    }

    /// One staff account.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn get_user(&self, id: i64) -> Result<Option<User>, CasesError> {
        let row: Option<AccountRow> = sqlx::query_as(&format!("{USER_SELECT} WHERE u.id = $1"))
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?;
        Ok(row.and_then(user_from_row))
    }

    /// Changes a staff account (admin only; the API checks the role). `by` is the id of
    /// the admin making the change.
    ///
    /// Deactivating deletes the account's login sessions in the same transaction, so
    /// its open logins get 401 from then on; a new password does the same. A mediator
    /// account keeps its roster entry in step: a new organisation moves the entry, a
    /// new role `mediator` creates (or re-links) one, leaving the role unlinks it.
    ///
    /// # Errors
    /// 404 (no such account); 422 naming the field (`display_name`, `role`, `org_id`,
    /// `password`; `active` or `role` when an admin would deactivate or demote
    /// themselves); 409 naming `active` or `role` when the change would leave no active
    /// admin.
    pub async fn update_user(
        &self,
        actor: &Actor,
        by: i64,
        id: i64,
        p: &UserPatch,
    ) -> Result<User, CasesError> {
        let old = self.get_user(id).await?.ok_or_else(|| not_found("user"))?;
        let display = match &p.display_name {
            Some(d) => validate::text("display_name", d, 1, 100, false)?,
            None => old.display_name.clone(),
        };
        let role = match &p.role {
            Some(r) => parse_staff_role(r)?,
            None => old.role,
        };
        let active = p.active.unwrap_or(old.active);
        if let Some(pw) = &p.password {
            check_password(pw)?;
        }
        // Absent org_id: keep the current one when the (new) role has one, drop it when
        // the role changes to one without.
        let org_id = match p.org_id {
            Some(o) => o,
            None if matches!(role, StaffRole::OrgAdmin | StaffRole::Mediator) => old.org_id,
            None if p.role.is_some() => None,
            None => old.org_id,
        };
        let org_id = self.account_org(role, org_id).await?;
        if id == by && !active {
            return Err(CasesError::invalid(
                "active",
                "you cannot deactivate your own account",
            ));
        }
        if id == by && role != StaffRole::Admin {
            return Err(CasesError::invalid(
                "role",
                "you cannot take the admin role from your own account",
            ));
        }
        let hash = match p.password.clone() {
            Some(pw) => Some(
                tokio::task::spawn_blocking(move || hash_password(&pw))
                    .await
                    .map_err(|e| CasesError::Internal(e.to_string()))??,
            ),
            None => None,
        };
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        // Lock the admin rows first (PostgreSQL row locks; SQLite's write lock), so that
        // two admins removing each other at once are serialised and the count below
        // sees the other's committed change.
        sqlx::query("UPDATE users SET active = active WHERE role = 'admin'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE users SET display_name = $1, role = $2, org_id = $3, active = $4 WHERE id = $5",
        )
        .bind(&display)
        .bind(role.as_str())
        .bind(org_id)
        .bind(i64::from(active))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        // Checked after the write, inside the transaction (rolled back on refusal).
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE role = 'admin' AND active = 1",
        )
        .fetch_one(&mut *tx)
        .await?;
        if admins == 0 {
            let field = if old.role == StaffRole::Admin && role != StaffRole::Admin {
                "role"
            } else {
                "active"
            };
            return Err(CasesError::conflict(
                "this would leave no active admin account",
                Some(field),
            ));
        }
        if let Some(h) = &hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(h)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        let mut ended = 0u64;
        if !active || hash.is_some() {
            ended = sqlx::query("DELETE FROM login_sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        // The roster entry of a mediator account.
        let mut mediator_id = old.mediator_id;
        match (role == StaffRole::Mediator, old.mediator_id, org_id) {
            (true, Some(m), Some(o)) => {
                sqlx::query("UPDATE mediators SET org_id = $1 WHERE id = $2")
                    .bind(o)
                    .bind(m)
                    .execute(&mut *tx)
                    .await?;
            }
            (true, None, Some(o)) => {
                let m: i64 = sqlx::query_scalar(
                    "INSERT INTO mediators (org_id, user_id, name, specialties, status, created_at) \
                     VALUES ($1, $2, $3, '', 'active', $4) RETURNING id",
                )
                .bind(o)
                .bind(id)
                .bind(&display)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                mediator_id = Some(m);
            }
            (false, Some(m), _) => {
                sqlx::query("UPDATE mediators SET user_id = NULL WHERE id = $1")
                    .bind(m)
                    .execute(&mut *tx)
                    .await?;
                mediator_id = None;
            }
            _ => {}
        }
        let mut changed = Vec::new();
        if display != old.display_name {
            changed.push(format!("display_name={display}"));
        }
        if role != old.role {
            changed.push(format!("role={}", role.as_str()));
        }
        if org_id != old.org_id {
            changed.push(format!(
                "org_id={}",
                org_id.map_or("none".into(), |o| o.to_string())
            ));
        }
        if active != old.active {
            changed.push(if active { "reactivated" } else { "deactivated" }.into());
        }
        if hash.is_some() {
            changed.push("password changed".into());
        }
        if ended > 0 {
            changed.push(format!("{ended} login session(s) ended"));
        }
        audit(
            &mut *tx,
            now,
            actor,
            "user.update",
            "user",
            &id.to_string(),
            "ok",
            &format!("{}: {}", old.username, changed.join("; ")),
        )
        .await?;
        tx.commit().await?;
        Ok(User {
            id,
            username: old.username,
            display_name: display,
            role,
            org_id,
            mediator_id,
            active,
        })
    }

    /// Checks a user name and password and opens a login session.
    /// Returns the session token (to be put in the cookie) and the user.
    ///
    /// # Errors
    /// 401 for an unknown user or a wrong password (one message for both);
    /// [`CasesError::AccountDeactivated`] (403, code `account_deactivated`) for the right
    /// password of a deactivated account. Every refusal is audited.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        addr: &str,
    ) -> Result<(String, StaffUser), CasesError> {
        let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.inner.pool)
            .await?;
        let pw = password.to_owned();
        let hash = row.as_ref().map(|r| r.password_hash.clone());
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify_password(&pw, &h),
            None => {
                // Spend the same time on unknown names.
                let _ = hash_password(&pw);
                false
            }
        })
        .await
        .map_err(|e| CasesError::Internal(e.to_string()))?;
        let actor = Actor {
            name: username.chars().take(64).collect(),
            role: "anonymous".into(),
            addr: addr.to_owned(),
        };
        let row = match row {
            Some(r) if ok && r.active == 1 => r,
            Some(r) if ok => {
                // The right password of a deactivated account: say so (only someone who
                // knows the password learns that the account exists).
                self.audit(
                    &actor,
                    "auth.login",
                    "user",
                    &r.id.to_string(),
                    "denied",
                    "account deactivated",
                )
                .await?;
                return Err(CasesError::AccountDeactivated);
            }
            _ => {
                self.audit(
                    &actor,
                    "auth.login",
                    "user",
                    &actor.name,
                    "denied",
                    "bad credentials",
                )
                .await?;
                return Err(CasesError::Unauthenticated(
                    "wrong user name or password".into(),
                ));
            }
        };
        let token =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let now = self.now();
        let ttl = self.inner.cfg.settings.login_ttl_hours.max(1) as i64 * 3600;
        sqlx::query("INSERT INTO login_sessions (token_hash, user_id, created_at, expires_at, client_addr) VALUES ($1, $2, $3, $4, $5)")
            .bind(validate::sha256(token.as_bytes()))
            .bind(row.id)
            .bind(now)
            .bind(now + ttl)
            .bind(addr)
            .execute(&self.inner.pool)
            .await?;
        let user = self
            .session_user(&token)
            .await?
            .ok_or_else(|| CasesError::Internal("session vanished".into()))?;
        let actor = Actor {
            name: user.username.clone(),
            role: user.role.as_str().into(),
            addr: addr.to_owned(),
        };
        self.audit(&actor, "auth.login", "user", &user.id.to_string(), "ok", "")
            .await?;
        Ok((token, user))
    }

    /// The user of a live login session token, if any.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn session_user(&self, token: &str) -> Result<Option<StaffUser>, CasesError> {
        let row: Option<AuthRow> = sqlx::query_as(
            "SELECT u.id, u.username, u.display_name, u.role, u.org_id, m.id AS mediator_id \
             FROM login_sessions s JOIN users u ON u.id = s.user_id LEFT JOIN mediators m ON m.user_id = u.id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.active = 1",
        )
        .bind(validate::sha256(token.as_bytes()))
        .bind(self.now())
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(row.and_then(AuthRow::into_staff))
    }

    /// Ends a login session.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn logout(&self, token: &str) -> Result<(), CasesError> {
        sqlx::query("DELETE FROM login_sessions WHERE token_hash = $1")
            .bind(validate::sha256(token.as_bytes()))
            .execute(&self.inner.pool)
            .await?;
        Ok(())
    }

    // ----------------------------------------------------------- organisations

    /// Registers an organisation.
    ///
    /// # Errors
    /// 422 naming the field; 409 (`name`) when the name is taken.
    pub async fn create_org(
        &self,
        actor: &Actor,
        o: &NewOrganisation,
    ) -> Result<Organisation, CasesError> {
        let name = validate::text("name", &o.name, 1, 200, false)?;
        let kind = validate::one_of("kind", &o.kind, &ORG_KINDS)?;
        let district = validate::text("district", &o.district, 1, 100, false)?;
        let street = validate::opt_text("street", o.street.as_deref(), 100)?.unwrap_or_default();
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let org: Organisation = match sqlx::query_as(
            "INSERT INTO organisations (name, kind, district, street, online, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&name)
        .bind(&kind)
        .bind(&district)
        .bind(&street)
        .bind(i64::from(o.online))
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(o) => o,
            Err(e) if is_unique_violation(&e) => return Err(CasesError::conflict("organisation name is taken", Some("name"))),
            Err(e) => return Err(e.into()),
        };
        audit(
            &mut *tx,
            now,
            actor,
            "org.create",
            "organisation",
            &org.id.to_string(),
            "ok",
            &name,
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// Changes an organisation: name, kind, district, street, online status (absent
    /// fields stay).
    ///
    /// # Errors
    /// 404 when there is no such organisation; 422 naming the field; 409 (`name`) when
    /// another organisation has the name.
    pub async fn update_org(
        &self,
        actor: &Actor,
        id: i64,
        p: &OrganisationPatch,
    ) -> Result<Organisation, CasesError> {
        let org = self
            .get_org(id)
            .await?
            .ok_or_else(|| not_found("organisation"))?;
        let name = match &p.name {
            Some(s) => validate::text("name", s, 1, 200, false)?,
            None => org.name.clone(),
        };
        let kind = match &p.kind {
            Some(s) => validate::one_of("kind", s, &ORG_KINDS)?,
            None => org.kind.clone(),
        };
        let district = match &p.district {
            Some(s) => validate::text("district", s, 1, 100, false)?,
            None => org.district.clone(),
        };
        let street = match &p.street {
            Some(s) => validate::text("street", s, 0, 100, false)?,
            None => org.street.clone(),
        };
        let online = p.online.map_or(org.online, i64::from);
        let mut changed = Vec::new();
        for (f, old, new) in [
            ("name", &org.name, &name),
            ("kind", &org.kind, &kind),
            ("district", &org.district, &district),
            ("street", &org.street, &street),
        ] {
            if old != new {
                changed.push(format!("{f}={new}"));
            }
        }
        if online != org.online {
            changed.push(format!("online={online}"));
        }
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let org: Organisation = match sqlx::query_as(
            "UPDATE organisations SET online = $1, street = $2, name = $3, kind = $4, district = $5 WHERE id = $6 RETURNING *",
        )
        .bind(online)
        .bind(&street)
        .bind(&name)
        .bind(&kind)
        .bind(&district)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(o) => o,
            Err(e) if is_unique_violation(&e) => {
                return Err(CasesError::conflict("organisation name is taken", Some("name")))
            }
            Err(e) => return Err(e.into()),
        };
        audit(
            &mut *tx,
            now,
            actor,
            "org.update",
            "organisation",
            &id.to_string(),
            "ok",
            &changed.join("; "),
        )
        .await?;
        tx.commit().await?;
        Ok(org)
    }

    /// One organisation.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn get_org(&self, id: i64) -> Result<Option<Organisation>, CasesError> {
        Ok(sqlx::query_as("SELECT * FROM organisations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?)
    }

    /// All organisations, by id.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_orgs(&self) -> Result<Vec<Organisation>, CasesError> {
        Ok(sqlx::query_as("SELECT * FROM organisations ORDER BY id")
            .fetch_all(&self.inner.pool)
            .await?)
    }

    // ---------------------------------------------------------------- roster

    /// Adds a mediator to the roster (without a login account).
    ///
    /// # Errors
    /// 422 naming the field.
    pub async fn create_mediator(
        &self,
        actor: &Actor,
        m: &NewMediator,
    ) -> Result<Mediator, CasesError> {
        self.get_org(m.org_id)
            .await?
            .ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
        let name = validate::text("name", &m.name, 1, 100, false)?;
        let specialties =
            validate::opt_text("specialties", m.specialties.as_deref(), 500)?.unwrap_or_default();
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let med: Mediator = sqlx::query_as(
            "INSERT INTO mediators (org_id, user_id, name, specialties, status, created_at) VALUES ($1, NULL, $2, $3, 'active', $4) RETURNING *",
        )
        .bind(m.org_id)
        .bind(&name)
        .bind(&specialties)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            "mediator.create",
            "mediator",
            &med.id.to_string(),
            "ok",
            &name,
        )
        .await?;
        tx.commit().await?;
        Ok(med)
    }

    /// Changes a roster entry: name, organisation, status, specialties (absent fields
    /// stay). When the entry has a login account, the account's organisation follows.
    ///
    /// # Errors
    /// 404, or 422 naming the field (`org_id` for an unknown organisation).
    pub async fn update_mediator(
        &self,
        actor: &Actor,
        id: i64,
        p: &MediatorPatch,
    ) -> Result<Mediator, CasesError> {
        let m = self
            .get_mediator(id)
            .await?
            .ok_or_else(|| not_found("mediator"))?;
        let status = match &p.status {
            Some(s) => validate::one_of("status", s, &["active", "inactive", "suspended"])?,
            None => m.status.clone(),
        };
        let specialties = match &p.specialties {
            Some(s) => validate::text("specialties", s, 0, 500, false)?,
            None => m.specialties.clone(),
        };
        let name = match &p.name {
            Some(s) => validate::text("name", s, 1, 100, false)?,
            None => m.name.clone(),
        };
        let org_id = match p.org_id {
            Some(o) => {
                self.get_org(o)
                    .await?
                    .ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
                o
            }
            None => m.org_id,
        };
        let mut changed = vec![format!("status={status}")];
        if name != m.name {
            changed.push(format!("name={name}"));
        }
        if org_id != m.org_id {
            changed.push(format!("org_id={org_id}"));
        }
        if specialties != m.specialties {
            changed.push("specialties".into());
        }
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let updated: Mediator = sqlx::query_as(
            "UPDATE mediators SET status = $1, specialties = $2, name = $3, org_id = $4 WHERE id = $5 RETURNING *",
        )
        .bind(&status)
        .bind(&specialties)
        .bind(&name)
        .bind(org_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if let (Some(uid), true) = (m.user_id, org_id != m.org_id) {
            sqlx::query("UPDATE users SET org_id = $1 WHERE id = $2")
                .bind(org_id)
                .bind(uid)
                .execute(&mut *tx)
                .await?;
        }
        audit(
            &mut *tx,
            now,
            actor,
            "mediator.update",
            "mediator",
            &id.to_string(),
            "ok",
            &changed.join("; "),
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// One roster entry.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn get_mediator(&self, id: i64) -> Result<Option<Mediator>, CasesError> {
        Ok(sqlx::query_as("SELECT * FROM mediators WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?)
    }

    /// The roster, optionally of one organisation.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_mediators(&self, org: Option<i64>) -> Result<Vec<Mediator>, CasesError> {
        Ok(
            sqlx::query_as("SELECT * FROM mediators WHERE ($1 IS NULL OR org_id = $1) ORDER BY id")
                .bind(org)
                .fetch_all(&self.inner.pool)
                .await?,
        )
    }

    // -------------------------------------------------------------- disputes

    /// Registers (登记) a dispute with its parties, allocating the next case number of
    /// the local year. All or nothing.
    ///
    /// # Errors
    /// 422 naming the field (`category`, `description`, `parties[i].name`, ...).
    pub async fn register_dispute(
        &self,
        actor: &Actor,
        user_id: Option<i64>,
        n: &NewDispute,
    ) -> Result<DisputeRow, CasesError> {
        let category = validate::one_of("category", &n.category, &CATEGORIES)?;
        let description = validate::text("description", &n.description, 1, 20_000, true)?;
        if let Some(a) = n.amount_fen {
            validate::range("amount_fen", a, 0, 1_000_000_000_000_000)?;
        }
        if n.parties.len() > 50 {
            return Err(CasesError::invalid("parties", "at most 50 parties"));
        }
        let mut parties = Vec::new();
        for (i, p) in n.parties.iter().enumerate() {
            let f = |x: &str| format!("parties[{i}].{x}");
            let kind =
                validate::one_of(&f("kind"), &p.kind, &["applicant", "respondent", "agent"])?;
            let name = validate::text(&f("name"), &p.name, 1, 100, false)?;
            let idn = validate::opt_text(&f("id_number"), p.id_number.as_deref(), 32)?
                .map(|s| validate::citizen_id(&f("id_number"), &s))
                .transpose()?;
            let phone = validate::opt_text(&f("phone"), p.phone.as_deref(), 32)?;
            if phone.as_ref().is_some_and(|s| {
                !s.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | ' '))
            }) {
                return Err(CasesError::invalid(
                    f("phone"),
                    "may contain only digits, '+', '-' and spaces",
                ));
            }
            match (kind.as_str(), p.represents) {
                ("agent", Some(r)) if r < n.parties.len() && n.parties[r].kind != "agent" => {}
                ("agent", _) => {
                    return Err(CasesError::invalid(
                        f("represents"),
                        "an agent must name the index of a non-agent party",
                    ))
                }
                (_, Some(_)) => {
                    return Err(CasesError::invalid(
                        f("represents"),
                        "only agents represent a party",
                    ))
                }
                _ => {}
            }
            parties.push((kind, name, idn, phone, p.represents));
        }
        if !parties.iter().any(|p| p.0 == "applicant")
            || !parties.iter().any(|p| p.0 == "respondent")
        {
            return Err(CasesError::invalid(
                "parties",
                "need at least one applicant and one respondent",
            ));
        }
        let now = self.now();
        let year = self.calendar().local_date(now).year();
        let mut tx = self.inner.pool.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO case_counters (year, last) VALUES ($1, 1) \
             ON CONFLICT (year) DO UPDATE SET last = case_counters.last + 1 RETURNING last",
        )
        .bind(i64::from(year))
        .fetch_one(&mut *tx)
        .await?;
        let cfg = &self.inner.cfg;
        let case_number =
            format_case_number(&cfg.settings.case_number_format, year, seq, &cfg.settings.district_code);
        let d: DisputeRow = sqlx::query_as(
            "INSERT INTO disputes (case_number, category, description, amount_fen, status, is_public, registered_by, registered_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'registered', $5, $6, $7, $7) RETURNING *",
        )
        .bind(&case_number)
        .bind(&category)
        .bind(&description)
        .bind(n.amount_fen)
        .bind(i64::from(n.is_public))
        .bind(user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        // Principals first, then agents pointing at them.
        let mut ids = vec![0i64; parties.len()];
        for pass in [false, true] {
            for (i, (kind, name, idn, phone, rep)) in parties.iter().enumerate() {
                if (kind == "agent") != pass {
                    continue;
                }
                let represents = rep.map(|r| ids[r]);
                ids[i] = sqlx::query_scalar(
                    "INSERT INTO parties (dispute_id, kind, name, id_number, phone, represents) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(d.id)
                .bind(kind)
                .bind(name)
                .bind(idn.clone())
                .bind(phone.clone())
                .bind(represents)
                .fetch_one(&mut *tx)
                .await?;
            }
        }
        record_event(
            &mut tx,
            d.id,
            now,
            actor,
            "register",
            "",
            "registered",
            &case_number,
        )
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            "dispute.register",
            "dispute",
            &d.id.to_string(),
            "ok",
            &case_number,
        )
        .await?;
        tx.commit().await?;
        Ok(d)
    }

    /// One dispute.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn get_dispute(&self, id: i64) -> Result<Option<DisputeRow>, CasesError> {
        Ok(sqlx::query_as("SELECT * FROM disputes WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?)
    }

    /// The id of the dispute with this case number (e.g. `(2026)枫调字第00001号`), if any.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn dispute_id_by_case_number(&self, case_number: &str) -> Result<Option<i64>, CasesError> {
        Ok(sqlx::query_scalar("SELECT id FROM disputes WHERE case_number = $1")
            .bind(case_number)
            .fetch_optional(&self.inner.pool)
            .await?)
    }

    /// Disputes in `scope`, optionally of one status and organisation, newest first.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_disputes(
        &self,
        scope: Scope,
        status: Option<&str>,
        org: Option<i64>,
        page: i64,
        per_page: i64,
    ) -> Result<Page<DisputeSummary>, CasesError> {
        let cond = format!(
            "{} AND ($1 IS NULL OR d.status = $1) AND ($2 IS NULL OR d.org_id = $2)",
            scope.sql()
        );
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM disputes d WHERE {cond}"))
                .bind(status)
                .bind(org)
                .fetch_one(&self.inner.pool)
                .await?;
        let items: Vec<DisputeSummary> = sqlx::query_as(&format!(
            "SELECT d.id, d.case_number, d.category, d.status, d.org_id, d.mediator_id, d.amount_fen, d.registered_at, d.updated_at \
             FROM disputes d WHERE {cond} ORDER BY d.id DESC LIMIT $3 OFFSET $4"
        ))
        .bind(status)
        .bind(org)
        .bind(per_page)
        .bind((page - 1) * per_page)
        .fetch_all(&self.inner.pool)
        .await?;
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    /// Everything shown on a dispute's page (identity masked).
    ///
    /// # Errors
    /// 404 when there is no such dispute.
    pub async fn dispute_detail(&self, id: i64) -> Result<DisputeDetail, CasesError> {
        let pool = &self.inner.pool;
        let dispute = self
            .get_dispute(id)
            .await?
            .ok_or_else(|| not_found("dispute"))?;
        let parties: Vec<PartyRow> =
            sqlx::query_as("SELECT * FROM parties WHERE dispute_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await?;
        let events =
            sqlx::query_as("SELECT * FROM dispute_events WHERE dispute_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await?;
        let sessions =
            sqlx::query_as("SELECT * FROM mediation_sessions WHERE dispute_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await?;
        let recordings =
            sqlx::query_as("SELECT * FROM recordings WHERE dispute_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await?;
        let agreement = sqlx::query_as(
            "SELECT dispute_id, kind, filename, sha256, uploaded_by, uploaded_at FROM agreements WHERE dispute_id = $1",
        )
        .bind(id)
        .fetch_optional(pool)
        .await?;
        let signatures =
            sqlx::query_as("SELECT * FROM agreement_signatures WHERE dispute_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(pool)
                .await?;
        let deadlines = self.dispute_deadlines(&dispute).await?;
        Ok(DisputeDetail {
            parties: parties.iter().map(Party::from).collect(),
            dispute,
            events,
            sessions,
            recordings,
            agreement,
            signatures,
            deadlines,
        })
    }

    async fn dispute_deadlines(&self, d: &DisputeRow) -> Result<Vec<Deadline>, CasesError> {
        let notice: Option<NoticeRow> = sqlx::query_as(
            "SELECT dispute_id, notified_at, responded_at, response FROM triage_notices WHERE dispute_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(d.id)
        .fetch_optional(&self.inner.pool)
        .await?;
        let kind = match d.org_id {
            Some(o) => self.get_org(o).await?.map(|o| o.kind),
            None => None,
        };
        let f = facts(d, kind, notice.as_ref());
        Ok(deadlines::compute(
            self.calendar(),
            &self.inner.cfg.settings.deadlines,
            &f,
            self.now(),
        ))
    }

    async fn change(
        &self,
        d: &DisputeRow,
        action: Action,
        actor: &Actor,
        sets: Vec<(&str, Val)>,
        detail: &str,
    ) -> Result<(sqlx::Transaction<'static, sqlx::Any>, i64), CasesError> {
        let from = Status::parse(&d.status)
            .ok_or_else(|| CasesError::Internal(format!("bad status {}", d.status)))?;
        let to = lifecycle::transition(from, action).map_err(CasesError::IllegalTransition)?;
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        update_dispute(&mut tx, d, to.as_str(), now, sets).await?;
        record_event(
            &mut tx,
            d.id,
            now,
            actor,
            action.as_str(),
            &d.status,
            to.as_str(),
            detail,
        )
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            &format!("dispute.{}", action.as_str()),
            "dispute",
            &d.id.to_string(),
            "ok",
            detail,
        )
        .await?;
        Ok((tx, now))
    }

    async fn org_recipients(
        &self,
        conn: &mut AnyConnection,
        org: i64,
    ) -> Result<Vec<String>, CasesError> {
        let names: Vec<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE role = 'org_admin' AND org_id = $1 AND active = 1 ORDER BY id")
                .bind(org)
                .fetch_all(&mut *conn)
                .await?;
        Ok(if names.is_empty() {
            vec![format!("org:{org}")]
        } else {
            names
        })
    }

    /// Triage (分流): routes a registered dispute to an organisation and notifies its
    /// admins; the 48-hour answer period starts (district plan, goal 3).
    ///
    /// # Errors
    /// 409 when the dispute is not `registered`; 422 (`org_id`) for an unknown
    /// organisation.
    pub async fn triage(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        org_id: i64,
    ) -> Result<DisputeRow, CasesError> {
        self.get_org(org_id)
            .await?
            .ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
        let (mut tx, now) = self
            .change(
                d,
                Action::Triage,
                actor,
                vec![
                    ("org_id", Val::I(org_id)),
                    ("triaged_at", Val::I(self.now())),
                ],
                &format!("org {org_id}"),
            )
            .await?;
        self.open_notice(&mut tx, d, org_id, now).await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    async fn open_notice(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        d: &DisputeRow,
        org_id: i64,
        now: i64,
    ) -> Result<(), CasesError> {
        let due = self
            .calendar()
            .add_hours(now, self.inner.cfg.settings.deadlines.triage_response_hours);
        sqlx::query("INSERT INTO triage_notices (dispute_id, org_id, notified_at, due_at) VALUES ($1, $2, $3, $4)")
            .bind(d.id)
            .bind(org_id)
            .bind(now)
            .bind(due)
            .execute(&mut **tx)
            .await?;
        for r in self.org_recipients(tx, org_id).await? {
            enqueue(
                &mut **tx,
                now,
                "triage_notice",
                &r,
                &format!("New dispute {}", d.case_number),
                &format!("Dispute {} ({}) was routed to your organisation. Accept or re-route it within {} hours.", d.case_number, d.category, self.inner.cfg.settings.deadlines.triage_response_hours),
                None,
            )
            .await?;
        }
        Ok(())
    }

    async fn close_notice(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        dispute: i64,
        now: i64,
        response: &str,
    ) -> Result<(), CasesError> {
        sqlx::query("UPDATE triage_notices SET responded_at = $1, response = $2 WHERE dispute_id = $3 AND responded_at IS NULL")
            .bind(now)
            .bind(response)
            .bind(dispute)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Re-route: the organisation sends a triaged dispute on to another organisation
    /// (answers the current notice and opens a new one).
    ///
    /// # Errors
    /// 409 unless `triaged`; 422 (`org_id`, `reason`).
    pub async fn reroute(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        org_id: i64,
        reason: &str,
    ) -> Result<DisputeRow, CasesError> {
        let reason = validate::text("reason", reason, 1, 2000, true)?;
        if d.org_id == Some(org_id) && d.status == "triaged" {
            return Err(CasesError::invalid(
                "org_id",
                "must differ from the current organisation",
            ));
        }
        self.get_org(org_id)
            .await?
            .ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
        let now = self.now();
        let (mut tx, now) = self
            .change(
                d,
                Action::Reroute,
                actor,
                vec![("org_id", Val::I(org_id)), ("triaged_at", Val::I(now))],
                &format!("to org {org_id}: {reason}"),
            )
            .await?;
        Self::close_notice(&mut tx, d.id, now, "rerouted").await?;
        self.open_notice(&mut tx, d, org_id, now).await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// Acceptance (受理): the organisation accepts the dispute and assigns one of its
    /// active mediators. Of two admins accepting at once exactly one wins; the other
    /// gets 409.
    ///
    /// # Errors
    /// 409 unless `triaged` (or when another change won the race); 422
    /// (`mediator_id`) when the mediator is unknown, inactive or of another
    /// organisation.
    pub async fn accept(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        mediator_id: i64,
    ) -> Result<DisputeRow, CasesError> {
        let m = self
            .get_mediator(mediator_id)
            .await?
            .ok_or_else(|| CasesError::invalid("mediator_id", "no such mediator"))?;
        if Some(m.org_id) != d.org_id {
            return Err(CasesError::invalid(
                "mediator_id",
                "the mediator belongs to another organisation",
            ));
        }
        if m.status != "active" {
            return Err(CasesError::invalid(
                "mediator_id",
                "the mediator is not active",
            ));
        }
        let now = self.now();
        let (mut tx, now) = self
            .change(
                d,
                Action::Accept,
                actor,
                vec![
                    ("mediator_id", Val::I(mediator_id)),
                    ("accepted_at", Val::I(now)),
                ],
                &format!("mediator {mediator_id}"),
            )
            .await?;
        Self::close_notice(&mut tx, d.id, now, "accepted").await?;
        let recipient: Option<String> = match m.user_id {
            Some(u) => {
                sqlx::query_scalar("SELECT username FROM users WHERE id = $1")
                    .bind(u)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        };
        enqueue(
            &mut *tx,
            now,
            "assignment",
            &recipient.unwrap_or_else(|| format!("mediator:{mediator_id}")),
            &format!("Assigned: {}", d.case_number),
            &format!(
                "You were assigned dispute {}. Accept within {} working days.",
                d.case_number, self.inner.cfg.settings.deadlines.mediator_accept_working_days
            ),
            None,
        )
        .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// The assigned mediator accepts the appointment (Online Mediation Rules art. 12).
    ///
    /// # Errors
    /// 409 unless `accepted` or `in_mediation`, or when already confirmed.
    pub async fn confirm_assignment(
        &self,
        actor: &Actor,
        d: &DisputeRow,
    ) -> Result<DisputeRow, CasesError> {
        if !matches!(d.status.as_str(), "accepted" | "in_mediation")
            || d.mediator_confirmed_at.is_some()
        {
            return Err(CasesError::IllegalTransition(format!(
                "cannot confirm the assignment of a dispute that is {}{}",
                d.status,
                if d.mediator_confirmed_at.is_some() {
                    " and already confirmed"
                } else {
                    ""
                }
            )));
        }
        self.non_transition(
            actor,
            d,
            "confirm_assignment",
            vec![("mediator_confirmed_at", Val::I(self.now()))],
            "",
        )
        .await
    }

    /// Extends the mediation period with the parties' consent (art. 24).
    ///
    /// # Errors
    /// 409 unless `accepted`/`in_mediation`; 422 (`days`, `reason`, `parties_consent`).
    pub async fn extend(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        days: i64,
        reason: &str,
        consent: bool,
    ) -> Result<DisputeRow, CasesError> {
        validate::range("days", days, 1, 60)?;
        let reason = validate::text("reason", reason, 1, 2000, true)?;
        if !consent {
            return Err(CasesError::invalid(
                "parties_consent",
                "an extension needs the parties' consent",
            ));
        }
        if !matches!(d.status.as_str(), "accepted" | "in_mediation") {
            return Err(CasesError::IllegalTransition(format!(
                "cannot extend the mediation of a dispute that is {}",
                d.status
            )));
        }
        self.non_transition(
            actor,
            d,
            "extend",
            vec![("extension_days", Val::I(d.extension_days + days))],
            &format!("+{days} days: {reason}"),
        )
        .await
    }

    async fn non_transition(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        action: &str,
        sets: Vec<(&str, Val)>,
        detail: &str,
    ) -> Result<DisputeRow, CasesError> {
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        update_dispute(&mut tx, d, &d.status, now, sets).await?;
        record_event(
            &mut tx, d.id, now, actor, action, &d.status, &d.status, detail,
        )
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            &format!("dispute.{action}"),
            "dispute",
            &d.id.to_string(),
            "ok",
            detail,
        )
        .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// Opens the mediation (调解中).
    ///
    /// # Errors
    /// 409 unless `accepted`.
    pub async fn start(&self, actor: &Actor, d: &DisputeRow) -> Result<DisputeRow, CasesError> {
        let now = self.now();
        let mut sets = vec![("mediation_started_at", Val::I(now))];
        if d.mediator_confirmed_at.is_none() {
            sets.push(("mediator_confirmed_at", Val::I(now)));
        }
        let (tx, _) = self.change(d, Action::Start, actor, sets, "").await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// Agreement reached (调解成功): stores the agreement with its SHA-256 and ends the
    /// mediation; the 30-day period to apply for judicial confirmation starts.
    ///
    /// # Errors
    /// 409 unless `in_mediation`; 422 (`kind`, `filename`, `text`, `content_base64`).
    pub async fn agree(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        a: &AgreementUpload,
    ) -> Result<DisputeRow, CasesError> {
        let kind = validate::one_of("kind", &a.kind, &["text", "pdf"])?;
        let filename = validate::text("filename", &a.filename, 1, 200, false)?;
        if filename.contains('/') || filename.contains('\\') {
            return Err(CasesError::invalid(
                "filename",
                "must not contain path separators",
            ));
        }
        let content: Vec<u8> = if kind == "text" {
            let t = a
                .text
                .as_deref()
                .ok_or_else(|| CasesError::invalid("text", "is required for kind text"))?;
            validate::text("text", t, 1, 200_000, true)?.into_bytes()
        } else {
            let b = a
                .content_base64
                .as_deref()
                .ok_or_else(|| CasesError::invalid("content_base64", "is required for kind pdf"))?;
            if b.len() > 20_500_000 {
                return Err(CasesError::invalid(
                    "content_base64",
                    "the PDF must be at most 15 MB",
                ));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| CasesError::invalid("content_base64", "must be standard base64"))?;
            if !bytes.starts_with(b"%PDF-") {
                return Err(CasesError::invalid(
                    "content_base64",
                    "is not a PDF document",
                ));
            }
            bytes
        };
        let sha = validate::sha256(&content);
        let now = self.now();
        let (mut tx, now) = self
            .change(
                d,
                Action::Agree,
                actor,
                vec![
                    ("concluded_at", Val::I(now)),
                    ("outcome", Val::S("agreement".into())),
                ],
                &format!("agreement sha256 {sha}"),
            )
            .await?;
        sqlx::query("INSERT INTO agreements (dispute_id, kind, filename, content, sha256, uploaded_by, uploaded_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(d.id)
            .bind(&kind)
            .bind(&filename)
            .bind(content)
            .bind(&sha)
            .bind(&actor.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// Records a party's signature of the agreement (who, when, how identified).
    ///
    /// # Errors
    /// 409 when there is no agreement yet or the party already signed; 422
    /// (`party_id`, `method`).
    pub async fn sign(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        party_id: i64,
        method: &str,
    ) -> Result<Signature, CasesError> {
        let method = validate::text("method", method, 1, 100, false)?;
        let p: Option<PartyRow> =
            sqlx::query_as("SELECT * FROM parties WHERE id = $1 AND dispute_id = $2")
                .bind(party_id)
                .bind(d.id)
                .fetch_optional(&self.inner.pool)
                .await?;
        let p = p.ok_or_else(|| CasesError::invalid("party_id", "not a party of this dispute"))?;
        if p.kind == "agent" {
            return Err(CasesError::invalid(
                "party_id",
                "the applicant or respondent signs, not the agent",
            ));
        }
        if d.status != "agreement_reached" {
            return Err(CasesError::IllegalTransition(format!(
                "cannot sign the agreement of a dispute that is {}",
                d.status
            )));
        }
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let s: Signature = match sqlx::query_as(
            "INSERT INTO agreement_signatures (dispute_id, party_id, signed_at, method, recorded_by) VALUES ($1, $2, $3, $4, $5) RETURNING *",
        )
        .bind(d.id)
        .bind(party_id)
        .bind(now)
        .bind(&method)
        .bind(&actor.name)
        .fetch_one(&mut *tx)
        .await
        {
            Ok(s) => s,
            Err(e) if is_unique_violation(&e) => return Err(CasesError::conflict("this party has already signed", Some("party_id"))),
            Err(e) => return Err(e.into()),
        };
        audit(
            &mut *tx,
            now,
            actor,
            "agreement.sign",
            "dispute",
            &d.id.to_string(),
            "ok",
            &format!("party {party_id} by {method}"),
        )
        .await?;
        tx.commit().await?;
        Ok(s)
    }

    /// Mediation failed (调解不成), with the reason.
    ///
    /// # Errors
    /// 409 unless `in_mediation`; 422 (`reason`).
    pub async fn fail(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        reason: &str,
    ) -> Result<DisputeRow, CasesError> {
        let reason = validate::text("reason", reason, 1, 5000, true)?;
        let now = self.now();
        let (tx, _) = self
            .change(
                d,
                Action::Fail,
                actor,
                vec![
                    ("concluded_at", Val::I(now)),
                    ("outcome", Val::S("failed".into())),
                    ("failure_reason", Val::S(reason.clone())),
                ],
                &reason,
            )
            .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// The parties withdraw.
    ///
    /// # Errors
    /// 409 once mediation has ended; 422 (`reason`).
    pub async fn withdraw(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        reason: &str,
    ) -> Result<DisputeRow, CasesError> {
        let reason = validate::text("reason", reason, 1, 5000, true)?;
        let now = self.now();
        let (mut tx, now) = self
            .change(
                d,
                Action::Withdraw,
                actor,
                vec![
                    ("concluded_at", Val::I(now)),
                    ("outcome", Val::S("withdrawn".into())),
                    ("withdrawal_reason", Val::S(reason.clone())),
                ],
                &reason,
            )
            .await?;
        Self::close_notice(&mut tx, d.id, now, "withdrawn").await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// Judicial confirmation applied for (申请司法确认). Every applicant and respondent
    /// must have signed the agreement.
    ///
    /// # Errors
    /// 409 unless `agreement_reached` with all signatures.
    pub async fn apply_confirmation(
        &self,
        actor: &Actor,
        d: &DisputeRow,
    ) -> Result<DisputeRow, CasesError> {
        if d.status == "agreement_reached" {
            let unsigned: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM parties p WHERE p.dispute_id = $1 AND p.kind <> 'agent' \
                 AND NOT EXISTS (SELECT 1 FROM agreement_signatures s WHERE s.dispute_id = p.dispute_id AND s.party_id = p.id)",
            )
            .bind(d.id)
            .fetch_one(&self.inner.pool)
            .await?;
            if unsigned > 0 {
                return Err(CasesError::IllegalTransition(format!(
                    "the agreement lacks {unsigned} party signature(s)"
                )));
            }
        }
        let now = self.now();
        let (tx, _) = self
            .change(
                d,
                Action::ApplyConfirmation,
                actor,
                vec![("confirmation_applied_at", Val::I(now))],
                "",
            )
            .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// The court accepts the application (2011 Provisions art. 4: within 3 days).
    ///
    /// # Errors
    /// 409 unless `confirmation_applied`.
    pub async fn accept_confirmation(
        &self,
        actor: &Actor,
        d: &DisputeRow,
    ) -> Result<DisputeRow, CasesError> {
        let now = self.now();
        let (tx, _) = self
            .change(
                d,
                Action::AcceptConfirmation,
                actor,
                vec![("confirmation_accepted_at", Val::I(now))],
                "",
            )
            .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// The court's ruling: confirmed (裁定确认有效) or rejected (驳回), with the judge's
    /// note; `extended` marks use of the approved +10 days (2011 Provisions art. 5).
    ///
    /// # Errors
    /// 409 unless `confirmation_accepted`; 422 (`outcome`, `note`).
    pub async fn rule(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        outcome: &str,
        note: &str,
        extended: bool,
    ) -> Result<DisputeRow, CasesError> {
        let action = match outcome {
            "confirmed" => Action::Confirm,
            "rejected" => Action::Reject,
            _ => {
                return Err(CasesError::invalid(
                    "outcome",
                    "must be one of: confirmed, rejected",
                ))
            }
        };
        let note = validate::text("note", note, 1, 5000, true)?;
        let now = self.now();
        let (tx, _) = self
            .change(
                d,
                action,
                actor,
                vec![
                    ("ruled_at", Val::I(now)),
                    ("ruling_note", Val::S(note.clone())),
                    ("ruling_extended", Val::I(i64::from(extended))),
                ],
                &note,
            )
            .await?;
        tx.commit().await?;
        self.get_dispute(d.id)
            .await?
            .ok_or_else(|| not_found("dispute"))
    }

    /// A party's unmasked identity, for identity checks (audited).
    ///
    /// # Errors
    /// 404 when the party is not of this dispute.
    pub async fn party_identity(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        party_id: i64,
    ) -> Result<PartyIdentity, CasesError> {
        let p: PartyRow = sqlx::query_as("SELECT * FROM parties WHERE id = $1 AND dispute_id = $2")
            .bind(party_id)
            .bind(d.id)
            .fetch_optional(&self.inner.pool)
            .await?
            .ok_or_else(|| not_found("party"))?;
        self.audit(
            actor,
            "party.identity.view",
            "party",
            &party_id.to_string(),
            "ok",
            &d.case_number,
        )
        .await?;
        Ok(PartyIdentity {
            party_id,
            name: p.name,
            id_number: p.id_number,
            phone: p.phone,
        })
    }

    /// The agreement document: `(metadata, content)`; the read is audited.
    ///
    /// # Errors
    /// 404 when there is none.
    pub async fn agreement_content(
        &self,
        actor: &Actor,
        d: &DisputeRow,
    ) -> Result<(AgreementMeta, Vec<u8>), CasesError> {
        let meta: AgreementMeta = sqlx::query_as(
            "SELECT dispute_id, kind, filename, sha256, uploaded_by, uploaded_at FROM agreements WHERE dispute_id = $1",
        )
        .bind(d.id)
        .fetch_optional(&self.inner.pool)
        .await?
        .ok_or_else(|| not_found("agreement"))?;
        let content: Vec<u8> =
            sqlx::query_scalar("SELECT content FROM agreements WHERE dispute_id = $1")
                .bind(d.id)
                .fetch_one(&self.inner.pool)
                .await?;
        self.audit(
            actor,
            "agreement.view",
            "dispute",
            &d.id.to_string(),
            "ok",
            &meta.sha256,
        )
        .await?;
        Ok((meta, content))
    }

    /// The dispute's file for export (identity masked); audited.
    ///
    /// # Errors
    /// 404 when there is no such dispute.
    pub async fn export_dispute(
        &self,
        actor: &Actor,
        id: i64,
    ) -> Result<DisputeExport, CasesError> {
        let detail = self.dispute_detail(id).await?;
        self.audit(
            actor,
            "dispute.export",
            "dispute",
            &id.to_string(),
            "ok",
            &detail.dispute.case_number,
        )
        .await?;
        Ok(DisputeExport {
            exported_at: self.now(),
            exported_by: actor.name.clone(),
            detail,
        })
    }

    // -------------------------------------------------------------- sessions

    /// Schedules a session and mints one invite link per participant (signaling invite
    /// tokens carrying the case id and the session id). The mediator's link admits
    /// without the waiting room. Invites go to the outbox.
    ///
    /// # Errors
    /// 409 unless `accepted` or `in_mediation`; 422 (`scheduled_at`,
    /// `duration_minutes`, `party_ids`).
    pub async fn schedule_session(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        s: &ScheduleSession,
    ) -> Result<ScheduledSession, CasesError> {
        let at = validate::time("scheduled_at", &s.scheduled_at)?;
        let minutes = validate::range("duration_minutes", s.duration_minutes, 5, 600)?;
        if !matches!(d.status.as_str(), "accepted" | "in_mediation") {
            return Err(CasesError::IllegalTransition(format!(
                "cannot schedule a session for a dispute that is {}",
                d.status
            )));
        }
        let mediator_id = d
            .mediator_id
            .ok_or_else(|| CasesError::Internal("accepted dispute without mediator".into()))?;
        let mediator = self
            .get_mediator(mediator_id)
            .await?
            .ok_or_else(|| not_found("mediator"))?;
        let all: Vec<PartyRow> =
            sqlx::query_as("SELECT * FROM parties WHERE dispute_id = $1 ORDER BY id")
                .bind(d.id)
                .fetch_all(&self.inner.pool)
                .await?;
        let invited: Vec<&PartyRow> = match &s.party_ids {
            None => all.iter().collect(),
            Some(ids) => {
                let mut v = Vec::new();
                for (i, id) in ids.iter().enumerate() {
                    let p = all.iter().find(|p| p.id == *id).ok_or_else(|| {
                        CasesError::invalid(
                            format!("party_ids[{i}]"),
                            "not a party of this dispute",
                        )
                    })?;
                    v.push(p);
                }
                v
            }
        };
        let now = self.now();
        let room = format!("case{}-{}", d.id, random_id());
        let exp = at + minutes * 60 + self.inner.cfg.settings.invite_grace_hours as i64 * 3600;
        let mut tx = self.inner.pool.begin().await?;
        let session: MediationSession = sqlx::query_as(
            "INSERT INTO mediation_sessions (dispute_id, room, scheduled_at, duration_minutes, status, created_by, created_at) \
             VALUES ($1, $2, $3, $4, 'scheduled', $5, $6) RETURNING *",
        )
        .bind(d.id)
        .bind(&room)
        .bind(at)
        .bind(minutes)
        .bind(&actor.name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        type Invitee = (Role, Option<i64>, String, String, Option<String>);
        let mut people: Vec<Invitee> = vec![(
            Role::Mediator,
            None,
            format!("m{mediator_id}"),
            mediator.name.clone(),
            None,
        )];
        for p in invited {
            let role = match p.kind.as_str() {
                "applicant" => Role::Applicant,
                "respondent" => Role::Respondent,
                _ => Role::Agent,
            };
            people.push((
                role,
                Some(p.id),
                format!("p{}", p.id),
                p.name.clone(),
                p.phone.clone(),
            ));
        }
        let mut invites = Vec::new();
        for (role, party_id, pid, name, phone) in people {
            let claims = InviteClaims {
                tid: random_id(),
                room: room.clone(),
                pid: pid.clone(),
                name: name.clone(),
                role,
                exp: exp.max(0) as u64,
                case_id: Some(d.id.to_string()),
                session_id: Some(session.id.to_string()),
                admitted: role == Role::Mediator,
            };
            let token = self.inner.key.mint(&claims);
            let url = format!(
                "{}/join/{}",
                self.inner.cfg.public_url.trim_end_matches('/'),
                token
            );
            let pid_row: i64 = sqlx::query_scalar(
                "INSERT INTO session_participants (session_id, role, party_id, pid, name, invite_tid, invite_expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(session.id)
            .bind(role.as_str())
            .bind(party_id)
            .bind(&pid)
            .bind(&name)
            .bind(&claims.tid)
            .bind(exp)
            .fetch_one(&mut *tx)
            .await?;
            let recipient = match (party_id, phone) {
                (_, Some(ph)) => ph,
                (Some(p), None) => format!("party:{p}"),
                (None, _) => actor.name.clone(),
            };
            enqueue(
                &mut *tx,
                now,
                "invite",
                &recipient,
                &format!("Mediation session for {}", d.case_number),
                &format!(
                    "{name}: the session starts at {} (Unix time); join at {url}",
                    at
                ),
                None,
            )
            .await?;
            invites.push(InviteLink {
                participant_id: pid_row,
                pid,
                name,
                role: role.as_str().into(),
                url,
                expires_at: exp,
            });
        }
        audit(
            &mut *tx,
            now,
            actor,
            "session.schedule",
            "session",
            &session.id.to_string(),
            "ok",
            &format!("{} invites", invites.len()),
        )
        .await?;
        tx.commit().await?;
        Ok(ScheduledSession { session, invites })
    }

    /// A session of a dispute with its participants.
    ///
    /// # Errors
    /// 404 when the session is not of this dispute.
    pub async fn session_view(
        &self,
        dispute_id: i64,
        session_id: i64,
    ) -> Result<SessionView, CasesError> {
        let session: MediationSession =
            sqlx::query_as("SELECT * FROM mediation_sessions WHERE id = $1 AND dispute_id = $2")
                .bind(session_id)
                .bind(dispute_id)
                .fetch_optional(&self.inner.pool)
                .await?
                .ok_or_else(|| not_found("session"))?;
        let participants =
            sqlx::query_as("SELECT * FROM session_participants WHERE session_id = $1 ORDER BY id")
                .bind(session_id)
                .fetch_all(&self.inner.pool)
                .await?;
        let case_number: String =
            sqlx::query_scalar("SELECT case_number FROM disputes WHERE id = $1")
                .bind(dispute_id)
                .fetch_one(&self.inner.pool)
                .await?;
        Ok(SessionView {
            case_number,
            session,
            participants,
        })
    }

    /// Whether an invite token id belongs to a participant of this session.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn invite_is_current(&self, session_id: i64, tid: &str) -> Result<bool, CasesError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM session_participants WHERE session_id = $1 AND invite_tid = $2",
        )
        .bind(session_id)
        .bind(tid)
        .fetch_one(&self.inner.pool)
        .await?;
        Ok(n > 0)
    }

    /// Records attendance and the identity check of one participant; the session is
    /// then `held`.
    ///
    /// # Errors
    /// 404 when the session is not of this dispute; 422 (`participant_id`,
    /// `joined_at`, `left_at`, `identity_method`).
    pub async fn record_attendance(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        session_id: i64,
        a: &Attendance,
    ) -> Result<SessionView, CasesError> {
        let view = self.session_view(d.id, session_id).await?;
        if !view.participants.iter().any(|p| p.id == a.participant_id) {
            return Err(CasesError::invalid(
                "participant_id",
                "not a participant of this session",
            ));
        }
        let joined = a
            .joined_at
            .as_deref()
            .map(|t| validate::time("joined_at", t))
            .transpose()?;
        let left = a
            .left_at
            .as_deref()
            .map(|t| validate::time("left_at", t))
            .transpose()?;
        if let (Some(j), Some(l)) = (joined, left) {
            if l < j {
                return Err(CasesError::invalid(
                    "left_at",
                    "must not be before joined_at",
                ));
            }
        }
        let method = validate::opt_text("identity_method", a.identity_method.as_deref(), 100)?;
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        sqlx::query(
            "UPDATE session_participants SET joined_at = COALESCE($1, joined_at), left_at = COALESCE($2, left_at), \
             identity_method = COALESCE($3, identity_method), \
             identity_checked_by = CASE WHEN $3 IS NULL THEN identity_checked_by ELSE $4 END, \
             identity_checked_at = CASE WHEN $3 IS NULL THEN identity_checked_at ELSE $5 END WHERE id = $6",
        )
        .bind(joined)
        .bind(left)
        .bind(method.clone())
        .bind(&actor.name)
        .bind(now)
        .bind(a.participant_id)
        .execute(&mut *tx)
        .await?;
        if joined.is_some() {
            sqlx::query("UPDATE mediation_sessions SET status = 'held' WHERE id = $1 AND status = 'scheduled'").bind(session_id).execute(&mut *tx).await?;
        }
        audit(
            &mut *tx,
            now,
            actor,
            "session.attendance",
            "session",
            &session_id.to_string(),
            "ok",
            &format!("participant {}", a.participant_id),
        )
        .await?;
        tx.commit().await?;
        self.session_view(d.id, session_id).await
    }

    /// Records an invite holder's consent to (or refusal of) recording.
    ///
    /// # Errors
    /// 404 when the token's participant is unknown.
    pub async fn record_consent(
        &self,
        actor: &Actor,
        tid: &str,
        consent: bool,
    ) -> Result<(), CasesError> {
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let n = sqlx::query("UPDATE session_participants SET recording_consent = $1, consent_at = $2 WHERE invite_tid = $3")
            .bind(i64::from(consent))
            .bind(now)
            .bind(tid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(not_found("participant"));
        }
        audit(
            &mut *tx,
            now,
            actor,
            "session.consent",
            "participant",
            tid,
            "ok",
            if consent {
                "recording consented"
            } else {
                "recording refused"
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    // ------------------------------------------------------------ recordings

    /// Registers a recording of a session (manifest and integrity check value from the
    /// recorder). The file must exist under `data_dir/sessions` (the session folders of docs/interfaces.md, e.g. `<session-id>/review.mp4`).
    ///
    /// # Errors
    /// 404 when the session is not of this dispute; 422 naming the field.
    pub async fn add_recording(
        &self,
        actor: &Actor,
        d: &DisputeRow,
        session_id: i64,
        r: &NewRecording,
    ) -> Result<Recording, CasesError> {
        self.session_view(d.id, session_id).await?;
        let file_path = validate::relative_path("file_path", &r.file_path)?;
        let manifest_path = validate::relative_path("manifest_path", &r.manifest_path)?;
        let sha = validate::sha256_hex("integrity_sha256", &r.integrity_sha256)?;
        let media = validate::one_of(
            "media_type",
            &r.media_type,
            &["video/mp4", "audio/wav", "video/webm", "audio/ogg"],
        )?;
        let started = validate::time("started_at", &r.started_at)?;
        let ended = validate::time("ended_at", &r.ended_at)?;
        if ended < started {
            return Err(CasesError::invalid(
                "ended_at",
                "must not be before started_at",
            ));
        }
        let full = self.recordings_dir().join(&file_path);
        let size = tokio::fs::metadata(&full)
            .await
            .ok()
            .filter(|m| m.is_file())
            .ok_or_else(|| {
                CasesError::invalid("file_path", "no such file in the recordings folder")
            })?
            .len() as i64;
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let rec: Recording = sqlx::query_as(
            "INSERT INTO recordings (session_id, dispute_id, file_path, manifest_path, integrity_sha256, size_bytes, media_type, started_at, ended_at, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *",
        )
        .bind(session_id)
        .bind(d.id)
        .bind(&file_path)
        .bind(&manifest_path)
        .bind(&sha)
        .bind(size)
        .bind(&media)
        .bind(started)
        .bind(ended)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            "recording.register",
            "recording",
            &rec.id.to_string(),
            "ok",
            &sha,
        )
        .await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// The folder recordings are served from: `data_dir/sessions` (the session folders of docs/interfaces.md, e.g. `<session-id>/review.mp4`).
    pub fn recordings_dir(&self) -> std::path::PathBuf {
        self.inner.cfg.data_dir.join("sessions")
    }

    /// One recording.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn get_recording(&self, id: i64) -> Result<Option<Recording>, CasesError> {
        Ok(sqlx::query_as("SELECT * FROM recordings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.inner.pool)
            .await?)
    }

    // ------------------------------------------------------------- deadlines

    /// Pending deadlines (open or overdue) of the disputes in `scope`, soonest first;
    /// only the overdue ones when `overdue_only`.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn pending_deadlines(
        &self,
        scope: Scope,
        overdue_only: bool,
    ) -> Result<Vec<Deadline>, CasesError> {
        let pool = &self.inner.pool;
        let rows: Vec<DisputeRow> = sqlx::query_as(&format!(
            "SELECT d.* FROM disputes d WHERE d.status NOT IN {CLOSED} AND {}",
            scope.sql()
        ))
        .fetch_all(pool)
        .await?;
        let notices: Vec<NoticeRow> = sqlx::query_as(&format!(
            "SELECT n.dispute_id, n.notified_at, n.responded_at, n.response FROM triage_notices n JOIN disputes d ON d.id = n.dispute_id \
             WHERE d.status NOT IN {CLOSED} AND {} ORDER BY n.id",
            scope.sql()
        ))
        .fetch_all(pool)
        .await?;
        let kinds: std::collections::HashMap<i64, String> = self
            .list_orgs()
            .await?
            .into_iter()
            .map(|o| (o.id, o.kind))
            .collect();
        let mut latest = std::collections::HashMap::new();
        for n in &notices {
            latest.insert(n.dispute_id, n);
        }
        let now = self.now();
        let mut out: Vec<Deadline> = rows
            .iter()
            .flat_map(|d| {
                let f = facts(
                    d,
                    d.org_id.and_then(|o| kinds.get(&o).cloned()),
                    latest.get(&d.id).copied(),
                );
                deadlines::compute(self.calendar(), &self.inner.cfg.settings.deadlines, &f, now)
            })
            .filter(|x| match x.state {
                DeadlineState::Overdue => true,
                DeadlineState::Open => !overdue_only,
                _ => false,
            })
            .collect();
        out.sort_by_key(|x| (x.due_at, x.dispute_id));
        Ok(out)
    }

    // ------------------------------------------------------------------ KPIs

    /// The six district KPIs over local dates `from..=to`, district-wide or for one
    /// organisation.
    ///
    /// # Errors
    /// 422 (`to`) when `to` is before `from`; 404 for an unknown organisation.
    pub async fn kpi_report(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        org: Option<i64>,
    ) -> Result<KpiReport, CasesError> {
        if to < from {
            return Err(CasesError::invalid("to", "must not be before from"));
        }
        if let Some(o) = org {
            self.get_org(o)
                .await?
                .ok_or_else(|| not_found("organisation"))?;
        }
        let pool = &self.inner.pool;
        let cal = self.calendar();
        let start = cal.start_of_day(from);
        let end = cal.start_of_day(to + chrono::Duration::days(1));
        let orgs_online: Vec<i64> =
            sqlx::query_scalar("SELECT online FROM organisations WHERE ($1 IS NULL OR id = $1)")
                .bind(org)
                .fetch_all(pool)
                .await?;
        let notices: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT notified_at, due_at, responded_at, response FROM triage_notices WHERE ($1 IS NULL OR org_id = $1)",
        )
        .bind(org)
        .fetch_all(pool)
        .await?;
        let med: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT accepted_at, extension_days, concluded_at, outcome FROM disputes WHERE accepted_at IS NOT NULL AND ($1 IS NULL OR org_id = $1)",
        )
        .bind(org)
        .fetch_all(pool)
        .await?;
        let lim = &self.inner.cfg.settings.deadlines;
        let mediations = med
            .into_iter()
            .map(|(acc, ext, concluded, outcome)| {
                (
                    deadlines::mediation_due(cal, lim, acc, ext),
                    concluded,
                    outcome,
                )
            })
            .collect();
        let online_registered: Vec<i64> = sqlx::query_scalar(
            "SELECT d.registered_at FROM disputes d WHERE ($1 IS NULL OR d.org_id = $1) \
             AND EXISTS (SELECT 1 FROM mediation_sessions s WHERE s.dispute_id = d.id AND s.status = 'held')",
        )
        .bind(org)
        .fetch_all(pool)
        .await?;
        let trainings_in_window: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM trainings WHERE held_on >= $1 AND held_on <= $2 AND ($3 IS NULL OR org_id = $3)",
        )
        .bind(from.format("%Y-%m-%d").to_string())
        .bind(to.format("%Y-%m-%d").to_string())
        .bind(org)
        .fetch_one(pool)
        .await?;
        let input = KpiInput {
            orgs_online: orgs_online.into_iter().map(|o| o == 1).collect(),
            notices,
            mediations,
            online_registered,
            last_year_screened: self.inner.cfg.settings.last_year_screened as i64,
            trainings_in_window,
        };
        let days = (to - from).num_days() + 1;
        Ok(KpiReport {
            from: from.to_string(),
            to: to.to_string(),
            org_id: org,
            kpis: kpi::compute(&input, start, end, self.now(), days),
        })
    }

    // ------------------------------------------------------------- trainings

    /// Logs a training (KPI 6).
    ///
    /// # Errors
    /// 422 naming the field.
    pub async fn add_training(
        &self,
        actor: &Actor,
        t: &NewTraining,
    ) -> Result<Training, CasesError> {
        let held = validate::date("held_on", &t.held_on)?;
        let topic = validate::text("topic", &t.topic, 1, 200, false)?;
        let organiser = validate::text("organiser", &t.organiser, 1, 200, false)?;
        let attendance = validate::range("attendance", t.attendance, 0, 100_000)?;
        if let Some(o) = t.org_id {
            self.get_org(o)
                .await?
                .ok_or_else(|| CasesError::invalid("org_id", "no such organisation"))?;
        }
        let now = self.now();
        let mut tx = self.inner.pool.begin().await?;
        let tr: Training = sqlx::query_as(
            "INSERT INTO trainings (held_on, topic, organiser, attendance, org_id, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        )
        .bind(held.format("%Y-%m-%d").to_string())
        .bind(&topic)
        .bind(&organiser)
        .bind(attendance)
        .bind(t.org_id)
        .bind(&actor.name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        audit(
            &mut *tx,
            now,
            actor,
            "training.create",
            "training",
            &tr.id.to_string(),
            "ok",
            &topic,
        )
        .await?;
        tx.commit().await?;
        Ok(tr)
    }

    /// Trainings, newest first, optionally of one organisation.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_trainings(
        &self,
        org: Option<i64>,
        page: i64,
        per_page: i64,
    ) -> Result<Page<Training>, CasesError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM trainings WHERE ($1 IS NULL OR org_id = $1)")
                .bind(org)
                .fetch_one(&self.inner.pool)
                .await?;
        let items = sqlx::query_as("SELECT * FROM trainings WHERE ($1 IS NULL OR org_id = $1) ORDER BY held_on DESC, id DESC LIMIT $2 OFFSET $3")
            .bind(org)
            .bind(per_page)
            .bind((page - 1) * per_page)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }

    // ----------------------------------------------------------------- audit

    /// The audit log, newest first, optionally filtered by action.
    ///
    /// # Errors
    /// [`CasesError::Database`].
    pub async fn list_audit(
        &self,
        action: Option<&str>,
        page: i64,
        per_page: i64,
    ) -> Result<Page<AuditEntry>, CasesError> {
        let total: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE ($1 IS NULL OR action = $1)")
                .bind(action)
                .fetch_one(&self.inner.pool)
                .await?;
        let items = sqlx::query_as("SELECT * FROM audit_log WHERE ($1 IS NULL OR action = $1) ORDER BY id DESC LIMIT $2 OFFSET $3")
            .bind(action)
            .bind(per_page)
            .bind((page - 1) * per_page)
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(Page {
            items,
            page,
            per_page,
            total,
        })
    }
}

fn facts(d: &DisputeRow, org_kind: Option<String>, notice: Option<&NoticeRow>) -> DeadlineFacts {
    DeadlineFacts {
        dispute_id: d.id,
        case_number: d.case_number.clone(),
        status: d.status.clone(),
        org_kind,
        notice: notice.map(|n| {
            let answered = n
                .responded_at
                .filter(|_| matches!(n.response.as_deref(), Some("accepted" | "rerouted")));
            (n.notified_at, answered)
        }),
        accepted_at: d.accepted_at,
        mediator_confirmed_at: d.mediator_confirmed_at,
        mediation_started_at: d.mediation_started_at,
        concluded_at: d.concluded_at,
        outcome: d.outcome.clone(),
        extension_days: d.extension_days,
        confirmation_applied_at: d.confirmation_applied_at,
        confirmation_accepted_at: d.confirmation_accepted_at,
        ruled_at: d.ruled_at,
        ruling_extended: d.ruling_extended == 1,
    }
}

/// Conditional update: succeeds only if nobody changed the dispute since `d` was read
/// (its `version`); otherwise 409 naming the state it is in now.
async fn update_dispute(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    d: &DisputeRow,
    to: &str,
    now: i64,
    sets: Vec<(&str, Val)>,
) -> Result<(), CasesError> {
    let mut sql =
        String::from("UPDATE disputes SET status = $1, version = version + 1, updated_at = $2");
    for (i, (col, _)) in sets.iter().enumerate() {
        sql.push_str(&format!(", {col} = ${}", i + 3));
    }
    let n = sets.len() + 3;
    sql.push_str(&format!(" WHERE id = ${n} AND version = ${}", n + 1));
    let mut q = sqlx::query(&sql).bind(to.to_owned()).bind(now);
    for (_, v) in sets {
        q = match v {
            Val::I(i) => q.bind(i),
            Val::S(s) => q.bind(s),
        };
    }
    let res = q.bind(d.id).bind(d.version).execute(&mut **tx).await?;
    if res.rows_affected() == 0 {
        let now_status: Option<String> =
            sqlx::query_scalar("SELECT status FROM disputes WHERE id = $1")
                .bind(d.id)
                .fetch_optional(&mut **tx)
                .await?;
        return Err(CasesError::IllegalTransition(format!(
            "the dispute was changed by someone else meanwhile; it is now {}",
            now_status.unwrap_or_else(|| "gone".into())
        )));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn record_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    dispute: i64,
    now: i64,
    actor: &Actor,
    action: &str,
    from: &str,
    to: &str,
    detail: &str,
) -> Result<(), CasesError> {
    sqlx::query("INSERT INTO dispute_events (dispute_id, at, actor, action, from_status, to_status, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(dispute)
        .bind(now)
        .bind(&actor.name)
        .bind(action)
        .bind(from)
        .bind(to)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Puts a notification in the outbox (ignored when `dedupe_key` was used before).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn enqueue<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    exec: E,
    now: i64,
    kind: &str,
    recipient: &str,
    subject: &str,
    body: &str,
    dedupe_key: Option<&str>,
) -> Result<bool, CasesError> {
    let n = sqlx::query(
        "INSERT INTO outbox (kind, recipient, subject, body, dedupe_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (dedupe_key) DO NOTHING",
    )
    .bind(kind)
    .bind(recipient)
    .bind(subject)
    .bind(body)
    .bind(dedupe_key)
    .bind(now)
    .execute(exec)
    .await?
    .rows_affected();
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_numbers() {
        assert_eq!(
            format_case_number("({year}){district}调字第{seq:05}号", 2026, 42, "枫"),
            "(2026)枫调字第00042号"
        );
        assert_eq!(format_case_number("{year}-{seq}", 2025, 7, "x"), "2025-7");
        assert_eq!(
            format_case_number("{bogus}-{seq:3}", 2025, 7, "x"),
            "{bogus}-007"
        );
    }

    #[test]
    fn masking() {
        assert_eq!(mask("110105199001011234", 3, 4), "110***********1234");
        assert_eq!(mask("13812345678", 3, 4), "138****5678");
        assert_eq!(mask("123", 3, 4), "***");
    }

    #[test]
    fn passwords() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
    }
}

/// A staff role by name, or 422 naming `role`.
fn parse_staff_role(r: &str) -> Result<StaffRole, CasesError> {
    StaffRole::parse(r).ok_or_else(|| {
        CasesError::invalid("role", "must be one of: admin, triage, org_admin, mediator, judge, clerk")
    })
}

/// A staff password: 10 characters at least, 1,024 bytes at most, no NUL (422 naming
/// `password`).
fn check_password(pw: &str) -> Result<(), CasesError> {
    if pw.chars().count() < 10 {
        return Err(CasesError::invalid("password", "must have at least 10 characters"));
    }
    if pw.len() > 1024 || pw.contains('\0') {
        return Err(CasesError::invalid("password", "must be at most 1024 bytes without NUL"));
    }
    Ok(())
}

/// The columns of a staff account with its roster entry, for [`user_from_row`].
const USER_SELECT: &str = "SELECT u.id, u.username, u.display_name, u.role, u.org_id, u.active, m.id \
     FROM users u LEFT JOIN mediators m ON m.user_id = u.id";

/// (id, username, display_name, role, org_id, active 0/1, mediator id).
type AccountRow = (i64, String, String, String, Option<i64>, i64, Option<i64>);

/// A staff account from a [`USER_SELECT`] row; `None` for a role this build does not know.
fn user_from_row((id, username, display_name, role, org_id, active, mediator_id): AccountRow) -> Option<User> {
    Some(User { id, username, display_name, role: StaffRole::parse(&role)?, org_id, mediator_id, active: active == 1 })
}
