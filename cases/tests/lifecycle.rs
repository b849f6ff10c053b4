//! Lifecycle, sessions, recordings, auth basics, bad input, concurrency — on SQLite and
//! PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

dual!(
    lifecycle_legal_paths,
    lifecycle_illegal_transitions,
    concurrent_accept_exactly_one_wins,
    bad_input_names_the_field_and_writes_nothing,
    sessions_invites_recordings,
    login_cookies_and_401_vs_403,
    masking_identity_and_export_are_audited,
    audit_log_is_append_only,
    demo_data_has_every_state,
    pagination_and_filters,
);

async fn status_of(env: &Env, d: &District, id: i64) -> String {
    env.ok(env.get(&format!("/api/disputes/{id}"), &d.admin).await)["dispute"]["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn lifecycle_legal_paths(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    // registered → triaged (B) → re-routed to A → accepted → assignment confirmed →
    // in mediation → extended → agreement → signatures → applied → accepted → confirmed.
    let id = env.register(&d, "邻里漏水纠纷").await;
    assert_eq!(status_of(&env, &d, id).await, "registered");
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_b}),
        )
        .await);
    env.clock.advance(3600);
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/reroute"),
            &d.orgadmin_b,
            json!({"org_id": d.org_a, "reason": "属地管辖"}),
        )
        .await);
    assert_eq!(r["status"], "triaged");
    assert_eq!(r["org_id"], d.org_a);
    env.clock.advance(3600);
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": d.med_a}),
        )
        .await);
    assert_eq!(r["status"], "accepted");
    assert_eq!(r["mediator_id"], d.med_a);
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/confirm-assignment"),
            &d.mediator_a,
            json!({}),
        )
        .await);
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/start"),
            &d.mediator_a,
            json!({}),
        )
        .await);
    assert_eq!(r["status"], "in_mediation");
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/extend"),
            &d.mediator_a,
            json!({"days": 10, "reason": "双方同意延长", "parties_consent": true}),
        )
        .await);
    assert_eq!(r["extension_days"], 10);
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/agreement"),
            &d.mediator_a,
            json!({"kind": "text", "filename": "协议.txt", "text": "甲方赔偿乙方 500 元。"}),
        )
        .await);
    assert_eq!(r["status"], "agreement_reached");
    assert_eq!(r["outcome"], "agreement");
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.mediator_a).await);
    let sha = detail["agreement"]["sha256"].as_str().unwrap().to_owned();
    assert_eq!(
        sha,
        fengqiao_cases::validate::sha256("甲方赔偿乙方 500 元。".as_bytes())
    );
    // The agreement download carries the same hash.
    let doc = env
        .get(&format!("/api/disputes/{id}/agreement"), &d.judge)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.headers["x-content-sha256"], sha.as_str());
    // Applying before both parties signed is refused.
    let r = env
        .post(
            &format!("/api/disputes/{id}/confirmation/apply"),
            &d.mediator_a,
            json!({}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.json()["message"].as_str().unwrap().contains("signature"),
        "{:?}",
        r.json()
    );
    let parties = detail["parties"].as_array().unwrap().clone();
    for p in parties.iter().filter(|p| p["kind"] != "agent") {
        let r = env
            .post(
                &format!("/api/disputes/{id}/signatures"),
                &d.mediator_a,
                json!({"party_id": p["id"], "method": "视频中出示身份证"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    }
    // Signing twice is a conflict naming the field; an agent cannot sign.
    let p0 = parties[0]["id"].clone();
    let r = env
        .post(
            &format!("/api/disputes/{id}/signatures"),
            &d.mediator_a,
            json!({"party_id": p0, "method": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::CONFLICT, "party_id".into())
    );
    let agent = parties.iter().find(|p| p["kind"] == "agent").unwrap()["id"].clone();
    let r = env
        .post(
            &format!("/api/disputes/{id}/signatures"),
            &d.mediator_a,
            json!({"party_id": agent, "method": "x"}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "party_id".into())
    );
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/confirmation/apply"),
                &d.clerk,
                json!({})
            )
            .await)["status"],
        "confirmation_applied"
    );
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/confirmation/accept"),
                &d.judge,
                json!({})
            )
            .await)["status"],
        "confirmation_accepted"
    );
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/confirmation/ruling"),
            &d.judge,
            json!({"outcome": "confirmed", "note": "协议有效"}),
        )
        .await);
    assert_eq!(r["status"], "confirmed");
    assert_eq!(r["ruling_note"], "协议有效");
    // Every step is timestamped in the history and audited.
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.admin).await);
    let actions: Vec<&str> = detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "register",
            "triage",
            "reroute",
            "accept",
            "confirm_assignment",
            "start",
            "extend",
            "agree",
            "apply_confirmation",
            "accept_confirmation",
            "confirm"
        ]
    );
    assert!(detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["at"].as_i64().unwrap() >= T0));
    for a in [
        "dispute.register",
        "dispute.triage",
        "dispute.reroute",
        "dispute.accept",
        "dispute.start",
        "dispute.agree",
        "dispute.confirm",
    ] {
        assert_eq!(env.audit_count(a, "ok").await, 1, "{a}");
    }

    // Rejected at the court.
    let id = env.in_mediation(&d, "rejected path").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/agreement"),
            &d.mediator_a,
            json!({"kind": "pdf", "filename": "a.pdf", "content_base64": "JVBERi0xLjQKJcfsj6IK"}),
        )
        .await);
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.mediator_a).await);
    for p in detail["parties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "agent")
    {
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/signatures"),
                &d.mediator_a,
                json!({"party_id": p["id"], "method": "e_signature"}),
            )
            .await);
    }
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/confirmation/apply"),
            &d.mediator_a,
            json!({}),
        )
        .await);
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/confirmation/accept"),
            &d.judge,
            json!({}),
        )
        .await);
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/confirmation/ruling"),
            &d.judge,
            json!({"outcome": "rejected", "note": "违反法律规定", "extended": true}),
        )
        .await);
    assert_eq!(
        (r["status"].as_str(), r["ruling_extended"].as_i64()),
        (Some("rejected"), Some(1))
    );

    // Failure with a reason.
    let id = env.in_mediation(&d, "fail path").await;
    let r = env.ok(env
        .post(
            &format!("/api/disputes/{id}/fail"),
            &d.mediator_a,
            json!({"reason": "分歧过大"}),
        )
        .await);
    assert_eq!(
        (r["status"].as_str(), r["failure_reason"].as_str()),
        (Some("failed"), Some("分歧过大"))
    );

    // Withdrawal from each state that allows it.
    let id = env.register(&d, "withdraw registered").await;
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/withdraw"),
                &d.triage,
                json!({"reason": "撤回"})
            )
            .await)["status"],
        "withdrawn"
    );
    let id = env.register(&d, "withdraw triaged").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_a}),
        )
        .await);
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/withdraw"),
                &d.orgadmin_a,
                json!({"reason": "撤回"})
            )
            .await)["status"],
        "withdrawn"
    );
    let id = env.register(&d, "withdraw accepted").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_a}),
        )
        .await);
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": d.med_a}),
        )
        .await);
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/withdraw"),
                &d.mediator_a,
                json!({"reason": "撤回"})
            )
            .await)["status"],
        "withdrawn"
    );
    let id = env.in_mediation(&d, "withdraw in mediation").await;
    assert_eq!(
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/withdraw"),
                &d.mediator_a,
                json!({"reason": "和解"})
            )
            .await)["status"],
        "withdrawn"
    );
}

