//! Staff accounts, organisations and the roster edited by an admin (issue 8), and the
//! audit of every dispute view — on SQLite and PostgreSQL.
//!
//! - `PATCH /api/users/{id}`: each field, the field-named 4xx errors (as for creating
//!   an account), deactivation (login refused with `account_deactivated`, the account's
//!   open login tokens 401 at once), no self-deactivation or self-demotion, the last
//!   active admin kept, a new password ending the old logins, 403 for other roles;
//! - `PATCH /api/orgs/{id}` (name, kind, district, street) and `PATCH
//!   /api/mediators/{id}` (name, organisation);
//! - `GET /api/disputes/{id}` and the staff session detail write audit rows.

mod common;

use axum::http::StatusCode;
use common::*;
use fengqiao_cases::service::UserPatch;
use fengqiao_cases::*;
use serde_json::{json, Value};

dual!(
    patch_user_each_field_and_field_named_errors,
    deactivation_ends_logins_and_refuses_login,
    admins_cannot_remove_themselves_or_the_last_admin,
    orgs_and_mediators_are_edited,
    dispute_and_session_views_are_audited
);

impl Env {
    async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("PATCH", path, Some(token), Some(body)).await
    }
}

/// The id of account `username` (`GET /api/users` as admin).
async fn user_id(env: &Env, admin: &str, username: &str) -> i64 {
    let users = env.ok(env.get("/api/users?per_page=200", admin).await);
    users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == json!(username))
        .unwrap_or_else(|| panic!("no user {username}"))["id"]
        .as_i64()
        .unwrap()
}

fn assert_field(r: &Resp, status: StatusCode, field: &str) {
    assert_eq!(
        (r.status, r.field().as_str()),
        (status, field),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

async fn patch_user_each_field_and_field_named_errors(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let judge = user_id(&env, &d.admin, "judge").await;
    let path = format!("/api/users/{judge}");
    let audits = env.audit_count("user.update", "ok").await;

    // display_name
    let u = env.ok(env.patch(&path, &d.admin, json!({"display_name": "王法官"})).await);
    assert_eq!((u["display_name"].as_str(), u["role"].as_str()), (Some("王法官"), Some("judge")));
    assert_eq!(env.audit_count("user.update", "ok").await, audits + 1);
    let me = env.ok(env.get("/api/auth/me", &d.judge).await);
    assert_eq!(me["user"]["display_name"], json!("王法官"), "the judge's open login sees the new name");
    for (body, field) in [
        (json!({"display_name": ""}), "display_name"),
        (json!({"display_name": "x".repeat(101)}), "display_name"),
        (json!({"display_name": 5}), "display_name"),
        (json!({"role": "boss"}), "role"),
        // A role that needs an organisation, without one.
        (json!({"role": "org_admin"}), "org_id"),
        (json!({"role": "mediator", "org_id": null}), "org_id"),
        // An organisation on a role that has none, or one that does not exist.
        (json!({"org_id": d.org_a}), "org_id"),
        (json!({"role": "org_admin", "org_id": 999_999}), "org_id"),
        (json!({"password": "short"}), "password"),
        (json!({"password": "a\u{0}bcdefghijkl"}), "password"),
        (json!({"active": "no"}), "active"),
        (json!({"username": "renamed"}), "username"),
    ] {
        let r = env.patch(&path, &d.admin, body.clone()).await;
        assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, field);
    }
    assert_eq!(env.audit_count("user.update", "ok").await, audits + 1, "a refused change is not written");
    let r = env.patch("/api/users/999999", &d.admin, json!({"display_name": "x"})).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = env.patch("/api/users/abc", &d.admin, json!({})).await;
    assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "id");

    // role + org_id: the judge becomes an org admin of A, then a clerk (organisation
    // dropped with the role).
    let u = env.ok(env.patch(&path, &d.admin, json!({"role": "org_admin", "org_id": d.org_a})).await);
    assert_eq!((u["role"].as_str(), u["org_id"].as_i64()), (Some("org_admin"), Some(d.org_a)));
    let me = env.ok(env.get("/api/auth/me", &d.judge).await);
    assert_eq!(me["user"]["role"], json!("org_admin"));
    let u = env.ok(env.patch(&path, &d.admin, json!({"role": "clerk"})).await);
    assert_eq!((u["role"].as_str(), u["org_id"].as_i64()), (Some("clerk"), None));

    // A mediator account moved to B: its roster entry follows; made a judge, the
    // roster entry is unlinked; a mediator again, it gets a roster entry.
    let med = user_id(&env, &d.admin, "mediator_a").await;
    let mpath = format!("/api/users/{med}");
    let u = env.ok(env.patch(&mpath, &d.admin, json!({"org_id": d.org_b})).await);
    assert_eq!(u["mediator_id"].as_i64(), Some(d.med_a));
    let m = env.store.get_mediator(d.med_a).await.unwrap().unwrap();
    assert_eq!(m.org_id, d.org_b);
    let u = env.ok(env.patch(&mpath, &d.admin, json!({"role": "judge", "org_id": null})).await);
    assert_eq!((u["mediator_id"].as_i64(), u["org_id"].as_i64()), (None, None));
    assert_eq!(env.store.get_mediator(d.med_a).await.unwrap().unwrap().user_id, None);
    let u = env.ok(env.patch(&mpath, &d.admin, json!({"role": "mediator", "org_id": d.org_c})).await);
    let new_m = u["mediator_id"].as_i64().expect("a new roster entry");
    assert_ne!(new_m, d.med_a);
    assert_eq!(env.store.get_mediator(new_m).await.unwrap().unwrap().org_id, d.org_c);

    // Other roles may not; no login is 401.
    for t in [&d.triage, &d.orgadmin_a, &d.mediator_b, &d.clerk] {
        let r = env.patch(&path, t, json!({"display_name": "x"})).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", String::from_utf8_lossy(&r.body));
    }
    assert!(env.audit_count("user.update", "denied").await >= 4);
    let r = env.call("PATCH", &path, None, Some(json!({"display_name": "x"}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

async fn deactivation_ends_logins_and_refuses_login(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let clerk = user_id(&env, &d.admin, "clerk").await;
    let path = format!("/api/users/{clerk}");
    // A second open login of the same account.
    let second = env.login("clerk", PW).await;
    env.ok(env.get("/api/disputes", &second).await);

    let u = env.ok(env.patch(&path, &d.admin, json!({"active": false})).await);
    assert_eq!(u["active"], json!(false));
    for t in [&d.clerk, &second] {
        let r = env.get("/api/disputes", t).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "an open login of a deactivated account");
    }
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM login_sessions WHERE user_id = $1")
        .bind(clerk)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert_eq!(n, 0, "login sessions of a deactivated account are deleted");
    let login = |pw: &'static str| env.call("POST", "/api/auth/login", None, Some(json!({"username": "clerk", "password": pw})));
    let r = login(PW).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::FORBIDDEN, "account_deactivated"));
    assert!(r.headers.get("set-cookie").is_none());
    let r = login("wrong-password-here").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::UNAUTHORIZED, "unauthenticated"), "a wrong password says nothing of the account");
    assert!(env.audit_count("auth.login", "denied").await >= 2);
    let users = env.ok(env.get("/api/users?per_page=200", &d.admin).await);
    let row = users["items"].as_array().unwrap().iter().find(|u| u["id"] == json!(clerk)).cloned().unwrap();
    assert_eq!(row["active"], json!(false));
    let detail: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'user.update' ORDER BY id DESC LIMIT 1")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert!(detail.contains("deactivated") && detail.contains("2 login session"), "audit detail: {detail}");

    // Reactivated: logs in again.
    env.ok(env.patch(&path, &d.admin, json!({"active": true})).await);
    let t = env.login("clerk", PW).await;
    env.ok(env.get("/api/disputes", &t).await);

    // A new password ends the open logins; only the new one works.
    env.ok(env.patch(&path, &d.admin, json!({"password": "a-brand-new-password"})).await);
    assert_eq!(env.get("/api/disputes", &t).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(login(PW).await.status, StatusCode::UNAUTHORIZED);
    env.login("clerk", "a-brand-new-password").await;
}

