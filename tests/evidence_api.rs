//! The evidence API for the judge's review page (`src/evidence_api.rs`,
//! `docs/staff.md`): the real server on loopback, a session folder written with the
//! recorder's `ManifestWriter` under the server's evidence key, and every role.

use fengqiao::server::{self, Running};
use fengqiao_recorder::{Answer, Body, EvidenceKey, FileStatus, ManifestWriter, SessionHeader, Timestamp, TrackKind};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

struct Api {
    base: String,
    http: reqwest::Client,
    tokens: HashMap<String, String>,
}

impl Api {
    async fn login(&mut self, user: &str, password: &str) {
        let r = self
            .http
            .post(format!("{}/api/auth/login", self.base))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        self.tokens.insert(user.into(), cookie.trim_start_matches("fq_session=").to_owned());
    }

    async fn call(&self, who: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut rq = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        if let Some(w) = who {
            rq = rq.bearer_auth(&self.tokens[w]);
        }
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        let r = rq.send().await.unwrap();
        let st = r.status().as_u16();
        (st, r.json().await.unwrap_or(Value::Null))
    }
}

async fn start() -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = fengqiao::config::Config::default();
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse().unwrap();
    cfg.media.udp_port = 0;
    (server::start(cfg).await.unwrap(), dir)
}