async fn lifecycle_illegal_transitions(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let conflict = |r: Resp, needle: &str| {
        assert_eq!(
            r.status,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.code(), "illegal_transition");
        let m = r.json()["message"].as_str().unwrap().to_owned();
        assert!(m.contains(needle), "{m}");
    };
    let id = env.register(&d, "illegal").await;
    // From registered: accept, start, agree, fail, apply, ruling are illegal.
    conflict(
        env.post(
            &format!("/api/disputes/{id}/confirmation/accept"),
            &d.judge,
            json!({}),
        )
        .await,
        "registered",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/confirmation/apply"),
            &d.clerk,
            json!({}),
        )
        .await,
        "registered",
    );
    let before = env.count("dispute_events").await;
    // accept needs the dispute to sit with the admin's organisation: from registered
    // it is out of scope (403) for the org admin, so try as the lifecycle allows: triage first.
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_a}),
        )
        .await);
    conflict(
        env.post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_b}),
        )
        .await,
        "cannot triage a dispute that is triaged",
    );
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": d.med_a}),
        )
        .await);
    conflict(
        env.post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": d.med_a}),
        )
        .await,
        "accepted",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/agreement"),
            &d.mediator_a,
            json!({"kind": "text", "filename": "a.txt", "text": "x"}),
        )
        .await,
        "in_mediation",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/fail"),
            &d.mediator_a,
            json!({"reason": "x"}),
        )
        .await,
        "in_mediation",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/reroute"),
            &d.orgadmin_a,
            json!({"org_id": d.org_b, "reason": "x"}),
        )
        .await,
        "triaged",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/confirmation/apply"),
            &d.clerk,
            json!({}),
        )
        .await,
        "agreement_reached",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/confirmation/accept"),
            &d.judge,
            json!({}),
        )
        .await,
        "confirmation_applied",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/confirmation/ruling"),
            &d.judge,
            json!({"outcome": "confirmed", "note": "n"}),
        )
        .await,
        "confirmation_accepted",
    );
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/start"),
            &d.mediator_a,
            json!({}),
        )
        .await);
    conflict(
        env.post(
            &format!("/api/disputes/{id}/start"),
            &d.mediator_a,
            json!({}),
        )
        .await,
        "in_mediation",
    );
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/fail"),
            &d.mediator_a,
            json!({"reason": "x"}),
        )
        .await);
    conflict(
        env.post(
            &format!("/api/disputes/{id}/withdraw"),
            &d.mediator_a,
            json!({"reason": "x"}),
        )
        .await,
        "closed",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/extend"),
            &d.mediator_a,
            json!({"days": 3, "reason": "x", "parties_consent": true}),
        )
        .await,
        "failed",
    );
    conflict(
        env.post(
            &format!("/api/disputes/{id}/sessions"),
            &d.mediator_a,
            json!({"scheduled_at": "2025-03-05T09:00:00+08:00", "duration_minutes": 60}),
        )
        .await,
        "failed",
    );
    // Refused steps leave no trace in the history (register, triage, accept, start, fail).
    assert_eq!(env.count("dispute_events").await, before + 4);
    assert_eq!(status_of(&env, &d, id).await, "failed");
}

