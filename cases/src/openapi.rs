//! The endpoint table (who may call what) and the OpenAPI 3 document built from it.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    ResponseBuilder,
};

/// One endpoint of the API.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// HTTP method.
    pub method: &'static str,
    /// Path template (axum syntax, `{id}`).
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Who may call it: `public`, `party` (own session only) or staff role names.
    /// `org_admin` means the admin of the dispute's organisation, `mediator` the
    /// assigned mediator.
    pub roles: &'static [&'static str],
    /// Request body schema, if any.
    pub request: Option<&'static str>,
    /// Response schema, if any.
    pub response: Option<&'static str>,
}

const STAFF: &[&str] = &["admin", "triage", "org_admin", "mediator", "judge", "clerk"];

macro_rules! ep {
    ($m:literal, $p:literal, $s:literal, $r:expr, $req:expr, $resp:expr) => {
        Endpoint {
            method: $m,
            path: $p,
            summary: $s,
            roles: $r,
            request: $req,
            response: $resp,
        }
    };
}

/// Every endpoint with the roles allowed to call it.
pub const ENDPOINTS: &[Endpoint] = &[
    ep!(
        "GET",
        "/api/openapi.json",
        "This OpenAPI document",
        &["public"],
        None,
        None
    ),
    ep!(
        "POST",
        "/api/auth/login",
        "Log in; sets the fq_session cookie",
        &["public"],
        Some("LoginBody"),
        Some("StaffUser")
    ),
    ep!("POST", "/api/auth/logout", "Log out", STAFF, None, None),
    ep!(
        "GET",
        "/api/auth/me",
        "Who am I (staff or invite holder)",
        &[
            "admin",
            "triage",
            "org_admin",
            "mediator",
            "judge",
            "clerk",
            "party"
        ],
        None,
        None
    ),
    ep!(
        "GET",
        "/api/users",
        "Staff accounts (paginated)",
        &["admin"],
        None,
        None
    ),
    ep!(
        "POST",
        "/api/users",
        "Create a staff account",
        &["admin"],
        Some("NewUser"),
        Some("User")
    ),
    ep!(
        "PATCH",
        "/api/users/{id}",
        "Change a staff account (name, role, organisation, active, password)",
        &["admin"],
        Some("UserPatch"),
        Some("User")
    ),
    ep!("GET", "/api/orgs", "Organisations", STAFF, None, None),
    ep!(
        "POST",
        "/api/orgs",
        "Register an organisation",
        &["admin"],
        Some("NewOrganisation"),
        Some("Organisation")
    ),
    ep!(
        "PATCH",
        "/api/orgs/{id}",
        "Change an organisation (name, kind, district, street, online)",
        &["admin"],
        Some("OrganisationPatch"),
        Some("Organisation")
    ),
    ep!(
        "GET",
        "/api/mediators",
        "The roster (?org_id=)",
        STAFF,
        None,
        None
    ),
    ep!(
        "POST",
        "/api/mediators",
        "Add a mediator to the roster",
        &["admin"],
        Some("NewMediator"),
        Some("Mediator")
    ),
    ep!(
        "PATCH",
        "/api/mediators/{id}",
        "Change a roster entry",
        &["admin"],
        Some("MediatorPatch"),
        Some("Mediator")
    ),
    ep!(
        "GET",
        "/api/disputes",
        "Disputes in scope (?status=&org_id=&page=&per_page=)",
        STAFF,
        None,
        None
    ),
    ep!(
        "POST",
        "/api/disputes",
        "Register a dispute (登记)",
        &["triage"],
        Some("NewDispute"),
        Some("DisputeDetail")
    ),
    ep!(
        "GET",
        "/api/disputes/{id}",
        "A dispute with parties (masked), history, sessions, recordings, deadlines",
        STAFF,
        None,
        Some("DisputeDetail")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/triage",
        "Triage to an organisation (分流)",
        &["triage"],
        Some("OrgChoice"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/reroute",
        "Re-route to another organisation",
        &["org_admin"],
        Some("OrgChoice"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/accept",
        "Accept and assign a mediator (受理)",
        &["org_admin"],
        Some("AcceptBody"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/confirm-assignment",
        "The mediator accepts the assignment",
        &["mediator"],
        None,
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/start",
        "Start mediation (调解中)",
        &["mediator"],
        None,
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/extend",
        "Extend the mediation period with the parties' consent",
        &["mediator"],
        Some("ExtendBody"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/agreement",
        "Agreement reached: upload it (调解成功)",
        &["mediator"],
        Some("AgreementUpload"),
        Some("DisputeRow")
    ),
    ep!(
        "GET",
        "/api/disputes/{id}/agreement",
        "Download the agreement (audited)",
        &["mediator", "org_admin", "judge", "clerk"],
        None,
        None
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/signatures",
        "Record a party's signature",
        &["mediator"],
        Some("SignBody"),
        Some("Signature")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/fail",
        "Mediation failed, with reason (调解不成)",
        &["mediator"],
        Some("ReasonBody"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/withdraw",
        "The parties withdraw",
        &["triage", "org_admin", "mediator"],
        Some("ReasonBody"),
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/confirmation/apply",
        "Judicial confirmation applied for",
        &["mediator", "clerk"],
        None,
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/confirmation/accept",
        "The court accepts the application",
        &["judge"],
        None,
        Some("DisputeRow")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/confirmation/ruling",
        "The court rules: confirmed or rejected",
        &["judge"],
        Some("RulingBody"),
        Some("DisputeRow")
    ),
    ep!(
        "GET",
        "/api/disputes/{id}/parties/{party_id}/identity",
        "A party's full identity (audited)",
        &["mediator", "judge"],
        None,
        Some("PartyIdentity")
    ),
    ep!(
        "GET",
        "/api/disputes/{id}/export",
        "Export the file (audited)",
        &["clerk", "judge"],
        None,
        Some("DisputeExport")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/sessions",
        "Schedule a session and mint invite links",
        &["mediator"],
        Some("ScheduleSession"),
        Some("ScheduledSession")
    ),
    ep!(
        "GET",
        "/api/disputes/{id}/sessions/{sid}",
        "A session with participants",
        &[
            "admin",
            "triage",
            "org_admin",
            "mediator",
            "judge",
            "clerk",
            "party"
        ],
        None,
        Some("SessionView")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/sessions/{sid}/attendance",
        "Attendance and identity check",
        &["mediator"],
        Some("Attendance"),
        Some("SessionView")
    ),
    ep!(
        "POST",
        "/api/disputes/{id}/sessions/{sid}/recordings",
        "Register a recording (manifest, integrity value)",
        &["mediator", "admin"],
        Some("NewRecording"),
        Some("Recording")
    ),
    ep!(
        "GET",
        "/api/recordings/{rid}/file",
        "Play a recording; supports Range (audited)",
        &["mediator", "judge", "clerk"],
        None,
        None
    ),
    ep!(
        "GET",
        "/api/party/session",
        "The invite holder's own session",
        &["party"],
        None,
        Some("SessionView")
    ),
    ep!(
        "POST",
        "/api/party/consent",
        "The invite holder consents to or refuses recording",
        &["party"],
        Some("ConsentBody"),
        None
    ),
    ep!(
        "GET",
        "/api/deadlines",
        "Pending deadlines in scope (?overdue=true)",
        STAFF,
        None,
        None
    ),
    ep!(
        "GET",
        "/api/reports/kpi",
        "District KPIs (?from=&to=&org=)",
        &["admin", "triage", "org_admin"],
        None,
        Some("KpiReport")
    ),
    ep!(
        "GET",
        "/api/trainings",
        "Trainings (KPI 6)",
        STAFF,
        None,
        None
    ),
    ep!(
        "POST",
        "/api/trainings",
        "Log a training",
        &["admin", "org_admin"],
        Some("NewTraining"),
        Some("Training")
    ),
    ep!(
        "GET",
        "/api/outbox",
        "Notification outbox (?pending=true)",
        &["admin"],
        None,
        None
    ),
    ep!(
        "GET",
        "/api/audit",
        "Audit log (?action=)",
        &["admin"],
        None,
        None
    ),
];

/// The OpenAPI 3 document of the case API.
pub fn openapi() -> OpenApi {
    use crate::api::*;
    use crate::model::*;
    use crate::service::*;
    let components = ComponentsBuilder::new()
        .schema_from::<crate::error::ErrorBody>()
        .schema_from::<LoginBody>()
        .schema_from::<StaffUser>()
        .schema_from::<StaffRole>()
        .schema_from::<NewUser>()
        .schema_from::<User>()
        .schema_from::<NewOrganisation>()
        .schema_from::<OrganisationPatch>()
        .schema_from::<UserPatch>()
        .schema_from::<Organisation>()
        .schema_from::<NewMediator>()
        .schema_from::<MediatorPatch>()
        .schema_from::<Mediator>()
        .schema_from::<NewParty>()
        .schema_from::<NewDispute>()
        .schema_from::<DisputeRow>()
        .schema_from::<DisputeSummary>()
        .schema_from::<Party>()
        .schema_from::<DisputeEvent>()
        .schema_from::<MediationSession>()
        .schema_from::<Participant>()
        .schema_from::<Recording>()
        .schema_from::<AgreementMeta>()
        .schema_from::<Signature>()
        .schema_from::<DisputeDetail>()
        .schema_from::<crate::deadlines::Deadline>()
        .schema_from::<crate::deadlines::DeadlineKind>()
        .schema_from::<crate::deadlines::DeadlineState>()
        .schema_from::<OrgChoice>()
        .schema_from::<AcceptBody>()
        .schema_from::<ReasonBody>()
        .schema_from::<ExtendBody>()
        .schema_from::<SignBody>()
        .schema_from::<RulingBody>()
        .schema_from::<ConsentBody>()
        .schema_from::<AgreementUpload>()
        .schema_from::<PartyIdentity>()
        .schema_from::<DisputeExport>()
        .schema_from::<ScheduleSession>()
        .schema_from::<InviteLink>()
        .schema_from::<ScheduledSession>()
        .schema_from::<SessionView>()
        .schema_from::<Attendance>()
        .schema_from::<NewRecording>()
        .schema_from::<NewTraining>()
        .schema_from::<Training>()
        .schema_from::<OutboxItem>()
        .schema_from::<AuditEntry>()
        .schema_from::<crate::kpi::Kpi>()
        .schema_from::<crate::kpi::KpiReport>()
        .build();
    let mut paths = PathsBuilder::new();
    for e in ENDPOINTS {
        let method = match e.method {
            "GET" => HttpMethod::Get,
            "POST" => HttpMethod::Post,
            "PATCH" => HttpMethod::Patch,
            "PUT" => HttpMethod::Put,
            _ => HttpMethod::Delete,
        };
        let err = |d: &str| {
            ResponseBuilder::new()
                .description(d)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let ok = match e.response {
            Some(s) => ResponseBuilder::new()
                .description("success")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(s)))
                        .build(),
                )
                .build(),
            None => ResponseBuilder::new().description("success").build(),
        };
        let mut op = OperationBuilder::new()
            .summary(Some(e.summary))
            .description(Some(format!("Allowed: {}", e.roles.join(", "))))
            .operation_id(Some(format!("{} {}", e.method, e.path)))
            .response("200", ok)
            .response("401", err("no or invalid credentials"))
            .response("403", err("not allowed for this role or scope (audited)"))
            .response("404", err("not found"))
            .response(
                "409",
                err("illegal lifecycle transition or conflict, with the reason"),
            )
            .response("422", err("validation error naming the field"));
        if let Some(r) = e.request {
            op = op.request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(r)))
                            .build(),
                    )
                    .required(Some(utoipa::openapi::Required::True))
                    .build(),
            ));
        }
        for (i, seg) in e.path.split('/').enumerate() {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let _ = i;
                op = op.parameter(
                    utoipa::openapi::path::ParameterBuilder::new()
                        .name(name)
                        .parameter_in(utoipa::openapi::path::ParameterIn::Path)
                        .required(utoipa::openapi::Required::True)
                        .schema(Some(
                            utoipa::openapi::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::schema::Type::Integer),
                        )),
                );
            }
        }
        paths = paths.path(e.path, PathItem::new(method, op.build()));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Fengqiao case service")
                .version(env!("CARGO_PKG_VERSION"))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .build()
}
