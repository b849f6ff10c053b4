//! Deadlines across a holiday, KPIs on a hand-worked fixture, the outbox — on SQLite
//! and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use fengqiao_cases::service::{AgreementUpload, Attendance, ScheduleSession};
use fengqiao_cases::{Actor, NotificationSender};
use serde_json::json;

dual!(
    deadlines_across_the_national_day_holiday,
    kpis_match_the_hand_worked_fixture,
    outbox_delivery_and_warnings
);

fn d(s: &str) -> chrono::NaiveDate {
    s.parse().unwrap()
}

fn end_of(day: &str) -> i64 {
    ts(&format!("{day} 23:59")) + 59
}

/// 2025 National Day: 1–8 October off; Sunday 28 September and Saturday 11 October
/// are make-up working days.
fn holiday_config(c: &mut fengqiao_cases::CasesConfig) {
    c.settings.holidays = (1..=8).map(|i| d(&format!("2025-10-0{i}"))).collect();
    c.settings.extra_working_days = vec![d("2025-09-28"), d("2025-10-11")];
    c.settings.login_ttl_hours = 24 * 365;
}

async fn deadlines_across_the_national_day_holiday(db: Db) {
    let Some(env) = env_with(db, ts("2025-09-30 10:00"), holiday_config).await else {
        return;
    };
    let dd = seed(&env).await;
    // Dispute 1: triaged to the court organisation B on Tuesday 30 September 10:00.
    let one = env.register(&dd, "court case").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{one}/triage"),
            &dd.triage,
            json!({"org_id": dd.org_b}),
        )
        .await);
    // Dispute 2: accepted by A at the same moment.
    let two = env.register(&dd, "accepted before the holiday").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{two}/triage"),
            &dd.triage,
            json!({"org_id": dd.org_a}),
        )
        .await);
    env.ok(env
        .post(
            &format!("/api/disputes/{two}/accept"),
            &dd.orgadmin_a,
            json!({"mediator_id": dd.med_a}),
        )
        .await);

    let detail = env.ok(env.get(&format!("/api/disputes/{one}"), &dd.admin).await);
    let due = |detail: &serde_json::Value, kind: &str| {
        let x = detail["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind}"))
            .clone();
        (
            x["due_at"].as_i64().unwrap(),
            x["state"].as_str().unwrap().to_owned(),
        )
    };
    // 48 hours, exactly; 3 working days skip 1–8 October and count Saturday 11 October.
    assert_eq!(
        due(&detail, "triage_response"),
        (ts("2025-10-02 10:00"), "open".into())
    );
    assert_eq!(
        due(&detail, "court_appoint"),
        (end_of("2025-10-11"), "open".into())
    );
    let detail2 = env.ok(env.get(&format!("/api/disputes/{two}"), &dd.admin).await);
    assert_eq!(due(&detail2, "triage_response").1, "met");
    assert_eq!(
        due(&detail2, "mediator_accept"),
        (end_of("2025-10-11"), "open".into())
    );
    // 30 calendar days from 30 September end on Thursday 30 October.
    assert_eq!(
        due(&detail2, "mediation"),
        (end_of("2025-10-30"), "open".into())
    );

    // 2 October noon, mid-holiday: only the 48-hour answer is overdue.
    env.clock.set(ts("2025-10-02 12:00"));
    let r = env.ok(env.get("/api/deadlines?overdue=true", &dd.triage).await);
    let kinds: Vec<(i64, String)> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["dispute_id"].as_i64().unwrap(),
                x["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(kinds, vec![(one, "triage_response".to_owned())]);
    // Without the filter the open ones are listed too, soonest first.
    let r = env.ok(env.get("/api/deadlines", &dd.triage).await);
    assert_eq!(r["total"], 4);
    assert_eq!(r["items"][0]["state"], "overdue");

    // 12 October (Sunday): the court's 3 working days ended with the make-up Saturday.
    env.clock.set(ts("2025-10-12 09:00"));
    let r = env.ok(env.get("/api/deadlines?overdue=true", &dd.admin).await);
    let mut kinds: Vec<String> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{}:{}", x["dispute_id"], x["kind"].as_str().unwrap()))
        .collect();
    kinds.sort();
    let mut want = vec![
        format!("{one}:triage_response"),
        format!("{one}:court_appoint"),
        format!("{two}:mediator_accept"),
    ];
    want.sort();
    assert_eq!(kinds, want);
    // Scope: the admin of B sees its dispute's deadlines only; the mediator of A only theirs.
    let r = env.ok(env.get("/api/deadlines?overdue=true", &dd.orgadmin_b).await);
    assert!(r["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["dispute_id"] == one));
    let r = env.ok(env.get("/api/deadlines?overdue=true", &dd.mediator_a).await);
    assert!(r["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["dispute_id"] == two));
    let r = env.get("/api/deadlines?overdue=maybe", &dd.admin).await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "overdue".into())
    );

    // B accepts on Sunday 12 October: both answers were late; the mediator then has
    // until Wednesday 15 October, the mediation until Tuesday 11 November.
    env.ok(env
        .post(
            &format!("/api/disputes/{one}/accept"),
            &dd.orgadmin_b,
            json!({"mediator_id": dd.med_b}),
        )
        .await);
    let detail = env.ok(env.get(&format!("/api/disputes/{one}"), &dd.admin).await);
    assert_eq!(due(&detail, "triage_response").1, "late");
    assert_eq!(due(&detail, "court_appoint").1, "late");
    assert_eq!(
        due(&detail, "mediator_accept"),
        (end_of("2025-10-15"), "open".into())
    );
    assert_eq!(
        due(&detail, "mediation"),
        (end_of("2025-11-11"), "open".into())
    );
    // An agreed extension of 5 days moves it to Sunday 16 November → Monday 17 November.
    env.ok(env
        .post(
            &format!("/api/disputes/{one}/start"),
            &dd.mediator_b,
            json!({}),
        )
        .await);
    env.ok(env
        .post(
            &format!("/api/disputes/{one}/extend"),
            &dd.mediator_b,
            json!({"days": 5, "reason": "双方同意", "parties_consent": true}),
        )
        .await);
    let detail = env.ok(env.get(&format!("/api/disputes/{one}"), &dd.admin).await);
    assert_eq!(due(&detail, "mediator_accept").1, "met");
    assert_eq!(
        due(&detail, "mediation"),
        (end_of("2025-11-17"), "open".into())
    );
    let r = env
        .post(
            &format!("/api/disputes/{one}/extend"),
            &dd.mediator_b,
            json!({"days": 5, "reason": "x", "parties_consent": false}),
        )
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "parties_consent".into())
    );
}