async fn concurrent_accept_exactly_one_wins(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let env = std::sync::Arc::new(env);
    for round in 0..8 {
        let id = env.register(&d, &format!("race {round}")).await;
        env.ok(env
            .post(
                &format!("/api/disputes/{id}/triage"),
                &d.triage,
                json!({"org_id": d.org_a}),
            )
            .await);
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let mut handles = Vec::new();
        for tok in [d.orgadmin_a.clone(), d.orgadmin_a2.clone()] {
            let (env, barrier, med) = (env.clone(), barrier.clone(), d.med_a);
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                env.post(
                    &format!("/api/disputes/{id}/accept"),
                    &tok,
                    json!({"mediator_id": med}),
                )
                .await
            }));
        }
        let mut statuses = Vec::new();
        for h in handles {
            let r = h.await.unwrap();
            if r.status == StatusCode::CONFLICT {
                assert_eq!(r.code(), "illegal_transition");
            }
            statuses.push(r.status);
        }
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "round {round}"
        );
        let accepts: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM dispute_events WHERE dispute_id = $1 AND action = 'accept'",
        )
        .bind(id)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
        assert_eq!(accepts, 1);
        let answered: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM triage_notices WHERE dispute_id = $1 AND response = 'accepted'",
        )
        .bind(id)
        .fetch_one(env.store.pool())
        .await
        .unwrap();
        assert_eq!(answered, 1);
    }
}