async fn admins_cannot_remove_themselves_or_the_last_admin(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let admin = user_id(&env, &d.admin, "admin").await;
    let path = format!("/api/users/{admin}");
    let r = env.patch(&path, &d.admin, json!({"active": false})).await;
    assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "active");
    let r = env.patch(&path, &d.admin, json!({"role": "judge"})).await;
    assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "role");
    env.ok(env.get("/api/users", &d.admin).await);
    // Renaming oneself is fine.
    env.ok(env.patch(&path, &d.admin, json!({"display_name": "总管理员"})).await);

    // Through the store (no API caller can reach it: an admin caller is itself an
    // active admin): the last active admin is kept, by deactivation or demotion.
    let sys = Actor::system();
    let off = UserPatch { active: Some(false), ..UserPatch::default() };
    match env.store.update_user(&sys, 0, admin, &off).await {
        Err(CasesError::Conflict { field: Some(f), .. }) => assert_eq!(f, "active"),
        other => panic!("last admin deactivated: {other:?}"),
    }
    let demote = UserPatch { role: Some("clerk".into()), ..UserPatch::default() };
    match env.store.update_user(&sys, 0, admin, &demote).await {
        Err(CasesError::Conflict { field: Some(f), .. }) => assert_eq!(f, "role"),
        other => panic!("last admin demoted: {other:?}"),
    }
    assert!(env.store.get_user(admin).await.unwrap().unwrap().active, "the refused change was rolled back");

    // With a second admin, one admin may deactivate the other; that one's login ends.
    let r = env.post("/api/users", &d.admin, json!({"username": "admin2", "display_name": "第二管理员", "role": "admin", "password": "second-admin-pw"})).await;
    let admin2 = env.ok(r)["id"].as_i64().unwrap();
    let t2 = env.login("admin2", "second-admin-pw").await;
    env.ok(env.patch(&path, &t2, json!({"active": false})).await);
    assert_eq!(env.get("/api/users", &d.admin).await.status, StatusCode::UNAUTHORIZED);
    // admin2 is now the last active admin and cannot leave.
    let r = env.patch(&format!("/api/users/{admin2}"), &t2, json!({"active": false})).await;
    assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, "active");
    match env.store.update_user(&sys, 0, admin2, &off).await {
        Err(CasesError::Conflict { field: Some(f), .. }) => assert_eq!(f, "active"),
        other => panic!("last admin deactivated: {other:?}"),
    }
}

