//! The JSON REST API under `/api` (axum 0.8).
//!
//! Authentication: staff log in at `POST /api/auth/login` and get the cookie
//! `fq_session` (HttpOnly, SameSite=Strict, Secure when configured); the same token is
//! accepted as `Authorization: Bearer <token>`. A party presents its invite token as
//! `Authorization: Bearer <invite token>` and may reach its own session only.
//! No or bad credentials → 401; credentials that do not allow the request → 403, and
//! every 403 is written to the audit log.

use crate::db::{Actor, Store};
use crate::error::CasesError;
use crate::model::*;
use crate::service::*;
use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use fengqiao_signaling::invite::InviteClaims;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use StaffRole::{Admin, Clerk, Judge, OrgAdmin, Triage};
const MEDIATOR: StaffRole = StaffRole::Mediator;

/// Largest request body accepted, bytes (agreement PDFs are sent as base64 in JSON).
pub const MAX_BODY: usize = 24 * 1024 * 1024;
/// Name of the login cookie.
pub const COOKIE: &str = "fq_session";

/// What the API handlers share.
#[derive(Clone, Debug)]
pub struct CasesState {
    /// The store.
    pub store: Store,
}

impl CasesState {
    /// State over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Principal {
    /// A logged-in staff member.
    Staff(StaffUser),
    /// The holder of a session invite.
    Party(InviteClaims),
}

/// The caller and its address; extracting it fails with 401 when there are no valid
/// credentials.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Who.
    pub principal: Principal,
    /// Client address, empty when unknown.
    pub addr: String,
    /// The login token, for logout.
    token: Option<String>,
}

impl Ctx {
    /// The audit actor for this caller.
    pub fn actor(&self) -> Actor {
        match &self.principal {
            Principal::Staff(u) => Actor {
                name: u.username.clone(),
                role: u.role.as_str().into(),
                addr: self.addr.clone(),
            },
            Principal::Party(c) => Actor {
                name: format!("party:{}", c.pid),
                role: "party".into(),
                addr: self.addr.clone(),
            },
        }
    }

    /// Audits a refusal and returns the 403.
    pub async fn deny(&self, st: &Store, what: &str, object: &str, why: &str) -> CasesError {
        if let Err(e) = st
            .audit(&self.actor(), what, "request", object, "denied", why)
            .await
        {
            return e;
        }
        CasesError::Forbidden(why.to_owned())
    }

    /// The staff member, when their role is in `roles`; otherwise 403 (audited).
    pub async fn staff(
        &self,
        st: &Store,
        roles: &[StaffRole],
        what: &str,
    ) -> Result<&StaffUser, CasesError> {
        match &self.principal {
            Principal::Staff(u) if roles.contains(&u.role) => Ok(u),
            Principal::Staff(u) => Err(self
                .deny(
                    st,
                    what,
                    what,
                    &format!("role {} may not do this", u.role.as_str()),
                )
                .await),
            Principal::Party(_) => Err(self
                .deny(st, what, what, "an invite token only opens its own session")
                .await),
        }
    }
}

fn client_addr(parts: &Parts) -> String {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

fn credentials(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_owned());
        }
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(s) = v.to_str() else { continue };
        for part in s.split(';') {
            if let Some((k, val)) = part.trim().split_once('=') {
                if k == COOKIE && !val.is_empty() {
                    return Some(val.to_owned());
                }
            }
        }
    }
    None
}

impl FromRequestParts<CasesState> for Ctx {
    type Rejection = CasesError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &CasesState,
    ) -> Result<Self, Self::Rejection> {
        let addr = client_addr(parts);
        let token = credentials(&parts.headers).ok_or_else(|| {
            CasesError::Unauthenticated("log in or present an invite token".into())
        })?;
        if token.contains('.') {
            let now = st.store.now().max(0) as u64;
            let claims =
                st.store.invite_key().verify(&token, now).map_err(|e| {
                    CasesError::Unauthenticated(format!("invite token refused: {e}"))
                })?;
            return Ok(Ctx {
                principal: Principal::Party(claims),
                addr,
                token: None,
            });
        }
        if token.len() > 256 {
            return Err(CasesError::Unauthenticated(
                "unknown or expired login".into(),
            ));
        }
        match st.store.session_user(&token).await? {
            Some(u) => Ok(Ctx {
                principal: Principal::Staff(u),
                addr,
                token: Some(token),
            }),
            None => Err(CasesError::Unauthenticated(
                "unknown or expired login".into(),
            )),
        }
    }
}