async fn bad_input_names_the_field_and_writes_nothing(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let tables = [
        "disputes",
        "parties",
        "case_counters",
        "dispute_events",
        "outbox",
    ];
    let mut before = Vec::new();
    for t in tables {
        before.push(env.count(t).await);
    }
    let mut cases: Vec<(serde_json::Value, &str)> = Vec::new();
    let mut wrong_type = new_dispute("x");
    wrong_type["category"] = json!(5);
    cases.push((wrong_type, "category"));
    let mut wrong_amount = new_dispute("x");
    wrong_amount["amount_fen"] = json!("lots");
    cases.push((wrong_amount, "amount_fen"));
    let mut missing = new_dispute("x");
    missing.as_object_mut().unwrap().remove("description");
    cases.push((missing, "description"));
    let mut missing_party_name = new_dispute("x");
    missing_party_name["parties"][1]
        .as_object_mut()
        .unwrap()
        .remove("name");
    cases.push((missing_party_name, "parties[1].name"));
    cases.push((
        new_dispute(&"长".repeat(10 * 1024 * 1024 / 3 + 10)),
        "description",
    ));
    let mut sql_cat = new_dispute("x");
    sql_cat["category"] = json!("family'; DROP TABLE disputes; --");
    cases.push((sql_cat, "category"));
    let mut bad_phone = new_dispute("x");
    bad_phone["parties"][1]["phone"] = json!("1380' OR '1'='1");
    cases.push((bad_phone, "parties[1].phone"));
    // ID numbers: too short, letters, and one digit mistyped (GB 11643-1999 check).
    for id in ["abc", "123", "330681199001011234"] {
        let mut bad_id = new_dispute("x");
        bad_id["parties"][0]["id_number"] = json!(id);
        cases.push((bad_id, "parties[0].id_number"));
    }
    let mut nul = new_dispute("a\u{0}b");
    nul["amount_fen"] = json!(1);
    cases.push((nul, "description"));
    let mut unknown = new_dispute("x");
    unknown["status"] = json!("confirmed");
    cases.push((unknown, "status"));
    let mut no_respondent = new_dispute("x");
    no_respondent["parties"] = json!([{"kind": "applicant", "name": "a"}]);
    cases.push((no_respondent, "parties"));
    let mut negative = new_dispute("x");
    negative["amount_fen"] = json!(-5);
    cases.push((negative, "amount_fen"));
    let mut bad_agent = new_dispute("x");
    bad_agent["parties"][2]["represents"] = json!(2);
    cases.push((bad_agent, "parties[2].represents"));
    for (body, field) in cases {
        let r = env.post("/api/disputes", &d.triage, body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field}: {}",
            String::from_utf8_lossy(&r.body[..r.body.len().min(300)])
        );
        assert_eq!(r.field(), field, "{:?}", r.json());
        assert_eq!(r.code(), "validation");
    }
    // Invalid UTF-8 inside a string, and malformed JSON.
    let mut raw =
        br#"{"category":"family","description":"ok","parties":[{"kind":"applicant","name":""#
            .to_vec();
    raw.extend_from_slice(b"\xff\xfe\xc3");
    raw.extend_from_slice(br#""},{"kind":"respondent","name":"b"}]}"#);
    let r = env
        .raw("POST", "/api/disputes", Some(&d.triage), raw, &[])
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "parties[0].name".into()),
        "{:?}",
        r.json()
    );
    let r = env
        .raw(
            "POST",
            "/api/disputes",
            Some(&d.triage),
            b"{\"category\": ".to_vec(),
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "body".into())
    );
    // Too large a body: 413 with the same error shape.
    let r = env
        .raw(
            "POST",
            "/api/disputes",
            Some(&d.triage),
            vec![b' '; fengqiao_cases::api::MAX_BODY + 1],
            &[],
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
    // Bad path and query parameters name the parameter.
    let r = env.get("/api/disputes/abc", &d.admin).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "id".into())
    );
    let r = env.get("/api/disputes?page=abc", &d.admin).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "page".into())
    );
    let r = env.get("/api/disputes?per_page=100000", &d.admin).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "per_page".into())
    );
    let r = env
        .get("/api/disputes?status=x'%20OR%201=1", &d.admin)
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "status".into())
    );
    let r = env.get("/api/reports/kpi?from=2025-13-01", &d.admin).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "from".into())
    );
    // Nothing was half-written.
    for (t, b) in tables.iter().zip(&before) {
        assert_eq!(env.count(t).await, *b, "{t}");
    }
    // SQL meta-characters in free text are stored verbatim and harm nothing.
    let evil = "Robert'); DROP TABLE disputes; -- \" ; SELECT * FROM users WHERE '1'='1";
    let mut body = new_dispute(evil);
    body["parties"][0]["name"] = json!("O'Brien; --");
    let r = env.post("/api/disputes", &d.triage, body).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let j = r.json();
    assert_eq!(j["dispute"]["description"], evil);
    assert_eq!(j["parties"][0]["name"], "O'Brien; --");
    assert_eq!(env.count("disputes").await, before[0] + 1);
    // Bad input to a lifecycle step changes nothing either.
    let id = env.register(&d, "accept with wrong mediator").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &d.triage,
            json!({"org_id": d.org_a}),
        )
        .await);
    let r = env
        .post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": d.med_b}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "mediator_id".into())
    );
    let r = env
        .post(
            &format!("/api/disputes/{id}/accept"),
            &d.orgadmin_a,
            json!({"mediator_id": "one"}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "mediator_id".into())
    );
    assert_eq!(status_of(&env, &d, id).await, "triaged");
}

