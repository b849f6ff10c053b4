//! The authorisation matrix: every endpoint × every role (plus anonymous callers and
//! an invite holder), out-of-scope staff, and a party reaching for another case — on
//! SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use fengqiao_cases::openapi::ENDPOINTS;
use serde_json::{json, Value};

dual!(
    every_endpoint_by_every_role,
    out_of_scope_staff_and_foreign_party_tokens_are_refused
);

struct Fixture {
    d: District,
    id: i64,
    other: i64,
    sid: i64,
    other_sid: i64,
    rid: i64,
    party_id: i64,
    party_token: String,
}

async fn fixture(env: &Env) -> Fixture {
    let d = seed(env).await;
    let id = env.in_mediation(&d, "matrix").await;
    let other = env.in_mediation(&d, "other").await;
    let mut sids = Vec::new();
    let mut token = String::new();
    for case in [id, other] {
        let s = env.ok(env
            .post(
                &format!("/api/disputes/{case}/sessions"),
                &d.mediator_a,
                json!({"scheduled_at": "2025-03-01T10:00:00+08:00", "duration_minutes": 60}),
            )
            .await);
        sids.push(s["session"]["id"].as_i64().unwrap());
        if case == id {
            let url = s["invites"][1]["url"].as_str().unwrap();
            token = url.rsplit("/join/").next().unwrap().to_owned();
        }
    }
    std::fs::create_dir_all(env.dir.path().join("sessions")).unwrap();
    std::fs::write(env.dir.path().join("sessions/m.mp4"), b"0123456789").unwrap();
    let rec = env.ok(
        env.post(
            &format!("/api/disputes/{id}/sessions/{}/recordings", sids[0]),
            &d.mediator_a,
            json!({"file_path": "m.mp4", "manifest_path": "m.json", "integrity_sha256": fengqiao_cases::validate::sha256(b"0123456789"),
                   "media_type": "video/mp4", "started_at": "2025-03-01T10:00:00+08:00", "ended_at": "2025-03-01T10:30:00+08:00"}),
        )
        .await,
    );
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.admin).await);
    let party_id = detail["parties"][0]["id"].as_i64().unwrap();
    Fixture {
        id,
        other,
        sid: sids[0],
        other_sid: sids[1],
        rid: rec["id"].as_i64().unwrap(),
        party_id,
        party_token: token,
        d,
    }
}

fn fill(path: &str, f: &Fixture) -> String {
    let id = if path.starts_with("/api/orgs/") {
        f.d.org_a
    } else if path.starts_with("/api/mediators/") {
        f.d.med_a
    } else {
        f.id
    };
    path.replace("{id}", &id.to_string())
        .replace("{sid}", &f.sid.to_string())
        .replace("{rid}", &f.rid.to_string())
        .replace("{party_id}", &f.party_id.to_string())
}

fn body(method: &str, path: &str, f: &Fixture, n: usize) -> Option<Value> {
    if method == "GET" {
        return None;
    }
    let tail = path.rsplit('/').next().unwrap();
    Some(match (path, tail) {
        ("/api/auth/login", _) => json!({"username": "judge", "password": PW}),
        ("/api/users", _) => {
            json!({"username": format!("user{n}"), "display_name": "U", "role": "clerk", "password": "long-enough-pw"})
        }
        ("/api/orgs", _) => json!({"name": format!("Org {n}"), "kind": "lawyer", "district": "D"}),
        ("/api/mediators", _) => json!({"org_id": f.d.org_a, "name": "M"}),
        ("/api/disputes", _) => new_dispute("matrix"),
        ("/api/trainings", _) => {
            json!({"held_on": "2025-03-01", "topic": "t", "organiser": "o", "attendance": 3})
        }
        ("/api/party/consent", _) => json!({"recording": true}),
        (p, _) if p.starts_with("/api/orgs/") => json!({"online": true}),
        (p, _) if p.starts_with("/api/mediators/") => json!({"status": "active"}),
        (_, "triage") | (_, "reroute") => json!({"org_id": f.d.org_b, "reason": "r"}),
        (_, "accept") if !path.contains("confirmation") => json!({"mediator_id": f.d.med_a}),
        (_, "extend") => json!({"days": 1, "reason": "r", "parties_consent": true}),
        (_, "agreement") => json!({"kind": "text", "filename": "a.txt", "text": "t"}),
        (_, "signatures") => json!({"party_id": f.party_id, "method": "m"}),
        (_, "fail") | (_, "withdraw") => json!({"reason": "r"}),
        (_, "ruling") => json!({"outcome": "confirmed", "note": "n"}),
        (_, "sessions") => {
            json!({"scheduled_at": "2025-03-02T10:00:00+08:00", "duration_minutes": 30})
        }
        (_, "attendance") => json!({"participant_id": 0}),
        (_, "recordings") => {
            json!({"file_path": "m.mp4", "manifest_path": "m.json", "integrity_sha256": "0".repeat(64),
                                    "media_type": "video/mp4", "started_at": "2025-03-01T10:00:00+08:00", "ended_at": "2025-03-01T10:30:00+08:00"})
        }
        _ => json!({}),
    })
}