/// Reads and parses a JSON body; errors name the field (`serde_path_to_error`).
///
/// # Errors
/// 413 over [`MAX_BODY`]; 422 naming the field for malformed JSON, wrong types,
/// missing or unknown fields and invalid UTF-8.
pub async fn read_json<T: DeserializeOwned>(body: Body) -> Result<T, CasesError> {
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| CasesError::PayloadTooLarge(MAX_BODY))?;
    parse_json(&bytes)
}

/// Parses JSON bytes into `T`, naming the offending field on error.
///
/// # Errors
/// 422 naming the field (`body` when the document itself is malformed).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CasesError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let eof = e.inner().classify() == serde_json::error::Category::Eof;
        let path = if eof {
            ".".to_owned()
        } else {
            e.path().to_string()
        };
        let msg = e.inner().to_string();
        let quoted = |prefix: &str| {
            msg.split(prefix)
                .nth(1)
                .and_then(|r| r.split('`').next())
                .map(str::to_owned)
        };
        let named = quoted("missing field `").or_else(|| quoted("unknown field `"));
        let field = match (named, path.as_str()) {
            (Some(f), "." | "") => f,
            (Some(f), p) if p == f || p.ends_with(&format!(".{f}")) => p.to_owned(),
            (Some(f), p) => format!("{p}.{f}"),
            (None, "." | "") => "body".to_owned(),
            (None, p) => p.to_owned(),
        };
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_owned();
        CasesError::invalid(field, msg)
    })?;
    de.end()
        .map_err(|_| CasesError::invalid("body", "trailing characters after the JSON document"))?;
    Ok(v)
}

/// Path parameters as integers; a non-integer gives 422 naming the parameter.
struct Ids(HashMap<String, i64>);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = CasesError;
    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, Self::Rejection> {
        let Path(raw): Path<HashMap<String, String>> = Path::from_request_parts(parts, st)
            .await
            .map_err(|e| CasesError::invalid("path", e.body_text()))?;
        let mut out = HashMap::new();
        for (k, v) in raw {
            let n: i64 = v
                .parse()
                .map_err(|_| CasesError::invalid(k.clone(), "must be an integer id"))?;
            out.insert(k, n);
        }
        Ok(Ids(out))
    }
}

impl Ids {
    fn get(&self, k: &str) -> i64 {
        self.0.get(k).copied().unwrap_or_default()
    }
}

type Q = Query<HashMap<String, String>>;

fn q_i64(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>, CasesError> {
    match q.get(k).map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| CasesError::invalid(k, "must be an integer")),
    }
}

fn paging(q: &HashMap<String, String>) -> Result<(i64, i64), CasesError> {
    let page = q_i64(q, "page")?.unwrap_or(1);
    let per = q_i64(q, "per_page")?.unwrap_or(50);
    crate::validate::range("page", page, 1, 1_000_000)?;
    crate::validate::range("per_page", per, 1, 200)?;
    Ok((page, per))
}

const ALL_STAFF: &[StaffRole] = &StaffRole::ALL;

/// Loads a dispute the staff member may see: 404 when missing, 403 (audited) when out
/// of scope.
async fn scoped(
    st: &Store,
    ctx: &Ctx,
    u: &StaffUser,
    id: i64,
    what: &str,
) -> Result<DisputeRow, CasesError> {
    let d = st
        .get_dispute(id)
        .await?
        .ok_or_else(|| CasesError::NotFound("dispute".into()))?;
    if !u.scope().covers(&d) {
        return Err(ctx
            .deny(
                st,
                what,
                &format!("dispute {id}"),
                "this dispute is outside your organisation or assignment",
            )
            .await);
    }
    Ok(d)
}