async fn sessions_invites_recordings(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let id = env.in_mediation(&d, "session case").await;
    let other = env.in_mediation(&d, "other case").await;
    let r = env
        .post(
            &format!("/api/disputes/{id}/sessions"),
            &d.mediator_a,
            json!({"scheduled_at": "2025-03-01T10:00:00+08:00", "duration_minutes": 90}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let s = r.json();
    let sid = s["session"]["id"].as_i64().unwrap();
    let invites = s["invites"].as_array().unwrap();
    assert_eq!(
        invites.len(),
        4,
        "mediator + applicant + respondent + agent"
    );
    assert_eq!(invites[0]["role"], "mediator");
    let key = fengqiao_signaling::invite::InviteKey::load_or_create(&env.dir.path().join("keys"))
        .unwrap();
    let mut party_token = String::new();
    for inv in invites {
        let url = inv["url"].as_str().unwrap();
        let token = url
            .strip_prefix("https://fq.example.test/join/")
            .expect("join URL shape");
        let c = key
            .verify(token, common::ts("2025-03-01 10:00") as u64)
            .unwrap();
        assert_eq!(c.case_id.as_deref(), Some(id.to_string().as_str()));
        assert_eq!(c.session_id.as_deref(), Some(sid.to_string().as_str()));
        assert_eq!(c.room, s["session"]["room"].as_str().unwrap());
        assert_eq!(c.admitted, inv["role"] == "mediator");
        assert_eq!(c.exp as i64, common::ts("2025-03-01 11:30") + 24 * 3600);
        if inv["role"] == "applicant" {
            party_token = token.to_owned();
        }
    }
    assert!(env.count("outbox").await >= 4);
    // The outbox as shown to the admin hides phone numbers and live invite tokens.
    let shown = env.ok(env.get("/api/outbox?per_page=200", &d.admin).await).to_string();
    assert!(!shown.contains("13800000001") && !shown.contains(&party_token[..20]), "{shown}");
    assert!(shown.contains("138****0001"));
    // The party reaches its own session, sees no invite ids, and gives consent.
    let r = env
        .get(&format!("/api/disputes/{id}/sessions/{sid}"), &party_token)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.json());
    assert!(r.json()["participants"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["invite_tid"] == ""));
    let r = env.get("/api/party/session", &party_token).await;
    assert_eq!(r.json()["session"]["id"], sid);
    let r = env
        .post(
            "/api/party/consent",
            &party_token,
            json!({"recording": true}),
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // ... and nothing else: another case, another session, staff endpoints → 403, audited.
    let denied_before = env.audit_count("session.read", "denied").await;
    let r = env
        .get(
            &format!("/api/disputes/{other}/sessions/{sid}"),
            &party_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = env
        .get(
            &format!("/api/disputes/{id}/sessions/{}", sid + 1000),
            &party_token,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        env.audit_count("session.read", "denied").await,
        denied_before + 2
    );
    let row: (String, String) = sqlx::query_as("SELECT actor, object_id FROM audit_log WHERE action = 'session.read' AND outcome = 'denied' ORDER BY id LIMIT 1")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert!(row.0.starts_with("party:p"), "{row:?}");
    assert!(row.1.contains(&format!("dispute {other}")), "{row:?}");
    assert_eq!(
        env.get(&format!("/api/disputes/{id}"), &party_token)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get("/api/disputes", &party_token).await.status,
        StatusCode::FORBIDDEN
    );
    // An expired or forged invite is a 401.
    env.clock.set(common::ts("2025-03-02 12:00"));
    assert_eq!(
        env.get("/api/party/session", &party_token).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        env.get("/api/party/session", "abc.def").await.status,
        StatusCode::UNAUTHORIZED
    );
    env.clock.set(common::ts("2025-03-01 10:05"));
    // Attendance and identity check make the session "held".
    let view = env.ok(env
        .get(&format!("/api/disputes/{id}/sessions/{sid}"), &d.mediator_a)
        .await);
    let applicant = view["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["role"] == "applicant")
        .unwrap()
        .clone();
    assert_eq!(applicant["recording_consent"], 1);
    let r = env.ok(
        env.post(
            &format!("/api/disputes/{id}/sessions/{sid}/attendance"),
            &d.mediator_a,
            json!({"participant_id": applicant["id"], "joined_at": "2025-03-01T10:01:00+08:00", "identity_method": "身份证人脸比对"}),
        )
        .await,
    );
    assert_eq!(r["session"]["status"], "held");
    let p = r["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == applicant["id"])
        .unwrap()
        .clone();
    assert_eq!(p["identity_checked_by"], "mediator_a");
    assert_eq!(p["joined_at"], common::ts("2025-03-01 10:01"));
    // Recording: register, then play with and without a range.
    let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(env.dir.path().join("sessions/2025")).unwrap();
    std::fs::write(env.dir.path().join("sessions/2025/s1.mp4"), &data).unwrap();
    let sha = fengqiao_cases::validate::sha256(&data);
    let body = json!({"file_path": "2025/s1.mp4", "manifest_path": "2025/s1.manifest.json", "integrity_sha256": sha,
        "media_type": "video/mp4", "started_at": "2025-03-03T10:00:00+08:00", "ended_at": "2025-03-03T11:00:00+08:00"});
    let mut escape = body.clone();
    escape["file_path"] = json!("../cases.db");
    let r = env
        .post(
            &format!("/api/disputes/{id}/sessions/{sid}/recordings"),
            &d.mediator_a,
            escape,
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "file_path".into())
    );
    let r = env
        .post(
            &format!("/api/disputes/{id}/sessions/{sid}/recordings"),
            &d.mediator_a,
            body,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json());
    let rid = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["size_bytes"], 5000);
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.mediator_a).await);
    assert_eq!(detail["recordings"][0]["integrity_sha256"], sha.as_str());
    let r = env
        .raw(
            "GET",
            &format!("/api/recordings/{rid}/file"),
            Some(&d.judge),
            vec![],
            &[("range", "bytes=100-199")],
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers["content-range"], "bytes 100-199/5000");
    assert_eq!(r.body, data[100..200].to_vec());
    let r = env
        .raw(
            "GET",
            &format!("/api/recordings/{rid}/file"),
            Some(&d.clerk),
            vec![],
            &[("range", "bytes=-10")],
        )
        .await;
    assert_eq!(r.body, data[4990..].to_vec());
    let r = env
        .get(&format!("/api/recordings/{rid}/file"), &d.mediator_a)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, data);
    assert_eq!(r.headers["accept-ranges"], "bytes");
    let r = env
        .raw(
            "GET",
            &format!("/api/recordings/{rid}/file"),
            Some(&d.judge),
            vec![],
            &[("range", "bytes=6000-")],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    // Roles that may not see recordings, and the party, are refused.
    for t in [
        &d.orgadmin_a,
        &d.triage,
        &d.admin,
        &d.mediator_b,
        &party_token,
    ] {
        assert_eq!(
            env.get(&format!("/api/recordings/{rid}/file"), t)
                .await
                .status,
            StatusCode::FORBIDDEN
        );
    }
    // Every view is audited.
    assert_eq!(env.audit_count("recording.view", "ok").await, 3);
}

async fn login_cookies_and_401_vs_403(db: Db) {
    let Some(env) = env_with(db, T0, |c| c.settings.secure_cookies = Some(true)).await else {
        return;
    };
    let d = seed(&env).await;
    let r = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "judge", "password": PW})),
        )
        .await;
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert_eq!(r.json()["role"], "judge");
    let token = cookie.split(';').next().unwrap().to_owned();
    // The cookie itself authenticates.
    let r = env
        .raw(
            "GET",
            "/api/auth/me",
            None,
            vec![],
            &[("cookie", &format!("theme=dark; {token}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["user"]["username"], "judge");
    // Wrong password and unknown user: 401, one message, audited.
    let bad = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "judge", "password": "wrong-password"})),
        )
        .await;
    let unknown = env
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"username": "nobody", "password": "wrong-password"})),
        )
        .await;
    assert_eq!(
        (bad.status, unknown.status),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(bad.json()["message"], unknown.json()["message"]);
    assert_eq!(env.audit_count("auth.login", "denied").await, 2);
    // No credentials → 401; wrong role → 403.
    let r = env.call("GET", "/api/disputes", None, None).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
    let r = env.get("/api/disputes", "not-a-real-token").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env.get("/api/audit", &d.judge).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    // Logout ends the session; the token is then a 401.
    let t = env.login("clerk", PW).await;
    assert_eq!(
        env.post("/api/auth/logout", &t, json!({})).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        env.get("/api/auth/me", &t).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Logins expire.
    env.clock.advance(13 * 3600);
    assert_eq!(
        env.get("/api/auth/me", &d.admin).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Weak passwords and duplicate names are refused through the admin API.
    let admin = env.login("admin", PW).await;
    let r = env
        .post(
            "/api/users",
            &admin,
            json!({"username": "xx1", "display_name": "X", "role": "clerk", "password": "short"}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "password".into())
    );
    let r = env.post("/api/users", &admin, json!({"username": "judge", "display_name": "X", "role": "clerk", "password": "long-enough-pw"})).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::CONFLICT, "username".into())
    );
    let r = env.post("/api/users", &admin, json!({"username": "med9", "display_name": "X", "role": "mediator", "password": "long-enough-pw"})).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "org_id".into())
    );
    let r = env.post("/api/users", &admin, json!({"username": "med9", "display_name": "X", "role": "mediator", "org_id": d.org_c, "password": "long-enough-pw"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(r.json()["mediator_id"].as_i64().is_some());
    // Passwords are stored as argon2id hashes.
    let h: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE username = 'med9'")
        .fetch_one(env.store.pool())
        .await
        .unwrap();
    assert!(h.starts_with("$argon2id$"), "{h}");
    // OpenAPI document.
    let r = env.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/api/disputes/{id}/accept"]["post"].is_object());
    assert!(doc["components"]["schemas"]["NewDispute"].is_object());
    // Unknown endpoints answer in the same error shape.
    let r = env.get("/api/nope", &admin).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::NOT_FOUND, "not_found".into())
    );
}