async fn orgs_and_mediators_are_edited(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let path = format!("/api/orgs/{}", d.org_c);
    let o = env.ok(env.patch(&path, &d.admin, json!({"name": "C 物业调解中心", "kind": "special_invited", "district": "枫桥镇", "street": "枫源路 1 号"})).await);
    assert_eq!(
        (o["name"].as_str(), o["kind"].as_str(), o["district"].as_str(), o["street"].as_str(), o["online"].as_i64()),
        (Some("C 物业调解中心"), Some("special_invited"), Some("枫桥镇"), Some("枫源路 1 号"), Some(0))
    );
    let o = env.ok(env.patch(&path, &d.admin, json!({"online": true})).await);
    assert_eq!((o["name"].as_str(), o["online"].as_i64()), (Some("C 物业调解中心"), Some(1)), "absent fields stay");
    for (body, status, field) in [
        (json!({"name": ""}), StatusCode::UNPROCESSABLE_ENTITY, "name"),
        (json!({"name": "A 调委会"}), StatusCode::CONFLICT, "name"),
        (json!({"kind": "bank"}), StatusCode::UNPROCESSABLE_ENTITY, "kind"),
        (json!({"district": " "}), StatusCode::UNPROCESSABLE_ENTITY, "district"),
        (json!({"street": "x".repeat(101)}), StatusCode::UNPROCESSABLE_ENTITY, "street"),
    ] {
        let r = env.patch(&path, &d.admin, body).await;
        assert_field(&r, status, field);
    }
    let r = env.patch(&path, &d.triage, json!({"name": "x"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(env.audit_count("org.update", "ok").await >= 2);

    // The mediator of A (with a login) renamed and moved to B: the account follows.
    let mpath = format!("/api/mediators/{}", d.med_a);
    let m = env.ok(env.patch(&mpath, &d.admin, json!({"name": "调解员甲", "org_id": d.org_b})).await);
    assert_eq!((m["name"].as_str(), m["org_id"].as_i64(), m["status"].as_str()), (Some("调解员甲"), Some(d.org_b), Some("active")));
    let me = env.ok(env.get("/api/auth/me", &d.mediator_a).await);
    assert_eq!(me["user"]["org_id"].as_i64(), Some(d.org_b));
    for (body, field) in [(json!({"name": ""}), "name"), (json!({"org_id": 999_999}), "org_id"), (json!({"org_id": "B"}), "org_id"), (json!({"status": "gone"}), "status")] {
        let r = env.patch(&mpath, &d.admin, body).await;
        assert_field(&r, StatusCode::UNPROCESSABLE_ENTITY, field);
    }
    let detail: String = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'mediator.update' ORDER BY id DESC LIMIT 1")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert!(detail.contains("name=调解员甲") && detail.contains(&format!("org_id={}", d.org_b)), "audit detail: {detail}");
}

async fn dispute_and_session_views_are_audited(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let id = env.in_mediation(&d, "audited views").await;
    let s = env.ok(env.post(&format!("/api/disputes/{id}/sessions"), &d.mediator_a, json!({"scheduled_at": "2025-03-01T10:00:00+08:00", "duration_minutes": 60})).await);
    let sid = s["session"]["id"].as_i64().unwrap();
    let before = env.audit_count("dispute.view", "ok").await;
    env.ok(env.get(&format!("/api/disputes/{id}"), &d.judge).await);
    assert_eq!(env.audit_count("dispute.view", "ok").await, before + 1);
    let (actor, role, object, outcome): (String, String, String, String) = sqlx::query_as(
        "SELECT actor, actor_role, object_id, outcome FROM audit_log WHERE action = 'dispute.view' ORDER BY id DESC LIMIT 1",
    )
    .fetch_one(env.store.pool())
    .await
    .unwrap();
    assert_eq!((actor.as_str(), role.as_str(), object, outcome.as_str()), ("judge", "judge", id.to_string(), "ok"));
    // Out of scope: refused (audited as denied), no view written.
    let r = env.get(&format!("/api/disputes/{id}"), &d.mediator_b).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(env.audit_count("dispute.view", "ok").await, before + 1);
    // The staff session detail.
    let before = env.audit_count("session.read", "ok").await;
    env.ok(env.get(&format!("/api/disputes/{id}/sessions/{sid}"), &d.mediator_a).await);
    assert_eq!(env.audit_count("session.read", "ok").await, before + 1);
}