/// The OpenAPI document, served at `/api/openapi.json`.
async fn openapi_json() -> Response {
    Json(crate::openapi::openapi()).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
/// Login.
pub struct LoginBody {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

async fn login(
    State(st): State<CasesState>,
    req: axum::extract::Request,
) -> Result<Response, CasesError> {
    let (parts, body) = req.into_parts();
    let b: LoginBody = read_json(body).await?;
    let addr = client_addr(&parts);
    let (token, user) = st.store.login(&b.username, &b.password, &addr).await?;
    let cfg = st.store.config();
    let mut cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        cfg.settings.login_ttl_hours.max(1) * 3600
    );
    if cfg.secure_cookies() {
        cookie.push_str("; Secure");
    }
    let mut resp = Json(user).into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|e| CasesError::Internal(e.to_string()))?,
    );
    Ok(resp)
}

async fn logout(State(st): State<CasesState>, ctx: Ctx) -> Result<Response, CasesError> {
    ctx.staff(&st.store, ALL_STAFF, "auth.logout").await?;
    if let Some(t) = &ctx.token {
        st.store.logout(t).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fq_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

async fn me(ctx: Ctx) -> Response {
    match ctx.principal {
        Principal::Staff(u) => {
            Json(serde_json::json!({"kind": "staff", "user": u})).into_response()
        }
        Principal::Party(c) => Json(serde_json::json!({
            "kind": "party", "pid": c.pid, "name": c.name, "role": c.role,
            "case_id": c.case_id, "session_id": c.session_id, "expires_at": c.exp
        }))
        .into_response(),
    }
}

async fn list_users(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<User>>, CasesError> {
    ctx.staff(&st.store, &[Admin], "user.list").await?;
    let (p, n) = paging(&q)?;
    Ok(Json(st.store.list_users(p, n).await?))
}

async fn create_user(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<(StatusCode, Json<User>), CasesError> {
    ctx.staff(&st.store, &[Admin], "user.create").await?;
    let b: NewUser = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_user(&ctx.actor(), &b).await?),
    ))
}

async fn update_user(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<Json<User>, CasesError> {
    let me = ctx.staff(&st.store, &[Admin], "user.update").await?.id;
    let b: UserPatch = read_json(body).await?;
    Ok(Json(
        st.store
            .update_user(&ctx.actor(), me, ids.get("id"), &b)
            .await?,
    ))
}

async fn list_orgs(
    State(st): State<CasesState>,
    ctx: Ctx,
) -> Result<Json<Vec<Organisation>>, CasesError> {
    ctx.staff(&st.store, ALL_STAFF, "org.list").await?;
    Ok(Json(st.store.list_orgs().await?))
}

async fn create_org(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<(StatusCode, Json<Organisation>), CasesError> {
    ctx.staff(&st.store, &[Admin], "org.create").await?;
    let b: NewOrganisation = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_org(&ctx.actor(), &b).await?),
    ))
}

async fn update_org(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<Json<Organisation>, CasesError> {
    ctx.staff(&st.store, &[Admin], "org.update").await?;
    let b: OrganisationPatch = read_json(body).await?;
    Ok(Json(
        st.store.update_org(&ctx.actor(), ids.get("id"), &b).await?,
    ))
}

async fn list_mediators(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Vec<Mediator>>, CasesError> {
    ctx.staff(&st.store, ALL_STAFF, "mediator.list").await?;
    Ok(Json(st.store.list_mediators(q_i64(&q, "org_id")?).await?))
}

async fn create_mediator(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<(StatusCode, Json<Mediator>), CasesError> {
    ctx.staff(&st.store, &[Admin], "mediator.create").await?;
    let b: NewMediator = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.create_mediator(&ctx.actor(), &b).await?),
    ))
}

async fn update_mediator(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<Json<Mediator>, CasesError> {
    ctx.staff(&st.store, &[Admin], "mediator.update").await?;
    let b: MediatorPatch = read_json(body).await?;
    Ok(Json(
        st.store
            .update_mediator(&ctx.actor(), ids.get("id"), &b)
            .await?,
    ))
}

async fn list_disputes(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<DisputeSummary>>, CasesError> {
    let u = ctx.staff(&st.store, ALL_STAFF, "dispute.list").await?;
    let (p, n) = paging(&q)?;
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) => Some(
            crate::lifecycle::Status::parse(s)
                .ok_or_else(|| CasesError::invalid("status", "unknown status"))?
                .as_str(),
        ),
    };
    Ok(Json(
        st.store
            .list_disputes(u.scope(), status, q_i64(&q, "org_id")?, p, n)
            .await?,
    ))
}