async fn masking_identity_and_export_are_audited(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    let id = env.in_mediation(&d, "masking").await;
    let detail = env.ok(env.get(&format!("/api/disputes/{id}"), &d.mediator_a).await);
    let text = serde_json::to_string(&detail).unwrap();
    assert!(
        !text.contains("330681199001011237") && !text.contains("13800000001"),
        "identity leaked"
    );
    assert_eq!(
        detail["parties"][0]["id_number_masked"],
        "330***********1237"
    );
    assert_eq!(detail["parties"][0]["phone_masked"], "138****0001");
    let pid = detail["parties"][0]["id"].as_i64().unwrap();
    let r = env.ok(env
        .get(
            &format!("/api/disputes/{id}/parties/{pid}/identity"),
            &d.mediator_a,
        )
        .await);
    assert_eq!(r["id_number"], "330681199001011237");
    assert_eq!(env.audit_count("party.identity.view", "ok").await, 1);
    assert_eq!(
        env.get(
            &format!("/api/disputes/{id}/parties/{pid}/identity"),
            &d.orgadmin_a
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    let r = env.ok(env
        .get(&format!("/api/disputes/{id}/export"), &d.clerk)
        .await);
    assert!(!serde_json::to_string(&r)
        .unwrap()
        .contains("330681199001011237"));
    assert_eq!(r["exported_by"], "clerk");
    assert_eq!(env.audit_count("dispute.export", "ok").await, 1);
    // Out-of-scope reads are 403 and audited; missing ones are 404.
    let before = env.audit_count("dispute.read", "denied").await;
    assert_eq!(
        env.get(&format!("/api/disputes/{id}"), &d.orgadmin_b)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        env.get(&format!("/api/disputes/{id}"), &d.mediator_b)
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(env.audit_count("dispute.read", "denied").await, before + 2);
    assert_eq!(
        env.get("/api/disputes/999999", &d.admin).await.status,
        StatusCode::NOT_FOUND
    );
    // The audit log through the API.
    let r = env.ok(env.get("/api/audit?action=dispute.export", &d.admin).await);
    assert_eq!(r["total"], 1);
    assert_eq!(r["items"][0]["actor"], "clerk");
}

async fn audit_log_is_append_only(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    env.register(&d, "x").await;
    let n = env.count("audit_log").await;
    assert!(n > 0);
    assert!(sqlx::query("UPDATE audit_log SET actor = 'mallory'")
        .execute(env.store.pool())
        .await
        .is_err());
    assert!(sqlx::query("DELETE FROM audit_log")
        .execute(env.store.pool())
        .await
        .is_err());
    assert_eq!(env.count("audit_log").await, n);
    if db == Db::Sqlite {
        // The SQLite file runs in WAL mode.
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(env.store.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}

async fn demo_data_has_every_state(db: Db) {
    let Some(env) = env(db).await else { return };
    assert!(env.store.has_no_users().await.unwrap());
    let logins = fengqiao_cases::load_demo_data(&env.store).await.unwrap();
    assert_eq!(logins.len(), 6);
    let statuses: Vec<String> = sqlx::query_scalar("SELECT DISTINCT status FROM disputes")
        .fetch_all(env.store.pool())
        .await
        .unwrap();
    for s in fengqiao_cases::Status::ALL {
        assert!(
            statuses.iter().any(|x| x == s.as_str()),
            "missing {}",
            s.as_str()
        );
    }
    // The printed logins work.
    let judge = logins
        .iter()
        .find(|l| l.role == fengqiao_cases::StaffRole::Judge)
        .unwrap();
    let t = env.login(&judge.username, &judge.password).await;
    assert_eq!(
        env.ok(env.get("/api/disputes?per_page=5", &t).await)["total"],
        11
    );
    // A second load is refused, not doubled.
    assert!(fengqiao_cases::load_demo_data(&env.store).await.is_err());
    assert_eq!(env.count("disputes").await, 11);
}

async fn pagination_and_filters(db: Db) {
    let Some(env) = env(db).await else { return };
    let d = seed(&env).await;
    for i in 0..7 {
        let id = env.register(&d, &format!("p{i}")).await;
        if i % 2 == 0 {
            env.ok(env
                .post(
                    &format!("/api/disputes/{id}/triage"),
                    &d.triage,
                    json!({"org_id": d.org_a}),
                )
                .await);
        }
    }
    let r = env.ok(env.get("/api/disputes?page=2&per_page=3", &d.admin).await);
    assert_eq!(
        (r["total"].as_i64(), r["items"].as_array().unwrap().len()),
        (Some(7), 3)
    );
    let r = env.ok(env.get("/api/disputes?page=3&per_page=3", &d.admin).await);
    assert_eq!(r["items"].as_array().unwrap().len(), 1);
    let r = env.ok(env.get("/api/disputes?status=triaged", &d.triage).await);
    assert_eq!(r["total"], 4);
    // The org admin sees only its organisation's disputes; others' mediators none.
    assert_eq!(
        env.ok(env.get("/api/disputes", &d.orgadmin_a).await)["total"],
        4
    );
    assert_eq!(
        env.ok(env.get("/api/disputes", &d.orgadmin_b).await)["total"],
        0
    );
    assert_eq!(
        env.ok(env.get("/api/disputes", &d.mediator_a).await)["total"],
        0
    );
    // Case numbers follow the configured format and count up within the year.
    let nums: Vec<String> = sqlx::query_scalar("SELECT case_number FROM disputes ORDER BY id")
        .fetch_all(env.store.pool())
        .await
        .unwrap();
    assert_eq!(nums[0], "(2025)枫调字第00001号");
    assert_eq!(nums[6], "(2025)枫调字第00007号");
}
