//! Shared test harness: a store on a real temporary SQLite file or on a fresh
//! PostgreSQL database (FENGQIAO_TEST_POSTGRES_URL), the router driven with
//! `tower::ServiceExt::oneshot`, and a seeded district.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use fengqiao_cases::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct Env {
    pub store: Store,
    pub app: Router,
    pub clock: Clock,
    pub dir: tempfile::TempDir,
    pub db: Db,
}

/// Runs `$body` once per backend: `mod sqlite { ... } mod postgres { ... }`.
#[macro_export]
macro_rules! dual {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::common::Db::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() { super::$name(super::common::Db::Postgres).await }
            )*
        }
    };
}

/// 2025-03-01 00:00 in UTC+8, a Saturday.
pub const T0: i64 = 1_740_758_400;

/// Unix seconds of a local (UTC+8) time `YYYY-MM-DD HH:MM`.
pub fn ts(s: &str) -> i64 {
    let t = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect("time");
    t.and_utc().timestamp() - 8 * 3600
}

/// A PostgreSQL URL for a fresh database, or `None` to skip. Fails when CI is set and
/// no server was given: the PostgreSQL half of the suite must not pass silently.
async fn postgres_url() -> Option<String> {
    let base = match std::env::var("FENGQIAO_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but FENGQIAO_TEST_POSTGRES_URL is not: run scripts/test-cases.sh"
                );
            }
            eprintln!("skipped: no PostgreSQL (set FENGQIAO_TEST_POSTGRES_URL or run scripts/test-cases.sh)");
            return None;
        }
    };
    use sqlx::Connection;
    let name = format!("fq_test_{}", fengqiao_signaling::invite::random_id());
    let mut conn = sqlx::postgres::PgConnection::connect(&base)
        .await
        .expect("connect to FENGQIAO_TEST_POSTGRES_URL");
    sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("create test database");
    conn.close().await.ok();
    let (head, _) = base.split_once('?').unwrap_or((&base, ""));
    let cut = head.rfind('/').expect("URL with a database path");
    // Keep the authority; replace the database name.
    let prefix = &head[..cut];
    let prefix = if prefix.ends_with('/') {
        head.to_owned() + &name
    } else {
        format!("{prefix}/{name}")
    };
    Some(prefix)
}

pub fn base_config(dir: &std::path::Path) -> CasesConfig {
    CasesConfig {
        data_dir: dir.to_path_buf(),
        public_url: "https://fq.example.test".into(),
        settings: CasesSettings { last_year_screened: 20, max_connections: 8, ..CasesSettings::default() },
        ..CasesConfig::default()
    }
}

/// A store and router on `db`, with a manual clock at `start`; `None` means skipped.
pub async fn env_with(db: Db, start: i64, tweak: impl FnOnce(&mut CasesConfig)) -> Option<Env> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = base_config(dir.path());
    cfg.database_url = match db {
        Db::Sqlite => Some(format!(
            "sqlite://{}",
            dir.path().join("cases.db").display()
        )),
        Db::Postgres => Some(postgres_url().await?),
    };
    tweak(&mut cfg);
    let clock = Clock::manual(start);
    let store = Store::connect(&cfg, clock.clone()).await.expect("connect");
    assert_eq!(
        store.backend(),
        if db == Db::Sqlite {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    );
    let app = router(CasesState::new(store.clone()));
    Some(Env {
        store,
        app,
        clock,
        dir,
        db,
    })
}

pub async fn env(db: Db) -> Option<Env> {
    env_with(db, T0 + 9 * 3600, |_| {}).await
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// `field` of an error body.
    pub fn field(&self) -> String {
        self.json()["field"].as_str().unwrap_or("").to_owned()
    }
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

impl Env {
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let b = body
            .map(|v| serde_json::to_vec(&v).unwrap())
            .unwrap_or_default();
        self.raw(method, path, token, b, &[]).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.call("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.call("POST", path, Some(token), Some(body)).await
    }

    /// Logs in through the API and returns the cookie's token.
    pub async fn login(&self, user: &str, pw: &str) -> String {
        let r = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"username": user, "password": pw})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login {user}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let c = r
            .headers
            .get("set-cookie")
            .expect("cookie")
            .to_str()
            .unwrap()
            .to_owned();
        let tok = c
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("fq_session=")
            .unwrap()
            .to_owned();
        tok
    }

    pub async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }

    pub async fn audit_count(&self, action: &str, outcome: &str) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1 AND outcome = $2")
            .bind(action)
            .bind(outcome)
            .fetch_one(self.store.pool())
            .await
            .unwrap()
    }
}

pub const PW: &str = "correct-horse-battery";