async fn register(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<(StatusCode, Json<DisputeDetail>), CasesError> {
    let u = ctx.staff(&st.store, &[Triage], "dispute.register").await?;
    let b: NewDispute = read_json(body).await?;
    let d = st
        .store
        .register_dispute(&ctx.actor(), Some(u.id), &b)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.dispute_detail(d.id).await?),
    ))
}

async fn get_dispute(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
) -> Result<Json<DisputeDetail>, CasesError> {
    let u = ctx.staff(&st.store, ALL_STAFF, "dispute.read").await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "dispute.read").await?;
    let detail = st.store.dispute_detail(d.id).await?;
    st.store
        .audit(
            &ctx.actor(),
            "dispute.view",
            "dispute",
            &d.id.to_string(),
            "ok",
            &d.case_number,
        )
        .await?;
    Ok(Json(detail))
}

/// Body of triage and re-route.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgChoice {
    /// Target organisation.
    pub org_id: i64,
    /// Why (required for re-routing).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of accept.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptBody {
    /// Mediator assigned (of the accepting organisation).
    pub mediator_id: i64,
}

/// Body carrying a reason (fail, withdraw).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonBody {
    /// Reason.
    pub reason: String,
}

/// Body of extend.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendBody {
    /// Extra days (1–60).
    pub days: i64,
    /// Why.
    pub reason: String,
    /// The parties consented (required by art. 24).
    pub parties_consent: bool,
}

/// Body of a signature.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// The signing party.
    pub party_id: i64,
    /// How the signer was identified.
    pub method: String,
}

/// Body of the ruling.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulingBody {
    /// `confirmed` or `rejected`.
    pub outcome: String,
    /// The judge's note.
    pub note: String,
    /// The approved +10 days were used.
    #[serde(default)]
    pub extended: bool,
}

/// Body of a consent.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentBody {
    /// Consent to recording (true) or refusal (false).
    pub recording: bool,
}

macro_rules! step {
    ($name:ident, $roles:expr, $what:literal, |$st:ident, $a:ident, $d:ident, $body:ident| $call:expr) => {
        async fn $name(
            State(st): State<CasesState>,
            ctx: Ctx,
            ids: Ids,
            body: Body,
        ) -> Result<Json<DisputeRow>, CasesError> {
            let u = ctx.staff(&st.store, $roles, $what).await?;
            let $d = scoped(&st.store, &ctx, u, ids.get("id"), $what).await?;
            let $body = body;
            let $st = &st.store;
            let $a = ctx.actor();
            Ok(Json($call))
        }
    };
}

step!(triage, &[Triage], "dispute.triage", |s, a, d, body| {
    let b: OrgChoice = read_json(body).await?;
    s.triage(&a, &d, b.org_id).await?
});
step!(reroute, &[OrgAdmin], "dispute.reroute", |s, a, d, body| {
    let b: OrgChoice = read_json(body).await?;
    let reason = b
        .reason
        .ok_or_else(|| CasesError::invalid("reason", "is required to re-route"))?;
    s.reroute(&a, &d, b.org_id, &reason).await?
});
step!(accept, &[OrgAdmin], "dispute.accept", |s, a, d, body| {
    let b: AcceptBody = read_json(body).await?;
    s.accept(&a, &d, b.mediator_id).await?
});
step!(
    confirm_assignment,
    &[MEDIATOR],
    "dispute.confirm_assignment",
    |s, a, d, _body| s.confirm_assignment(&a, &d).await?
);
step!(start, &[MEDIATOR], "dispute.start", |s, a, d, _body| s
    .start(&a, &d)
    .await?);