async fn every_endpoint_by_every_role(db: Db) {
    let Some(env) = env(db).await else { return };
    let f = fixture(&env).await;
    let d = &f.d;
    let principals: Vec<(&str, Option<String>)> = vec![
        ("anonymous", None),
        ("admin", Some(d.admin.clone())),
        ("triage", Some(d.triage.clone())),
        ("org_admin", Some(d.orgadmin_a.clone())),
        ("mediator", Some(d.mediator_a.clone())),
        ("judge", Some(d.judge.clone())),
        ("clerk", Some(d.clerk.clone())),
        ("party", Some(f.party_token.clone())),
    ];
    // Logout last: it ends the logins the other rows use.
    let mut endpoints: Vec<_> = ENDPOINTS.iter().collect();
    endpoints.sort_by_key(|e| e.path == "/api/auth/logout");
    let denied_before =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_log WHERE outcome = 'denied'")
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    let (mut checked, mut forbidden) = (0, 0);
    let mut failures = Vec::new();
    for (n, e) in endpoints.iter().enumerate() {
        for (who, token) in &principals {
            let path = fill(e.path, &f);
            let r = env
                .call(
                    e.method,
                    &path,
                    token.as_deref(),
                    body(e.method, e.path, &f, n * 10 + checked),
                )
                .await;
            let allowed = e.roles.contains(&"public") || e.roles.contains(who);
            let ok = if e.roles.contains(&"public") {
                r.status != StatusCode::UNAUTHORIZED && r.status != StatusCode::FORBIDDEN
            } else if token.is_none() {
                r.status == StatusCode::UNAUTHORIZED
            } else if allowed {
                r.status != StatusCode::UNAUTHORIZED
                    && r.status != StatusCode::FORBIDDEN
                    && !r.status.is_server_error()
            } else {
                r.status == StatusCode::FORBIDDEN
            };
            if r.status == StatusCode::FORBIDDEN {
                forbidden += 1;
                assert_eq!(r.code(), "forbidden");
            }
            if !ok {
                failures.push(format!(
                    "{} {} as {who}: {} {}",
                    e.method,
                    e.path,
                    r.status,
                    String::from_utf8_lossy(&r.body)
                ));
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, ENDPOINTS.len() * principals.len());
    // Every refusal is in the audit log.
    let denied_after =
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_log WHERE outcome = 'denied'")
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert_eq!(denied_after - denied_before, forbidden as i64);
    assert!(forbidden > 100, "{forbidden}");
}

async fn out_of_scope_staff_and_foreign_party_tokens_are_refused(db: Db) {
    let Some(env) = env(db).await else { return };
    let f = fixture(&env).await;
    let d = &f.d;
    // Staff of the right role but the wrong organisation or assignment.
    let mut n = 0;
    for e in ENDPOINTS.iter().filter(|e| {
        e.path.contains("{id}") && e.path.starts_with("/api/disputes/") || e.path.contains("{rid}")
    }) {
        for (role, token) in [("org_admin", &d.orgadmin_b), ("mediator", &d.mediator_b)] {
            if !e.roles.contains(&role) {
                continue;
            }
            let r = env
                .call(
                    e.method,
                    &fill(e.path, &f),
                    Some(token),
                    body(e.method, e.path, &f, n),
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::FORBIDDEN,
                "{} {} as other {role}: {}",
                e.method,
                e.path,
                String::from_utf8_lossy(&r.body)
            );
            n += 1;
        }
    }
    assert!(n >= 20, "{n}");
    // The party of one case reaching for the other case's session: 403, audited with
    // the party as actor and the case it reached for.
    let before = env.audit_count("session.read", "denied").await;
    let r = env
        .get(
            &format!("/api/disputes/{}/sessions/{}", f.other, f.other_sid),
            &f.party_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .get(
            &format!("/api/disputes/{}/sessions/{}", f.id, f.other_sid),
            &f.party_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.audit_count("session.read", "denied").await, before + 2);
    let (actor, object): (String, String) =
        sqlx::query_as("SELECT actor, object_id FROM audit_log WHERE action = 'session.read' AND outcome = 'denied' ORDER BY id DESC LIMIT 1")
            .fetch_one(env.store.pool())
            .await
            .unwrap();
    assert!(actor.starts_with("party:"));
    assert_eq!(object, format!("dispute {} session {}", f.id, f.other_sid));
    // ... while its own session opens.
    assert_eq!(
        env.get(
            &format!("/api/disputes/{}/sessions/{}", f.id, f.sid),
            &f.party_token
        )
        .await
        .status,
        StatusCode::OK
    );
    // An invite from another server's key is not even a login: 401.
    let foreign = fengqiao_signaling::invite::InviteKey::from_bytes(&[9u8; 32]).unwrap();
    let mut claims = fengqiao_signaling::invite::InviteClaims {
        tid: "x".into(),
        room: "r".into(),
        pid: "p1".into(),
        name: "n".into(),
        role: fengqiao_signaling::invite::Role::Applicant,
        exp: u64::MAX / 2,
        case_id: Some(f.other.to_string()),
        session_id: Some(f.other_sid.to_string()),
        admitted: false,
    };
    let t = foreign.mint(&claims);
    assert_eq!(
        env.get(
            &format!("/api/disputes/{}/sessions/{}", f.other, f.other_sid),
            &t
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );
    // A validly signed token whose invite id was never issued for that session: 403.
    claims.tid = "not-issued".into();
    let t = env.store.invite_key().mint(&claims);
    assert_eq!(
        env.get(
            &format!("/api/disputes/{}/sessions/{}", f.other, f.other_sid),
            &t
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
}