async fn at(env: &Env, t: &str) {
    env.clock.set(ts(t));
}

fn actor(name: &str, role: &str) -> Actor {
    Actor {
        name: name.into(),
        role: role.into(),
        addr: String::new(),
    }
}

async fn row(env: &Env, id: i64) -> fengqiao_cases::model::DisputeRow {
    env.store.get_dispute(id).await.unwrap().unwrap()
}

async fn held_session(env: &Env, id: i64, when: &str) {
    let m = actor("mediator_a", "mediator");
    let d = row(env, id).await;
    let s = env
        .store
        .schedule_session(
            &m,
            &d,
            &ScheduleSession {
                scheduled_at: when.into(),
                duration_minutes: 60,
                party_ids: None,
            },
        )
        .await
        .unwrap();
    let p = s.invites[1].participant_id;
    env.store
        .record_attendance(
            &m,
            &d,
            s.session.id,
            &Attendance {
                participant_id: p,
                joined_at: Some(when.into()),
                left_at: None,
                identity_method: Some("id card".into()),
            },
        )
        .await
        .unwrap();
}

/// The fixture of `docs/cases.md` ("KPIs: the test fixture"), worked out by hand.
async fn kpis_match_the_hand_worked_fixture(db: Db) {
    let Some(env) = env_with(db, ts("2024-12-01 09:00"), |c| {
        c.settings.login_ttl_hours = 24 * 3650;
        c.settings.last_year_screened = 20;
    })
    .await
    else {
        return;
    };
    let dd = seed(&env).await;
    let s = &env.store;
    let (tri, oa, ob, med) = (
        actor("triage", "triage"),
        actor("orgadmin_a", "org_admin"),
        actor("orgadmin_b", "org_admin"),
        actor("mediator_a", "mediator"),
    );
    let reg = |desc: &str| {
        let body: fengqiao_cases::model::NewDispute =
            serde_json::from_value(new_dispute(desc)).unwrap();
        body
    };
    let agree = AgreementUpload {
        kind: "text".into(),
        filename: "a.txt".into(),
        text: Some("ok".into()),
        content_base64: None,
    };
    // Trainings: one before the window, two inside (one district-wide, one of A).
    for (day, org) in [
        ("2024-12-01", None),
        ("2025-03-15", None),
        ("2025-09-01", Some(dd.org_a)),
    ] {
        s.add_training(
            &actor("admin", "admin"),
            &fengqiao_cases::service::NewTraining {
                held_on: day.into(),
                topic: "t".into(),
                organiser: "o".into(),
                attendance: 10,
                org_id: org,
            },
        )
        .await
        .unwrap();
    }
    // D7: registered and accepted in 2024, agreement on 5 January 2025 (due 15 January).
    at(&env, "2024-12-15 09:00").await;
    let d7 = s.register_dispute(&tri, None, &reg("D7")).await.unwrap().id;
    s.triage(&tri, &row(&env, d7).await, dd.org_a)
        .await
        .unwrap();
    at(&env, "2024-12-16 09:00").await;
    s.accept(&oa, &row(&env, d7).await, dd.med_a).await.unwrap();
    s.start(&med, &row(&env, d7).await).await.unwrap();
    held_session(&env, d7, "2024-12-16T10:00:00+08:00").await;
    at(&env, "2025-01-05 10:00").await;
    s.agree(&med, &row(&env, d7).await, &agree).await.unwrap();
    // D1: answered in 24 h, held online, agreement within 30 days.
    at(&env, "2025-03-01 09:00").await;
    let d1 = s.register_dispute(&tri, None, &reg("D1")).await.unwrap().id;
    s.triage(&tri, &row(&env, d1).await, dd.org_a)
        .await
        .unwrap();
    at(&env, "2025-03-02 09:00").await;
    s.accept(&oa, &row(&env, d1).await, dd.med_a).await.unwrap();
    s.start(&med, &row(&env, d1).await).await.unwrap();
    held_session(&env, d1, "2025-03-02T10:00:00+08:00").await;
    at(&env, "2025-03-20 09:00").await;
    s.agree(&med, &row(&env, d1).await, &agree).await.unwrap();
    // D2: answered after 72 h, held online, failed after the limit (due 5 May).
    at(&env, "2025-04-01 09:00").await;
    let d2 = s.register_dispute(&tri, None, &reg("D2")).await.unwrap().id;
    s.triage(&tri, &row(&env, d2).await, dd.org_a)
        .await
        .unwrap();
    at(&env, "2025-04-04 09:00").await;
    s.accept(&oa, &row(&env, d2).await, dd.med_a).await.unwrap();
    s.start(&med, &row(&env, d2).await).await.unwrap();
    held_session(&env, d2, "2025-04-04T10:00:00+08:00").await;
    at(&env, "2025-06-01 09:00").await;
    s.fail(&med, &row(&env, d2).await, "no").await.unwrap();
    // D3: B re-routes within 24 h; A accepts after 8 days; agreement on time; no session.
    at(&env, "2025-05-01 09:00").await;
    let d3 = s.register_dispute(&tri, None, &reg("D3")).await.unwrap().id;
    s.triage(&tri, &row(&env, d3).await, dd.org_b)
        .await
        .unwrap();
    at(&env, "2025-05-02 09:00").await;
    s.reroute(&ob, &row(&env, d3).await, dd.org_a, "属地")
        .await
        .unwrap();
    at(&env, "2025-05-10 09:00").await;
    s.accept(&oa, &row(&env, d3).await, dd.med_a).await.unwrap();
    s.start(&med, &row(&env, d3).await).await.unwrap();
    at(&env, "2025-05-20 09:00").await;
    s.agree(&med, &row(&env, d3).await, &agree).await.unwrap();
    // D4: never answered.
    at(&env, "2025-06-01 09:00").await;
    let d4 = s.register_dispute(&tri, None, &reg("D4")).await.unwrap().id;
    s.triage(&tri, &row(&env, d4).await, dd.org_a)
        .await
        .unwrap();
    // D5: withdrawn three hours after triage.
    at(&env, "2025-07-01 09:00").await;
    let d5 = s.register_dispute(&tri, None, &reg("D5")).await.unwrap().id;
    s.triage(&tri, &row(&env, d5).await, dd.org_a)
        .await
        .unwrap();
    at(&env, "2025-07-01 12:00").await;
    s.withdraw(&tri, &row(&env, d5).await, "和解")
        .await
        .unwrap();
    // D6: answered in an hour, held online, still in mediation past its due date
    // (20 November + 30 days = Saturday 20 December → Monday 22 December).
    at(&env, "2025-11-20 09:00").await;
    let d6 = s.register_dispute(&tri, None, &reg("D6")).await.unwrap().id;
    s.triage(&tri, &row(&env, d6).await, dd.org_a)
        .await
        .unwrap();
    at(&env, "2025-11-20 10:00").await;
    s.accept(&oa, &row(&env, d6).await, dd.med_a).await.unwrap();
    s.start(&med, &row(&env, d6).await).await.unwrap();
    held_session(&env, d6, "2025-11-20T11:00:00+08:00").await;

    at(&env, "2026-01-10 12:00").await;
    let nd = |r: &serde_json::Value| -> Vec<(i64, i64)> {
        r["kpis"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["numerator"].as_i64().unwrap(),
                    k["denominator"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    let district = env.ok(env
        .get("/api/reports/kpi?from=2025-01-01&to=2025-12-31", &dd.admin)
        .await);
    // 1 online 2/3; 2 answered in 48 h 3/6; 3 in time 3/5; 4 online 3/20; 5 success 3/4; 6 trainings 2/2.
    assert_eq!(
        nd(&district),
        vec![(2, 3), (3, 6), (3, 5), (3, 20), (3, 4), (2, 2)]
    );
    let met: Vec<Option<bool>> = district["kpis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["met"].as_bool())
        .collect();
    assert_eq!(
        met,
        vec![Some(false), None, None, Some(false), Some(true), Some(true)]
    );
    assert_eq!(district["kpis"][4]["value"], 0.75);
    let a = env.ok(env
        .get(
            &format!(
                "/api/reports/kpi?from=2025-01-01&to=2025-12-31&org={}",
                dd.org_a
            ),
            &dd.triage,
        )
        .await);
    assert_eq!(
        nd(&a),
        vec![(1, 1), (2, 5), (3, 5), (3, 20), (3, 4), (1, 2)]
    );
    let b = env.ok(env
        .get(
            &format!(
                "/api/reports/kpi?from=2025-01-01&to=2025-12-31&org={}",
                dd.org_b
            ),
            &dd.admin,
        )
        .await);
    assert_eq!(
        nd(&b),
        vec![(1, 1), (1, 1), (0, 0), (0, 20), (0, 0), (0, 2)]
    );
    assert!(b["kpis"][2]["value"].is_null());
    // The org admin gets its own organisation by default and may not see another.
    let own = env.ok(env
        .get(
            "/api/reports/kpi?from=2025-01-01&to=2025-12-31",
            &dd.orgadmin_a,
        )
        .await);
    assert_eq!(nd(&own), nd(&a));
    let r = env
        .get(
            &format!("/api/reports/kpi?org={}", dd.org_b),
            &dd.orgadmin_a,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // A narrower window: only D1 and D2's notices (Q1–Q2 first half).
    let h1 = env.ok(env
        .get("/api/reports/kpi?from=2025-03-01&to=2025-04-30", &dd.admin)
        .await);
    assert_eq!(nd(&h1)[1], (1, 2));
    let r = env
        .get("/api/reports/kpi?from=2025-05-01&to=2025-04-01", &dd.admin)
        .await;
    assert_eq!(
        (r.status, r.field()),
        (StatusCode::UNPROCESSABLE_ENTITY, "to".into())
    );
    let _ = (d4, d5);
}

struct Flaky(std::sync::atomic::AtomicUsize);
impl NotificationSender for Flaky {
    fn send<'a>(
        &'a self,
        _item: &'a fengqiao_cases::model::OutboxItem,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            if self
                .0
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                .is_multiple_of(2)
            {
                Err("gateway down".into())
            } else {
                Ok(())
            }
        })
    }
}

async fn outbox_delivery_and_warnings(db: Db) {
    let Some(env) = env_with(db, ts("2025-03-03 09:00"), |c| c.settings.login_ttl_hours = 24 * 365).await
    else {
        return;
    };
    let dd = seed(&env).await;
    let id = env.register(&dd, "outbox").await;
    env.ok(env
        .post(
            &format!("/api/disputes/{id}/triage"),
            &dd.triage,
            json!({"org_id": dd.org_a}),
        )
        .await);
    // Triage notices go to both admins of A.
    let r = env.ok(env.get("/api/outbox?pending=true", &dd.admin).await);
    let mut rcpt: Vec<String> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["recipient"].as_str().unwrap().to_owned())
        .collect();
    rcpt.sort();
    assert_eq!(rcpt, ["orgadmin_a", "orgadmin_a2"]);
    // 30 hours later the 48-hour answer is due within 24 h: one warning, once.
    env.clock.advance(30 * 3600);
    assert_eq!(env.store.enqueue_deadline_warnings().await.unwrap(), 1);
    assert_eq!(env.store.enqueue_deadline_warnings().await.unwrap(), 0);
    env.clock.advance(20 * 3600);
    assert_eq!(
        env.store.enqueue_deadline_warnings().await.unwrap(),
        1,
        "overdue notice"
    );
    let pending = env.ok(env.get("/api/outbox?pending=true", &dd.admin).await)["total"]
        .as_i64()
        .unwrap();
    assert_eq!(pending, 4);
    // A failing sender leaves items pending with the error; the log sender drains them.
    let flaky = Flaky(Default::default());
    let sent = env.store.deliver_outbox(&flaky, 100).await.unwrap();
    assert_eq!(sent, 2);
    let r = env.ok(env.get("/api/outbox?pending=true", &dd.admin).await);
    assert_eq!(r["total"], 2);
    assert_eq!(r["items"][0]["last_error"], "gateway down");
    assert_eq!(
        env.store
            .deliver_outbox(&fengqiao_cases::LogSender, 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        env.ok(env.get("/api/outbox?pending=true", &dd.admin).await)["total"],
        0
    );
}