step!(extend, &[MEDIATOR], "dispute.extend", |s, a, d, body| {
    let b: ExtendBody = read_json(body).await?;
    s.extend(&a, &d, b.days, &b.reason, b.parties_consent)
        .await?
});
step!(agree, &[MEDIATOR], "dispute.agree", |s, a, d, body| {
    let b: AgreementUpload = read_json(body).await?;
    s.agree(&a, &d, &b).await?
});
step!(fail, &[MEDIATOR], "dispute.fail", |s, a, d, body| {
    let b: ReasonBody = read_json(body).await?;
    s.fail(&a, &d, &b.reason).await?
});
step!(
    withdraw,
    &[Triage, OrgAdmin, MEDIATOR],
    "dispute.withdraw",
    |s, a, d, body| {
        let b: ReasonBody = read_json(body).await?;
        s.withdraw(&a, &d, &b.reason).await?
    }
);
step!(
    apply_confirmation,
    &[MEDIATOR, Clerk],
    "dispute.apply_confirmation",
    |s, a, d, _body| s.apply_confirmation(&a, &d).await?
);
step!(
    accept_confirmation,
    &[Judge],
    "dispute.accept_confirmation",
    |s, a, d, _body| s.accept_confirmation(&a, &d).await?
);
step!(ruling, &[Judge], "dispute.ruling", |s, a, d, body| {
    let b: RulingBody = read_json(body).await?;
    s.rule(&a, &d, &b.outcome, &b.note, b.extended).await?
});

async fn sign(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<(StatusCode, Json<Signature>), CasesError> {
    let u = ctx.staff(&st.store, &[MEDIATOR], "agreement.sign").await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "agreement.sign").await?;
    let b: SignBody = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            st.store
                .sign(&ctx.actor(), &d, b.party_id, &b.method)
                .await?,
        ),
    ))
}

async fn get_agreement(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
) -> Result<Response, CasesError> {
    let u = ctx
        .staff(
            &st.store,
            &[MEDIATOR, OrgAdmin, Judge, Clerk],
            "agreement.view",
        )
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "agreement.view").await?;
    let (meta, content) = st.store.agreement_content(&ctx.actor(), &d).await?;
    let ctype = if meta.kind == "pdf" {
        "application/pdf"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut resp = Response::new(Body::from(content));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Ok(v) = HeaderValue::from_str(&meta.sha256) {
        h.insert("x-content-sha256", v);
    }
    Ok(resp)
}

async fn identity(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
) -> Result<Json<PartyIdentity>, CasesError> {
    let u = ctx
        .staff(&st.store, &[MEDIATOR, Judge], "party.identity.view")
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "party.identity.view").await?;
    Ok(Json(
        st.store
            .party_identity(&ctx.actor(), &d, ids.get("party_id"))
            .await?,
    ))
}

async fn export(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
) -> Result<Json<DisputeExport>, CasesError> {
    let u = ctx
        .staff(&st.store, &[Clerk, Judge], "dispute.export")
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "dispute.export").await?;
    Ok(Json(st.store.export_dispute(&ctx.actor(), d.id).await?))
}

async fn schedule(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<(StatusCode, Json<ScheduledSession>), CasesError> {
    let u = ctx
        .staff(&st.store, &[MEDIATOR], "session.schedule")
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "session.schedule").await?;
    let b: ScheduleSession = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(st.store.schedule_session(&ctx.actor(), &d, &b).await?),
    ))
}

async fn get_session(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
) -> Result<Json<SessionView>, CasesError> {
    let (id, sid) = (ids.get("id"), ids.get("sid"));
    let (v, note) = match &ctx.principal {
        Principal::Party(c) => {
            let own = c.case_id.as_deref() == Some(&id.to_string())
                && c.session_id.as_deref() == Some(&sid.to_string());
            if !own || !st.store.invite_is_current(sid, &c.tid).await? {
                return Err(ctx
                    .deny(
                        &st.store,
                        "session.read",
                        &format!("dispute {id} session {sid}"),
                        "an invite token only opens its own session",
                    )
                    .await);
            }
            let mut v = st.store.session_view(id, sid).await?;
            // A party sees who takes part, not the others' invite or identity details.
            for p in &mut v.participants {
                p.invite_tid.clear();
                p.identity_method = None;
                p.identity_checked_by = None;
            }
            (v, String::new())
        }
        Principal::Staff(u) => {
            let d = scoped(&st.store, &ctx, u, id, "session.read").await?;
            (st.store.session_view(d.id, sid).await?, format!("dispute {}", d.id))
        }
    };
    st.store
        .audit(&ctx.actor(), "session.read", "session", &sid.to_string(), "ok", &note)
        .await?;
    Ok(Json(v))
}