/// A seeded district: organisations A (people's committee, online), B (court,
/// online), C (industry, offline); one login per role plus a second admin of A, the
/// admin of B and a mediator of B.
pub struct District {
    pub org_a: i64,
    pub org_b: i64,
    pub org_c: i64,
    pub admin: String,
    pub triage: String,
    pub orgadmin_a: String,
    pub orgadmin_a2: String,
    pub orgadmin_b: String,
    pub mediator_a: String,
    pub mediator_b: String,
    pub judge: String,
    pub clerk: String,
    pub med_a: i64,
    pub med_b: i64,
}

pub async fn seed(env: &Env) -> District {
    let s = &env.store;
    let sys = Actor::system();
    let mk = |name: &str, kind: &str, online: bool| fengqiao_cases::service::NewOrganisation {
        name: name.into(),
        kind: kind.into(),
        district: "诸暨市".into(),
        street: None,
        online,
    };
    let a = s
        .create_org(&sys, &mk("A 调委会", "peoples_committee", true))
        .await
        .unwrap();
    let b = s
        .create_org(&sys, &mk("B 法院调解", "court", true))
        .await
        .unwrap();
    let c = s
        .create_org(&sys, &mk("C 行业调解", "industry", false))
        .await
        .unwrap();
    let mut med = std::collections::HashMap::new();
    for (u, role, org) in [
        ("admin", StaffRole::Admin, None),
        ("triage", StaffRole::Triage, None),
        ("orgadmin_a", StaffRole::OrgAdmin, Some(a.id)),
        ("orgadmin_a2", StaffRole::OrgAdmin, Some(a.id)),
        ("orgadmin_b", StaffRole::OrgAdmin, Some(b.id)),
        ("mediator_a", StaffRole::Mediator, Some(a.id)),
        ("mediator_b", StaffRole::Mediator, Some(b.id)),
        ("judge", StaffRole::Judge, None),
        ("clerk", StaffRole::Clerk, None),
    ] {
        let user = create_user(s, u, &format!("{u} 姓名"), role, org, PW)
            .await
            .unwrap();
        if let Some(m) = user.mediator_id {
            med.insert(u, m);
        }
    }
    // Log in through the API (exercises the cookie path); logins run in parallel.
    let names = [
        "admin",
        "triage",
        "orgadmin_a",
        "orgadmin_a2",
        "orgadmin_b",
        "mediator_a",
        "mediator_b",
        "judge",
        "clerk",
    ];
    let toks = futures_util::future::join_all(names.iter().map(|n| env.login(n, PW))).await;
    let t = |i: usize| toks[i].clone();
    District {
        org_a: a.id,
        org_b: b.id,
        org_c: c.id,
        admin: t(0),
        triage: t(1),
        orgadmin_a: t(2),
        orgadmin_a2: t(3),
        orgadmin_b: t(4),
        mediator_a: t(5),
        mediator_b: t(6),
        judge: t(7),
        clerk: t(8),
        med_a: med["mediator_a"],
        med_b: med["mediator_b"],
    }
}

pub fn new_dispute(desc: &str) -> Value {
    json!({
        "category": "neighbour",
        "description": desc,
        "amount_fen": 120000,
        "parties": [
            {"kind": "applicant", "name": "张三", "id_number": "330681199001011237", "phone": "13800000001"},
            {"kind": "respondent", "name": "李四", "id_number": "330681198502023450", "phone": "13800000002"},
            {"kind": "agent", "name": "王律师", "represents": 0}
        ]
    })
}

impl Env {
    /// Registers a dispute through the API (as triage) and returns its id.
    pub async fn register(&self, d: &District, desc: &str) -> i64 {
        let r = self
            .post("/api/disputes", &d.triage, new_dispute(desc))
            .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["dispute"]["id"].as_i64().unwrap()
    }

    /// Registers, triages to A, accepts with mediator A and starts: `in_mediation`.
    pub async fn in_mediation(&self, d: &District, desc: &str) -> i64 {
        let id = self.register(d, desc).await;
        self.ok(self
            .post(
                &format!("/api/disputes/{id}/triage"),
                &d.triage,
                json!({"org_id": d.org_a}),
            )
            .await);
        self.ok(self
            .post(
                &format!("/api/disputes/{id}/accept"),
                &d.orgadmin_a,
                json!({"mediator_id": d.med_a}),
            )
            .await);
        self.ok(self
            .post(
                &format!("/api/disputes/{id}/start"),
                &d.mediator_a,
                json!({}),
            )
            .await);
        id
    }

    #[track_caller]
    pub fn ok(&self, r: Resp) -> Value {
        assert!(
            r.status.is_success(),
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }
}