/// A 10 s session: mediator m and applicant a, consent, start, a pause with a reason,
/// one WAV-like file and a's activity. Returns the chain head.
fn write_session(data: &Path, sid: i64, pids: (&str, &str)) -> String {
    let key = Arc::new(EvidenceKey::load_or_generate(&data.join("keys")).unwrap());
    let dir = data.join("sessions").join(sid.to_string());
    let t0 = 1_790_000_000_000i64;
    let at = |ms: i64| Timestamp::from_unix_millis(t0 + ms).unwrap();
    let header = SessionHeader { room: "r".into(), case_id: Some("1".into()), session_id: sid.to_string() };
    let mut w = ManifestWriter::create(&dir, key, header, at(-2000)).unwrap();
    let (m, a) = pids;
    w.append(at(-1500), None, Body::Participant { pid: m.into(), name: "王调解员".into(), role: "mediator".into() }).unwrap();
    w.append(at(-1500), None, Body::Participant { pid: a.into(), name: "张三".into(), role: "applicant".into() }).unwrap();
    w.append(at(-1000), Some(a), Body::Consent { answer: Answer::Accept }).unwrap();
    w.append(at(0), Some(m), Body::Start {}).unwrap();
    std::fs::create_dir_all(dir.join("audio")).unwrap();
    w.open_file(at(0), &format!("audio/{a}.wav"), Some(a), TrackKind::Audio, Some("WAV")).unwrap();
    std::fs::write(dir.join(format!("audio/{a}.wav")), vec![7u8; 5000]).unwrap();
    w.append(at(3000), Some(m), Body::Pause { reason: "休息十分钟".into() }).unwrap();
    w.append(at(5000), Some(m), Body::Resume {}).unwrap();
    w.append(at(10_000), Some(m), Body::Stop {}).unwrap();
    w.close_file(at(10_100), &format!("audio/{a}.wav"), FileStatus::Closed).unwrap();
    let activity = json!({"v":1,"session_id": sid.to_string(),"pid": a,"name":"张三","role":"applicant",
        "start":"2026-09-21T00:00:00.000Z","resolution_ms":100,"levels": vec![127u8; 100],"segments":[[1200,2500],[6000,9000]]});
    std::fs::write(dir.join(format!("audio/{a}.activity.json")), activity.to_string()).unwrap();
    w.finish(at(10_200)).unwrap().to_hex()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_view_and_verify_check_role_case_and_files() {
    let (server, dir) = start().await;
    let logins = fengqiao_cases::load_demo_data(&server.cases).await.unwrap();
    let mut api = Api { base: server.public_url.clone(), http: reqwest::Client::new(), tokens: HashMap::new() };
    for l in &logins {
        api.login(&l.username, &l.password).await;
    }
    // A mediator of another organisation.
    let orgs = api.call(Some("admin"), "GET", "/api/orgs", None).await.1;
    let other_org = orgs[1]["id"].as_i64().unwrap();
    let (st, _) = api
        .call(Some("admin"), "POST", "/api/users", Some(json!({"username":"mediator2","display_name":"陈调解员","role":"mediator","org_id":other_org,"password":"another-password-1"})))
        .await;
    assert_eq!(st, 201);
    api.login("mediator2", "another-password-1").await;

    // One dispute through to a scheduled session, by the API.
    let d = api
        .call(Some("triage"), "POST", "/api/disputes", Some(json!({"category":"neighbour","description":"漏水","parties":[{"kind":"applicant","name":"张三"},{"kind":"respondent","name":"李四"}]})))
        .await
        .1;
    let id = d["dispute"]["id"].as_i64().unwrap();
    let org = orgs[0]["id"].as_i64().unwrap();
    assert_eq!(api.call(Some("triage"), "POST", &format!("/api/disputes/{id}/triage"), Some(json!({"org_id": org}))).await.0, 200);
    let meds = api.call(Some("orgadmin"), "GET", &format!("/api/mediators?org_id={org}"), None).await.1;
    let med = meds.as_array().unwrap().iter().find(|m| m["user_id"].is_i64()).unwrap()["id"].as_i64().unwrap();
    assert_eq!(api.call(Some("orgadmin"), "POST", &format!("/api/disputes/{id}/accept"), Some(json!({"mediator_id": med}))).await.0, 200);
    let s = api
        .call(Some("mediator"), "POST", &format!("/api/disputes/{id}/sessions"), Some(json!({"scheduled_at":"2026-12-01T09:00:00+08:00","duration_minutes":60})))
        .await
        .1;
    let sid = s["session"]["id"].as_i64().unwrap();
    let pids: Vec<(String, String)> = s["invites"].as_array().unwrap().iter().map(|i| (i["pid"].as_str().unwrap().to_owned(), i["role"].as_str().unwrap().to_owned())).collect();
    let m = &pids.iter().find(|p| p.1 == "mediator").unwrap().0;
    let a = &pids.iter().find(|p| p.1 == "applicant").unwrap().0;
    let ev = format!("/api/evidence/disputes/{id}/sessions/{sid}");

    // Before anything is recorded: an empty view, and verify fails on the manifest.
    let (st, v) = api.call(Some("judge"), "GET", &ev, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["recorded"], json!(false));
    let (st, r) = api.call(Some("judge"), "POST", &format!("{ev}/verify"), None).await;
    assert_eq!((st, r["ok"].clone()), (200, json!(false)), "{r}");

    let head = write_session(dir.path(), sid, (m, a));
    let (st, v) = api.call(Some("judge"), "GET", &ev, None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["recorded"], json!(true));
    assert_eq!(v["integrity_check_value"], json!(head));
    assert_eq!(v["duration_ms"], json!(10_000));
    assert_eq!(v["participants"][1]["consent"], json!("accept"));
    assert_eq!(v["participants"][0]["consent"], Value::Null);
    let log: Vec<(String, Value)> = v["log"].as_array().unwrap().iter().map(|e| (e["type"].as_str().unwrap().to_owned(), e["detail"].clone())).collect();
    assert_eq!(log[2], ("pause".to_owned(), json!("休息十分钟")), "{log:?}");
    assert_eq!(v["log"][2]["at_ms"], json!(3000));
    assert_eq!(v["lanes"][0]["pid"], json!(a));
    assert_eq!(v["lanes"][0]["segments"], json!([[1200, 2500], [6000, 9000]]));
    assert_eq!(v["files"][0]["status"], json!("closed"));

    // Who may: judge, clerk, the assigned mediator. Who may not: 401/403, never data.
    for who in ["clerk", "mediator"] {
        assert_eq!(api.call(Some(who), "GET", &ev, None).await.0, 200, "{who}");
    }
    for who in ["mediator2", "triage", "orgadmin", "admin"] {
        let (st, body) = api.call(Some(who), "GET", &ev, None).await;
        assert_eq!(st, 403, "{who}: {body}");
        assert!(!body.to_string().contains(&head), "{who} got data");
        assert_eq!(api.call(Some(who), "POST", &format!("{ev}/verify"), None).await.0, 403, "{who} verify");
    }
    assert_eq!(api.call(None, "GET", &ev, None).await.0, 401);
    // Bad ids and a session of another dispute.
    let (st, e) = api.call(Some("judge"), "GET", &format!("/api/evidence/disputes/x/sessions/{sid}"), None).await;
    assert_eq!((st, e["field"].clone()), (422, json!("id")));
    let (st, e) = api.call(Some("judge"), "GET", &format!("/api/evidence/disputes/{id}/sessions/0"), None).await;
    assert_eq!((st, e["field"].clone()), (422, json!("sid")));
    assert_eq!(api.call(Some("judge"), "GET", &format!("/api/evidence/disputes/1/sessions/{sid}"), None).await.0, 404);
    assert_eq!(api.call(Some("judge"), "GET", &format!("/api/evidence/disputes/999999/sessions/{sid}"), None).await.0, 404);

    // Verify passes with the server's key, one result per file; one flipped byte fails
    // and names the file.
    let (st, r) = api.call(Some("clerk"), "POST", &format!("{ev}/verify"), None).await;
    assert_eq!(st, 200);
    assert_eq!(r["ok"], json!(true), "{r}");
    assert_eq!(r["integrity_check_value"], json!(head));
    assert_eq!(r["files"], json!([{"path": format!("audio/{a}.wav"), "ok": true, "problems": []}]));
    let wav = dir.path().join(format!("sessions/{sid}/audio/{a}.wav"));
    let mut b = std::fs::read(&wav).unwrap();
    b[10] ^= 0x80;
    std::fs::write(&wav, b).unwrap();
    let (_, r) = api.call(Some("judge"), "POST", &format!("{ev}/verify"), None).await;
    assert_eq!(r["ok"], json!(false));
    assert_eq!(r["files"][0]["ok"], json!(false), "{r}");
    assert!(!r["files"][0]["problems"].as_array().unwrap().is_empty());

    // Audited: views and verifies, and the refusals.
    let audit = api.call(Some("admin"), "GET", "/api/audit?action=evidence.view&per_page=200", None).await.1;
    let items = audit["items"].as_array().unwrap();
    assert!(items.iter().filter(|e| e["outcome"] == json!("ok")).count() >= 4);
    assert!(items.iter().filter(|e| e["outcome"] == json!("denied")).count() >= 4);
    let audit = api.call(Some("admin"), "GET", "/api/audit?action=evidence.verify&per_page=200", None).await.1;
    assert!(audit["total"].as_i64().unwrap() >= 3);
    server.shutdown().await;
}