async fn party_session(
    State(st): State<CasesState>,
    ctx: Ctx,
) -> Result<Json<SessionView>, CasesError> {
    let Principal::Party(c) = &ctx.principal else {
        return Err(ctx
            .deny(
                &st.store,
                "party.session",
                "party session",
                "only for invite holders",
            )
            .await);
    };
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<i64>().ok());
    let (Some(id), Some(sid)) = (parse(&c.case_id), parse(&c.session_id)) else {
        return Err(ctx
            .deny(
                &st.store,
                "party.session",
                "party session",
                "this invite is not for a case session",
            )
            .await);
    };
    get_session(
        State(st),
        ctx.clone(),
        Ids(HashMap::from([
            ("id".to_owned(), id),
            ("sid".to_owned(), sid),
        ])),
    )
    .await
}

async fn consent(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<StatusCode, CasesError> {
    let Principal::Party(c) = &ctx.principal else {
        return Err(ctx
            .deny(
                &st.store,
                "session.consent",
                "consent",
                "only participants holding an invite give consent",
            )
            .await);
    };
    let b: ConsentBody = read_json(body).await?;
    st.store
        .record_consent(&ctx.actor(), &c.tid, b.recording)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn attendance(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<Json<SessionView>, CasesError> {
    let u = ctx
        .staff(&st.store, &[MEDIATOR], "session.attendance")
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "session.attendance").await?;
    let b: Attendance = read_json(body).await?;
    Ok(Json(
        st.store
            .record_attendance(&ctx.actor(), &d, ids.get("sid"), &b)
            .await?,
    ))
}

async fn add_recording(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    body: Body,
) -> Result<(StatusCode, Json<Recording>), CasesError> {
    let u = ctx
        .staff(&st.store, &[MEDIATOR, Admin], "recording.register")
        .await?;
    let d = scoped(&st.store, &ctx, u, ids.get("id"), "recording.register").await?;
    let b: NewRecording = read_json(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            st.store
                .add_recording(&ctx.actor(), &d, ids.get("sid"), &b)
                .await?,
        ),
    ))
}

/// Parses a single `bytes=` range against `size`; `Ok(None)` means the whole file.
fn parse_range(h: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, CasesError> {
    let Some(h) = h else { return Ok(None) };
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: serve the whole file (allowed by RFC 9110).
        return Ok(None);
    }
    let (a, b) = spec
        .split_once('-')
        .ok_or(CasesError::RangeNotSatisfiable(size))?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b
            .parse()
            .map_err(|_| CasesError::RangeNotSatisfiable(size))?;
        if n == 0 || size == 0 {
            return Err(CasesError::RangeNotSatisfiable(size));
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a
            .parse()
            .map_err(|_| CasesError::RangeNotSatisfiable(size))?;
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>()
                .map_err(|_| CasesError::RangeNotSatisfiable(size))?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(CasesError::RangeNotSatisfiable(size));
        }
        (start, end)
    };
    Ok(Some(r))
}

async fn recording_file(
    State(st): State<CasesState>,
    ctx: Ctx,
    ids: Ids,
    headers: HeaderMap,
) -> Result<Response, CasesError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let u = ctx
        .staff(&st.store, &[MEDIATOR, Judge, Clerk], "recording.view")
        .await?;
    let rec = st
        .store
        .get_recording(ids.get("rid"))
        .await?
        .ok_or_else(|| CasesError::NotFound("recording".into()))?;
    scoped(&st.store, &ctx, u, rec.dispute_id, "recording.view").await?;
    let path = st.store.recordings_dir().join(&rec.file_path);
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| CasesError::NotFound("recording file".into()))?;
    let size = file.metadata().await?.len();
    let range_h = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = parse_range(range_h, size)?;
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    st.store
        .audit(
            &ctx.actor(),
            "recording.view",
            "recording",
            &rec.id.to_string(),
            "ok",
            &format!("bytes {start}-{end}/{size}"),
        )
        .await?;
    file.seek(std::io::SeekFrom::Start(start)).await?;
    let stream = futures_util::stream::unfold(
        (file.take(len), vec![0u8; 64 * 1024]),
        |(mut f, mut buf)| async move {
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok::<_, std::io::Error>(bytes_of(&buf[..n])), (f, buf))),
                Err(e) => Some((Err(e), (f, buf))),
            }
        },
    );
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&rec.media_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&rec.integrity_sha256) {
        h.insert("x-integrity-sha256", v);
    }
    if range.is_some() {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(resp)
}

fn bytes_of(b: &[u8]) -> axum::body::Bytes {
    axum::body::Bytes::copy_from_slice(b)
}

async fn deadlines(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<crate::deadlines::Deadline>>, CasesError> {
    let u = ctx.staff(&st.store, ALL_STAFF, "deadline.list").await?;
    let (p, n) = paging(&q)?;
    let overdue = match q.get("overdue").map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        _ => return Err(CasesError::invalid("overdue", "must be true or false")),
    };
    let all = st.store.pending_deadlines(u.scope(), overdue).await?;
    let total = all.len() as i64;
    let items = all
        .into_iter()
        .skip(((p - 1) * n) as usize)
        .take(n as usize)
        .collect();
    Ok(Json(Page {
        items,
        page: p,
        per_page: n,
        total,
    }))
}

async fn kpi(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<crate::kpi::KpiReport>, CasesError> {
    let u = ctx
        .staff(&st.store, &[Admin, Triage, OrgAdmin], "report.kpi")
        .await?;
    let mut org = q_i64(&q, "org")?;
    if u.role == OrgAdmin {
        match org {
            None => org = u.org_id,
            Some(o) if Some(o) != u.org_id => {
                return Err(ctx
                    .deny(
                        &st.store,
                        "report.kpi",
                        &format!("org {o}"),
                        "an organisation admin sees only its own organisation",
                    )
                    .await)
            }
            _ => {}
        }
    }
    let today = st.store.calendar().local_date(st.store.now());
    let from = match q.get("from").filter(|s| !s.is_empty()) {
        Some(s) => crate::validate::date("from", s)?,
        None => {
            chrono::NaiveDate::from_ymd_opt(chrono::Datelike::year(&today), 1, 1).unwrap_or(today)
        }
    };
    let to = match q.get("to").filter(|s| !s.is_empty()) {
        Some(s) => crate::validate::date("to", s)?,
        None => today,
    };
    Ok(Json(st.store.kpi_report(from, to, org).await?))
}

async fn list_trainings(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<Training>>, CasesError> {
    ctx.staff(&st.store, ALL_STAFF, "training.list").await?;
    let (p, n) = paging(&q)?;
    Ok(Json(
        st.store.list_trainings(q_i64(&q, "org_id")?, p, n).await?,
    ))
}

async fn create_training(
    State(st): State<CasesState>,
    ctx: Ctx,
    body: Body,
) -> Result<(StatusCode, Json<Training>), CasesError> {
    let u = ctx
        .staff(&st.store, &[Admin, OrgAdmin], "training.create")
        .await?;
    let mut b: NewTraining = read_json(body).await?;
    if u.role == OrgAdmin {
        if b.org_id.is_some() && b.org_id != u.org_id {
            return Err(CasesError::invalid(
                "org_id",
                "an organisation admin logs trainings of its own organisation",
            ));
        }
        b.org_id = u.org_id;
    }
    Ok((
        StatusCode::CREATED,
        Json(st.store.add_training(&ctx.actor(), &b).await?),
    ))
}

async fn outbox(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<OutboxItem>>, CasesError> {
    ctx.staff(&st.store, &[Admin], "outbox.list").await?;
    let (p, n) = paging(&q)?;
    let pending = q.get("pending").is_some_and(|v| v == "true");
    Ok(Json(st.store.list_outbox(pending, p, n).await?))
}

async fn audit_log(
    State(st): State<CasesState>,
    ctx: Ctx,
    Query(q): Q,
) -> Result<Json<Page<AuditEntry>>, CasesError> {
    ctx.staff(&st.store, &[Admin], "audit.list").await?;
    let (p, n) = paging(&q)?;
    Ok(Json(
        st.store
            .list_audit(
                q.get("action")
                    .map(String::as_str)
                    .filter(|s| !s.is_empty()),
                p,
                n,
            )
            .await?,
    ))
}

async fn fallback() -> CasesError {
    CasesError::NotFound("endpoint".into())
}

/// The case service's routes, all under `/api`, with state applied. Mount it as is
/// (`app.merge(fengqiao_cases::router(state))`). Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so the audit log gets client
/// addresses.
pub fn router(state: CasesState) -> Router {
    Router::new()
        .route("/api/openapi.json", get(openapi_json))
        .route("/api/auth/login", post(login))
        .route("/api/auth/logout", post(logout))
        .route("/api/auth/me", get(me))
        .route("/api/users", get(list_users).post(create_user))
        .route("/api/users/{id}", axum::routing::patch(update_user))
        .route("/api/orgs", get(list_orgs).post(create_org))
        .route("/api/orgs/{id}", axum::routing::patch(update_org))
        .route("/api/mediators", get(list_mediators).post(create_mediator))
        .route("/api/mediators/{id}", axum::routing::patch(update_mediator))
        .route("/api/disputes", get(list_disputes).post(register))
        .route("/api/disputes/{id}", get(get_dispute))
        .route("/api/disputes/{id}/triage", post(triage))
        .route("/api/disputes/{id}/reroute", post(reroute))
        .route("/api/disputes/{id}/accept", post(accept))
        .route(
            "/api/disputes/{id}/confirm-assignment",
            post(confirm_assignment),
        )
        .route("/api/disputes/{id}/start", post(start))
        .route("/api/disputes/{id}/extend", post(extend))
        .route(
            "/api/disputes/{id}/agreement",
            post(agree).get(get_agreement),
        )
        .route("/api/disputes/{id}/signatures", post(sign))
        .route("/api/disputes/{id}/fail", post(fail))
        .route("/api/disputes/{id}/withdraw", post(withdraw))
        .route(
            "/api/disputes/{id}/confirmation/apply",
            post(apply_confirmation),
        )
        .route(
            "/api/disputes/{id}/confirmation/accept",
            post(accept_confirmation),
        )
        .route("/api/disputes/{id}/confirmation/ruling", post(ruling))
        .route(
            "/api/disputes/{id}/parties/{party_id}/identity",
            get(identity),
        )
        .route("/api/disputes/{id}/export", get(export))
        .route("/api/disputes/{id}/sessions", post(schedule))
        .route("/api/disputes/{id}/sessions/{sid}", get(get_session))
        .route(
            "/api/disputes/{id}/sessions/{sid}/attendance",
            post(attendance),
        )
        .route(
            "/api/disputes/{id}/sessions/{sid}/recordings",
            post(add_recording),
        )
        .route("/api/recordings/{rid}/file", get(recording_file))
        .route("/api/party/session", get(party_session))
        .route("/api/party/consent", post(consent))
        .route("/api/deadlines", get(deadlines))
        .route("/api/reports/kpi", get(kpi))
        .route("/api/trainings", get(list_trainings).post(create_training))
        .route("/api/outbox", get(outbox))
        .route("/api/audit", get(audit_log))
        .fallback(fallback)
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        name: String,
        n: i64,
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        x: String,
    }

    fn field(r: Result<T, CasesError>) -> String {
        match r.unwrap_err() {
            CasesError::Validation { field, .. } => field,
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(field(parse_json(br#"{"name": 5, "n": 1}"#)), "name");
        assert_eq!(field(parse_json(br#"{"name": "a"}"#)), "n");
        assert_eq!(
            field(parse_json(br#"{"name": "a", "n": 1, "zz": 2}"#)),
            "zz"
        );
        assert_eq!(
            field(parse_json(br#"{"name": "a", "n": 1, "inner": {"x": 3}}"#)),
            "inner.x"
        );
        assert_eq!(
            field(parse_json(b"{\"name\": \"\xff\xfe\", \"n\": 1}")),
            "name"
        );
        assert_eq!(field(parse_json(b"not json")), "body");
        assert_eq!(field(parse_json(br#"{"name": "a", "n": 1} x"#)), "body");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100).unwrap(), None);
        assert_eq!(parse_range(Some("bytes=0-9"), 100).unwrap(), Some((0, 9)));
        assert_eq!(parse_range(Some("bytes=90-"), 100).unwrap(), Some((90, 99)));
        assert_eq!(parse_range(Some("bytes=-10"), 100).unwrap(), Some((90, 99)));
        assert_eq!(
            parse_range(Some("bytes=50-500"), 100).unwrap(),
            Some((50, 99))
        );
        assert!(parse_range(Some("bytes=100-"), 100).is_err());
        assert!(parse_range(Some("bytes=9-3"), 100).is_err());
    }
}
