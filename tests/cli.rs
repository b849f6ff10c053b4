//! The `fengqiao` binary's command line: `db migrate`, `admin create-user`,
//! `demo-data`, configuration errors, and `serve` with the case API mounted.
//!
//! Every test runs the real binary in a temporary folder on SQLite and waits on
//! conditions (process exit, log lines) with deadlines.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt as _;

const BIN: &str = env!("CARGO_BIN_EXE_fengqiao");
/// Generous: the machine is shared, and a first SQLite open runs every migration.
const DEADLINE: Duration = Duration::from_secs(90);

/// The binary with a clean `FENGQIAO_*` environment, JSON logs and `data_dir` under `dir`.
fn fengqiao(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    with_test_env(&mut c, dir);
    c
}

/// `fengqiao ARGS` in a private mount namespace (`unshare -m`), so a test can
/// remount parts of it without touching the machine.
fn fengqiao_in_mount_ns(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", BIN]).args(args);
    with_test_env(&mut c, dir);
    c
}

fn with_test_env(c: &mut Command, dir: &Path) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FENGQIAO_") {
            c.env_remove(k);
        }
    }
    c.current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env("NO_COLOR", "1")
        .env("FENGQIAO_DATA_DIR", dir.join("data"))
        .env("FENGQIAO_LOG__FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
}

struct Out {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `c` to completion (killing it after [`DEADLINE`]), feeding `stdin` if given.
fn run(mut c: Command, stdin: Option<&str>) -> Out {
    if stdin.is_some() {
        c.stdin(Stdio::piped());
    }
    let mut child = c.spawn().expect("spawn fengqiao");
    if let Some(s) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(s.as_bytes()).unwrap();
    }
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let ho = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = so.read_to_string(&mut s);
        s
    });
    let he = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let Some(status) = child.wait_timeout(DEADLINE).unwrap() else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("fengqiao did not exit within {DEADLINE:?}; stderr:\n{}", he.join().unwrap());
    };
    Out { status, stdout: ho.join().unwrap(), stderr: he.join().unwrap() }
}

fn ok(o: &Out) {
    assert!(o.status.success(), "exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status, o.stdout, o.stderr);
}

/// `(role, username, password)` of every login line after "Demo logins".
fn demo_logins(stdout: &str) -> Vec<(String, String, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.starts_with("Demo logins"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 3).then(|| (f[0].to_owned(), f[1].to_owned(), f[2].to_owned()))
        })
        .collect()
}

const ROLES: [&str; 6] = ["admin", "triage", "org_admin", "mediator", "judge", "clerk"];

#[test]
fn db_migrate_creates_the_database_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(fengqiao(dir.path(), &["db", "migrate"]), None);
    ok(&o);
    assert!(o.stdout.contains("database migrated"), "{}", o.stdout);
    let db = dir.path().join("data/fengqiao.db");
    let head = std::fs::read(&db).expect("data/fengqiao.db exists");
    assert!(head.starts_with(b"SQLite format 3\0"), "not an SQLite file");
    // WAL mode is persistent in the file header (bytes 18 and 19 are 2).
    assert_eq!((head[18], head[19]), (2, 2), "journal mode is not WAL");
    assert!(dir.path().join("data/keys/invite.key").exists());
    ok(&run(fengqiao(dir.path(), &["db", "migrate"]), None));

    // An explicit SQLite URL elsewhere is honoured.
    let other = dir.path().join("elsewhere/cases.db");
    let mut c = fengqiao(dir.path(), &["db", "migrate"]);
    c.env("FENGQIAO_DATABASE__URL", format!("sqlite://{}", other.display()));
    ok(&run(c, None));
    assert!(other.exists());
}

#[test]
fn demo_data_prints_one_login_per_role_once() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(fengqiao(dir.path(), &["demo-data"]), None);
    ok(&o);
    let logins = demo_logins(&o.stdout);
    for role in ROLES {
        assert!(logins.iter().any(|(r, _, p)| r == role && p.len() >= 10), "no {role} login in:\n{}", o.stdout);
    }
    // A second load is refused (the demo organisations exist), and says so.
    let again = run(fengqiao(dir.path(), &["demo-data"]), None);
    assert!(!again.status.success(), "second demo-data succeeded:\n{}", again.stdout);
    assert!(again.stderr.contains("loaded already"), "{}", again.stderr);
    assert!(demo_logins(&again.stdout).is_empty());
}

#[test]
fn admin_create_user() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["admin", "create-user", "--username", "judge_wu", "--name", "吴法官", "--role", "judge", "--password-stdin"];
    let o = run(fengqiao(dir.path(), &args), Some("judge-password-1\n"));
    ok(&o);
    assert!(o.stdout.contains("created user judge_wu"), "{}", o.stdout);
    assert!(!o.stdout.contains("judge-password-1"), "a given password is not echoed");

    // Taken user name: 409-style conflict naming the field.
    let o = run(fengqiao(dir.path(), &args), Some("judge-password-2\n"));
    assert!(!o.status.success());
    assert!(o.stderr.contains("conflict") && o.stderr.contains("username"), "{}", o.stderr);

    // Too short a password: the field is named.
    let o = run(
        fengqiao(dir.path(), &["admin", "create-user", "--username", "short_pw", "--name", "X", "--role", "admin", "--password-stdin"]),
        Some("short\n"),
    );
    assert!(!o.status.success());
    assert!(o.stderr.contains("password"), "{}", o.stderr);

    // Generated password, printed once.
    let o = run(fengqiao(dir.path(), &["admin", "create-user", "--username", "clerk_li", "--name", "李书记员", "--role", "clerk"]), None);
    ok(&o);
    let pw = o.stdout.lines().find_map(|l| l.strip_prefix("password: ")).expect("password printed");
    assert!(pw.len() >= 10 && pw.chars().all(|c| c.is_ascii_alphanumeric()), "{pw:?}");

    // Unknown role: refused by the parser before anything is opened.
    let o = run(fengqiao(dir.path(), &["admin", "create-user", "--username", "y", "--name", "Y", "--role", "boss"]), None);
    assert!(!o.status.success());
    assert!(o.stderr.contains("boss") && o.stderr.contains("org_admin"), "{}", o.stderr);
}

#[test]
fn bad_config_values_fail_at_start_up_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |envs: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec!["serve"];
        args.extend_from_slice(extra);
        let mut c = fengqiao(dir.path(), &args);
        // Should the configuration be accepted by mistake, these keep the server harmless
        // (and the deadline in `run` ends it).
        c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0").env("FENGQIAO_MEDIA__UDP_PORT", "0");
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = run(c, None);
        assert!(!o.status.success(), "started with {envs:?} {extra:?}:\n{}", o.stderr);
        o.stderr
    };
    let e = serve(&[("FENGQIAO_MEDIA__UDP_PORT", "abc")], &[]);
    assert!(e.contains("media.udp_port"), "{e}");
    let e = serve(&[("FENGQIAO_DATABASE__URL", "nonsense://x")], &[]);
    assert!(e.contains("database.url"), "{e}");
    let e = serve(&[("FENGQIAO_CASES__UTC_OFFSET_HOURS", "99")], &[]);
    assert!(e.contains("cases.utc_offset_hours"), "{e}");
    let e = serve(&[("FENGQIAO_CASES__DEADLINES__MEDIATION_DAYS", "thirty")], &[]);
    assert!(e.contains("cases.deadlines.mediation_days"), "{e}");

    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "[cases]\nholidays = [\"2025-13-01\"]\n").unwrap();
    let e = serve(&[], &["--config", toml.to_str().unwrap()]);
    assert!(e.contains("cases.holidays"), "{e}");
    std::fs::write(&toml, "[cases]\ndata_dir = \"elsewhere\"\n").unwrap();
    let e = serve(&[], &["--config", toml.to_str().unwrap()]);
    assert!(e.contains("cases.data_dir"), "{e}");
    std::fs::write(&toml, "[database]\nurl = \"postgres\"\npassword = \"x\"\n").unwrap();
    let e = serve(&[], &["--config", toml.to_str().unwrap()]);
    assert!(e.contains("database.password"), "{e}");

    // The CLI subcommands check the same configuration.
    let mut c = fengqiao(dir.path(), &["db", "migrate"]);
    c.env("FENGQIAO_DATABASE__URL", "nonsense://x");
    let o = run(c, None);
    assert!(!o.status.success() && o.stderr.contains("database.url"), "{}", o.stderr);

    // Nothing was created by any of these.
    assert!(!dir.path().join("data/fengqiao.db").exists());
}

/// A `fengqiao serve` child whose output lines are collected as they come.
struct Server {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// One message per output line; disconnected once both pipes are closed.
    lines: std::sync::mpsc::Receiver<()>,
}

impl Server {
    fn spawn(mut c: Command) -> Self {
        let mut child = c.spawn().expect("spawn fengqiao serve");
        let (tx, lines) = std::sync::mpsc::channel();
        let collect = |r: Box<dyn Read + Send>| {
            let out = Arc::new(Mutex::new(Vec::new()));
            let (o2, tx) = (out.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines().map_while(Result::ok) {
                    o2.lock().unwrap().push(line);
                    let _ = tx.send(());
                }
            });
            out
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Server { child, stdout, stderr, lines }
    }

    /// Waits until `f` finds something in (stdout, stderr), or panics at the deadline
    /// or when the process ends first.
    fn wait_for<T>(&mut self, what: &str, f: impl Fn(&[String], &[String]) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(t) = f(&self.stdout.lock().unwrap(), &self.stderr.lock().unwrap()) {
                return t;
            }
            // Wake on the next output line; both pipes closed means the process ended.
            let left = deadline.saturating_duration_since(Instant::now());
            let next = self.lines.recv_timeout(left);
            if next.is_err() {
                let exited = self.child.try_wait().unwrap();
                panic!(
                    "waiting for {what}: {}\nstdout:\n{}\nstderr:\n{}",
                    exited.map_or("deadline passed".to_owned(), |s| format!("exited with {s}")),
                    self.stdout.lock().unwrap().join("\n"),
                    self.stderr.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// SIGTERM, then the exit status (within the deadline).
    fn terminate(&mut self) -> ExitStatus {
        let st = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(st.success());
        self.child.wait_timeout(DEADLINE).unwrap().expect("exit within the deadline after SIGTERM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fields of the JSON log line whose message is `msg`.
fn log_fields(stderr: &[String], msg: &str) -> Option<Value> {
    stderr.iter().find_map(|l| {
        let v: Value = serde_json::from_str(l).ok()?;
        (v["fields"]["message"] == msg).then(|| v["fields"].clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_mounts_the_case_api_and_loads_demo_data_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let start_serve = || {
        let mut c = fengqiao(dir.path(), &["serve", "--demo-invites"]);
        c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0").env("FENGQIAO_MEDIA__UDP_PORT", "0");
        let mut s = Server::spawn(c);
        let f = s.wait_for("the listening log line", |_, e| log_fields(e, "fengqiao listening"));
        let http: std::net::SocketAddr = f["http"].as_str().unwrap().parse().unwrap();
        let media: std::net::SocketAddr = f["media"].as_str().unwrap().parse().unwrap();
        assert_ne!(http.port(), 0);
        assert_ne!(media.port(), 0);
        (s, http)
    };
    let (mut s, http) = tokio::task::block_in_place(start_serve);
    let base = format!("http://{http}");

    // First start: demo logins, then the room invites.
    let out = tokio::task::block_in_place(|| {
        s.wait_for("the end of the start-up banner", |o, _| {
            o.iter().any(|l| l.starts_with("Case API:")).then(|| o.join("\n"))
        })
    });
    let logins = demo_logins(&out);
    for role in ROLES {
        assert!(logins.iter().any(|(r, _, _)| r == role), "no {role} login in:\n{out}");
    }
    assert!(out.contains(&format!("{base}/join/")), "{out}");

    let http_client = reqwest::Client::new();
    let doc: Value = http_client.get(format!("{base}/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["paths"]["/api/disputes"].is_object());
    let r = http_client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = http_client.get(format!("{base}/join/x")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the web pages are still served");
    let r = http_client.get(format!("{base}/api/no-such-thing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not_found");
    let r = http_client.get(format!("{base}/no-such-page")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http_client.get(format!("{base}/api/disputes")).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // A demo login through the API, then its session as a cookie.
    let login = |user: String, password: String| {
        let c = http_client.clone();
        let url = format!("{base}/api/auth/login");
        async move {
            let r = c.post(url).json(&serde_json::json!({"username": user, "password": password})).send().await.unwrap();
            assert_eq!(r.status(), 200, "login of {user}");
            let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_owned();
            assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
            cookie.split(';').next().unwrap().to_owned()
        }
    };
    let (_, admin, admin_pw) = logins.iter().find(|(r, _, _)| r == "admin").unwrap().clone();
    let cookie = login(admin.clone(), admin_pw).await;
    let me: Value = http_client
        .get(format!("{base}/api/auth/me"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user"]["username"], admin.as_str(), "{me}");
    let list: Value = http_client
        .get(format!("{base}/api/disputes?per_page=5"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["total"].as_i64().unwrap() > 0, "demo disputes: {list}");
    // The audit log got the client address (connect info is served).
    let audit: Value = http_client
        .get(format!("{base}/api/audit?action=auth.login"))
        .header(reqwest::header::COOKIE, &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let addrs: Vec<&str> = audit["items"].as_array().unwrap().iter().filter_map(|e| e["client_addr"].as_str()).collect();
    assert!(addrs.iter().any(|a| a.starts_with("127.0.0.1:")), "{audit}");

    // `admin create-user` from another process against the running server's store.
    let o = tokio::task::block_in_place(|| {
        run(
            fengqiao(dir.path(), &["admin", "create-user", "--username", "triage_cli", "--name", "分流员", "--role", "triage", "--password-stdin"]),
            Some("triage-cli-password\n"),
        )
    });
    ok(&o);
    let cookie = login("triage_cli".into(), "triage-cli-password".into()).await;
    let r = http_client.get(format!("{base}/api/disputes")).header(reqwest::header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let st = tokio::task::block_in_place(|| s.terminate());
    assert!(st.success(), "exit after SIGTERM: {st:?}");
    drop(s);

    // Second start: staff exist, so no new demo logins.
    let (mut s, _) = tokio::task::block_in_place(start_serve);
    let out = tokio::task::block_in_place(|| {
        s.wait_for("the end of the start-up banner", |o, _| {
            o.iter().any(|l| l.starts_with("Case API:")).then(|| o.join("\n"))
        })
    });
    assert!(demo_logins(&out).is_empty(), "{out}");
    assert!(out.contains("staff accounts exist already"), "{out}");
    let st = tokio::task::block_in_place(|| s.terminate());
    assert!(st.success(), "exit after SIGTERM: {st:?}");
}

fn nsenter_mount(pid: u32, args: &[&str]) {
    let st = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "mount"])
        .args(args)
        .status()
        .expect("nsenter runs");
    assert!(st.success(), "mount {args:?} in the server's namespace");
}

/// `/readyz` names a read-only data folder and recovers when it is writable
/// again; `/metrics` counts the requests by route template. The server runs in
/// its own mount namespace (root ignores file modes, so a read-only bind mount
/// is the honest way to make the folder unwritable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_a_read_only_data_folder_and_metrics_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = fengqiao_in_mount_ns(dir.path(), &["serve"]);
    c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0").env("FENGQIAO_MEDIA__UDP_PORT", "0");
    let mut s = Server::spawn(c);
    let f = s.wait_for("the listening log line", |_, e| log_fields(e, "fengqiao listening"));
    let base = format!("http://{}", f["http"].as_str().unwrap());
    let pid = s.child.id();
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await, (200, "ready\n".to_owned()));

    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    nsenter_mount(pid, &["--bind", data, data]);
    nsenter_mount(pid, &["-o", "remount,bind,ro", data]);
    let (code, body) = get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("data_dir:") && body.contains("not writable"), "{body}");
    assert!(!body.contains("database:") && !body.contains("media:"), "only the folder failed: {body}");
    nsenter_mount(pid, &["-o", "remount,bind,rw", data]);
    assert_eq!(get("/readyz").await.0, 200);

    let (code, m) = get("/metrics").await;
    assert_eq!(code, 200);
    for needle in [
        "fengqiao_rooms 0",
        "fengqiao_participants 0",
        "fengqiao_media_packets_dropped_total{reason=\"unknown_peer\"}",
        "fengqiao_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"503\"} 1",
        "fengqiao_http_requests_total{route=\"/readyz\",method=\"GET\",status=\"200\"} 2",
    ] {
        assert!(m.contains(needle), "/metrics lacks {needle:?}:\n{m}");
    }
    assert_eq!(s.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_print_default_round_trips_and_serve_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(fengqiao(dir.path(), &["config", "print-default"]), None);
    ok(&o);
    let text = o.stdout;
    // Every key line carries its unit and default in the comment above it.
    let lines: Vec<&str> = text.lines().collect();
    let mut keys = 0;
    for (i, l) in lines.iter().enumerate() {
        if !l.is_empty() && !l.starts_with('#') && !l.starts_with('[') {
            keys += 1;
            assert!(i > 1 && lines[i - 1].starts_with("# Unit: ") && !lines[i - 2].is_empty(), "undocumented: {l}\n{text}");
        }
    }
    for k in ["data_dir", "http_addr", "udp_port", "format", "case_number_format", "warn_before_hours"] {
        assert!(lines.iter().any(|l| l.starts_with(&format!("{k} = "))), "no {k} in:\n{text}");
    }
    for k in ["public_ip", "url", "secure_cookies"] {
        assert!(lines.iter().any(|l| l.starts_with(&format!("# {k} = "))), "no commented {k} in:\n{text}");
    }
    assert!(keys >= 28, "{keys} keys in:\n{text}");

    // It parses back into the embedded defaults.
    let file = dir.path().join("fengqiao.toml");
    std::fs::write(&file, &text).unwrap();
    let printed = fengqiao::config::Config::load(Some(&file)).unwrap();
    let embedded = fengqiao::config::Config::load(None).unwrap();
    assert_eq!(format!("{printed:?}"), format!("{embedded:?}"));
    // The commented examples are valid too.
    let examples = dir.path().join("examples.toml");
    std::fs::write(&examples, text.replace("\n# public_ip = ", "\npublic_ip = ").replace("\n# url = ", "\nurl = ").replace("\n# secure_cookies = ", "\nsecure_cookies = ")).unwrap();
    let ex = fengqiao::config::Config::load(Some(&examples)).unwrap();
    assert!(ex.media.public_ip.is_some() && ex.database.url.is_some() && ex.cases.secure_cookies.is_some());

    // `serve --config <that file>` starts (ports overridden to 0: the defaults may be taken).
    let mut c = fengqiao(dir.path(), &["serve", "--config", file.to_str().unwrap()]);
    c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0").env("FENGQIAO_MEDIA__UDP_PORT", "0");
    let mut s = Server::spawn(c);
    let http = tokio::task::block_in_place(|| {
        s.wait_for("the listening log line", |_, e| log_fields(e, "fengqiao listening"))
    })["http"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = reqwest::get(format!("http://{http}/readyz")).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let st = tokio::task::block_in_place(|| s.terminate());
    assert!(st.success(), "{st:?}");
}

// --------------------------------------------------- recording across a kill / SIGTERM

/// A token minted by `fengqiao invite` against the data folder in `dir`.
fn invite_token(dir: &Path, room: &str, pid: &str, role: &str) -> String {
    let o = run(fengqiao(dir, &["invite", "--room", room, "--name", pid, "--role", role, "--pid", pid, "--admitted"]), None);
    ok(&o);
    let url = o.stdout.lines().find(|l| l.contains("/join/")).expect("a join URL").trim().to_owned();
    url.rsplit('/').next().unwrap().to_owned()
}

/// Starts `fengqiao serve` on free ports with 10 s segments; returns it and its ws URL.
fn serve_recording(dir: &Path) -> (Server, String) {
    let mut c = fengqiao(dir, &["serve"]);
    c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0")
        .env("FENGQIAO_MEDIA__UDP_PORT", "0")
        .env("FENGQIAO_RECORDER__SEGMENT_SECS", "10");
    let mut s = Server::spawn(c);
    let f = s.wait_for("the listening log line", |_, e| log_fields(e, "fengqiao listening"));
    let ws = format!("ws://{}/ws", f["http"].as_str().unwrap());
    (s, ws)
}

/// Mediator m1 and applicant a1 (real VP8 + Opus) join, recording starts, a1 consents.
async fn recorded_pair(dir: &Path, ws: &str, room: &str) -> (common::Client, common::Client) {
    use common::media::RealMedia;
    let m = common::Client::join_ws(ws, "m1", invite_token(dir, room, "m1", "mediator"), Some(RealMedia::tone(700.0))).await;
    let a = common::Client::join_ws(ws, "a1", invite_token(dir, room, "a1", "applicant"), Some(RealMedia::tone(440.0))).await;
    common::wait_for("connected", Duration::from_secs(15), || {
        m.connected.load(std::sync::atomic::Ordering::SeqCst) && a.connected.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    m.send(json!({"type": "record", "action": "start"})).await;
    common::wait_for("the recording notice", Duration::from_secs(15), || a.saw(|v| v["type"] == "recording")).await;
    a.send(json!({"type": "consent", "answer": "accept"})).await;
    let t = Instant::now();
    while !m.saw(|v| v["type"] == "recording" && v["state"] == "recording") {
        assert!(t.elapsed() < Duration::from_secs(15), "recording never ran; mediator saw {:?}", m.msgs_of("recording").into_iter().chain(m.msgs_of("error")).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (m, a)
}

fn manifest_entries(session: &Path) -> Vec<Value> {
    std::fs::read_to_string(session.join("manifest.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The manifest's complete lines while the recorder is still writing it (a missing
/// file or a half-written last line reads as fewer entries).
fn manifest_entries_so_far(session: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(session.join("manifest.jsonl")).unwrap_or_default();
    text.lines().map_while(|l| serde_json::from_str(l).ok()).collect()
}

fn verify_session(dir: &Path, session: &Path) -> fengqiao_recorder::Report {
    let key = fengqiao_recorder::EvidenceKey::load(&dir.join("data/keys")).unwrap();
    fengqiao_recorder::verify(session, key.public_key())
}

/// Seconds of VP8 video GStreamer decodes from a Matroska file.
fn decoded_video_secs(path: &Path) -> f64 {
    let out = Command::new("gst-launch-1.0")
        .args(["filesrc"])
        .arg(format!("location={}", path.display()))
        .args(["!", "matroskademux", "!", "vp8dec", "!", "fakesink", "silent=false", "-v"])
        .output()
        .expect("gst-launch-1.0 runs");
    // fakesink -v prints each buffer's pts; the last one is the decoded duration.
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split("pts: ").nth(1))
        .filter_map(|p| p.split(',').next())
        .filter_map(|p| {
            let mut it = p.trim().split(':');
            let (h, m, s) = (it.next()?.parse::<f64>().ok()?, it.next()?.parse::<f64>().ok()?, it.next()?.parse::<f64>().ok()?);
            Some(h * 3600.0 + m * 60.0 + s)
        })
        .fold(0.0, f64::max)
}

/// A `fengqiao serve` process in a fresh folder with `room` being recorded.
struct Recorded {
    dir: tempfile::TempDir,
    server: Server,
    m: common::Client,
    a: common::Client,
}

async fn recorded_server(room: &str) -> Recorded {
    let dir = tempfile::tempdir().unwrap();
    let (server, ws) = tokio::task::block_in_place(|| serve_recording(dir.path()));
    let (m, a) = recorded_pair(dir.path(), &ws, room).await;
    Recorded { dir, server, m, a }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_recording_leaves_verifiable_evidence() {
    let room = "crash-room";
    let Recorded { dir, server: mut s, m, a } = recorded_server(room).await;
    // One closed 10 s segment per track, and an open one that has recorded for 3 s.
    let session = dir.path().join("data/sessions").join(room);
    common::wait_for("a closed video segment and 3 s of the next", Duration::from_secs(60), || {
        let e = manifest_entries_so_far(&session);
        let closed = e.iter().any(|x| x["type"] == "file" && x["path"].as_str().is_some_and(|p| p.starts_with("tracks/a1-video-0-")));
        let open_for = e
            .iter()
            .rev()
            .find(|x| x["type"] == "file_open" && x["path"].as_str().is_some_and(|p| p.contains("-video-")))
            .and_then(|x| chrono::DateTime::parse_from_rfc3339(x["t"].as_str()?).ok())
            .map(|t| chrono::Utc::now().signed_duration_since(t).num_milliseconds());
        closed && open_for.is_some_and(|ms| ms >= 3000)
    })
    .await;
    let open_video: Vec<String> = {
        let e = manifest_entries(&session);
        let opened: Vec<String> =
            e.iter().filter(|x| x["type"] == "file_open").filter_map(|x| x["path"].as_str().map(str::to_owned)).collect();
        let closed: Vec<String> = e.iter().filter(|x| x["type"] == "file").filter_map(|x| x["path"].as_str().map(str::to_owned)).collect();
        assert!(closed.iter().any(|p| p.starts_with("tracks/a1-video-0-")), "a closed video segment before the kill: {closed:?}");
        opened.into_iter().filter(|p| !closed.contains(p) && p.contains("-video-")).collect()
    };
    let open_since = {
        let e = manifest_entries(&session);
        let last_open = e.iter().rev().find(|x| x["type"] == "file_open" && open_video.iter().any(|p| x["path"] == p.as_str())).unwrap();
        chrono::DateTime::parse_from_rfc3339(last_open["t"].as_str().unwrap()).unwrap()
    };
    let killed_at = chrono::Utc::now();
    let st = Command::new("kill").args(["-KILL", &s.child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let _ = s.child.wait();
    drop(s);
    drop((m, a));

    // Restart: the interrupted session is closed out and verifies.
    let (mut s2, _) = tokio::task::block_in_place(|| serve_recording(dir.path()));
    tokio::task::block_in_place(|| {
        s2.wait_for("the close-out log line", |_, e| log_fields(e, "closed out a session interrupted by a crash or kill"))
    });
    let report = verify_session(dir.path(), &session);
    assert!(report.is_ok(), "verify after kill -9 and restart: {report}");
    let e = manifest_entries(&session);
    assert_eq!(e.last().unwrap()["type"], "interrupted", "the manifest says interrupted");
    let files: Vec<&Value> = e.iter().filter(|x| x["type"] == "file").collect();
    assert!(files.iter().any(|f| f["status"] == "closed" && f["path"].as_str().unwrap().ends_with(".mkv")), "closed segments kept");
    // The interrupted video segment plays up to at most 2 s before the kill.
    for p in &open_video {
        let f = files.iter().find(|f| f["path"] == p.as_str()).expect("the open segment was hashed");
        assert_eq!(f["status"], "interrupted");
        let played = decoded_video_secs(&session.join(p));
        let lived = (killed_at - open_since.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0;
        eprintln!("interrupted segment {p}: plays {played:.2} s of {lived:.2} s before the kill");
        assert!(played >= lived - 2.0, "{p} plays {played:.2} s; it was open {lived:.2} s before the kill");
    }
    assert_eq!(s2.terminate().code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_closes_recordings_as_interrupted_and_exits_0() {
    let room = "term-room";
    let Recorded { dir, server: mut s, m, a } = recorded_server(room).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let t0 = Instant::now();
    let st = tokio::task::block_in_place(|| s.terminate());
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "exit 0 after SIGTERM");
    assert!(took < Duration::from_secs(30), "within the 30 s grace period: {took:?}");
    eprintln!("SIGTERM to exit with a recording open: {took:?}");
    common::wait_for("participants told", Duration::from_secs(5), || {
        m.saw(|v| v["type"] == "closed" && v["reason"] == "server_shutdown")
            && a.saw(|v| v["type"] == "recording" && v["state"] == "stopped")
    })
    .await;
    let session = dir.path().join("data/sessions").join(room);
    let report = verify_session(dir.path(), &session);
    assert!(report.is_ok(), "verify after SIGTERM: {report}");
    let e = manifest_entries(&session);
    let last = e.last().unwrap();
    assert_eq!((last["type"].as_str(), last["reason"].as_str()), (Some("interrupted"), Some("server shutdown")));
    assert!(e.iter().any(|x| x["type"] == "file" && x["path"] == "audio/a1.wav" && x["status"] == "closed"));
}

/// Personal data never reaches the log (`docs/deploy.md`, "Logs"): `serve` with
/// JSON logs at debug level for every fengqiao crate runs a case through to a
/// scheduled session (parties with names, phone numbers and ID numbers), the
/// outbox worker logs the invitations, the mediator and a party join the room
/// with their invite tokens, and the log never shows a name, phone number, ID
/// number or token, while it does show the joins and notifications by opaque id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_no_names_phones_id_numbers_or_tokens() {
    const APPLICANT: &str = "欧阳晓梅";
    const RESPONDENT: &str = "司马建国";
    const PHONE: &str = "13912345678";
    const ID_NUMBER: &str = "11010119900307109X";
    let dir = tempfile::tempdir().unwrap();
    let mut c = fengqiao(dir.path(), &["serve", "--demo-invites"]);
    c.env("FENGQIAO_SERVER__HTTP_ADDR", "127.0.0.1:0")
        .env("FENGQIAO_MEDIA__UDP_PORT", "0")
        .env("FENGQIAO_CASES__OUTBOX_INTERVAL_SECS", "1")
        .env(
            "FENGQIAO_LOG__LEVEL",
            "info,fengqiao=debug,fengqiao_sfu=debug,fengqiao_signaling=debug,fengqiao_cases=debug,fengqiao_recorder=debug",
        );
    let mut s = tokio::task::block_in_place(|| Server::spawn(c));
    let f = tokio::task::block_in_place(|| s.wait_for("the listening log line", |_, e| log_fields(e, "fengqiao listening")));
    let http_addr = f["http"].as_str().unwrap().to_owned();
    let base = format!("http://{http_addr}");
    let out = tokio::task::block_in_place(|| {
        s.wait_for("the end of the start-up banner", |o, _| o.iter().any(|l| l.starts_with("Case API:")).then(|| o.join("\n")))
    });
    let logins = demo_logins(&out);
    let http = reqwest::Client::new();
    let mut cookies = std::collections::HashMap::new();
    for role in ["triage", "org_admin", "mediator"] {
        let (_, user, pw) = logins.iter().find(|(r, _, _)| r == role).unwrap_or_else(|| panic!("no {role} in\n{out}"));
        let r = http.post(format!("{base}/api/auth/login")).json(&json!({"username": user, "password": pw})).send().await.unwrap();
        assert_eq!(r.status(), 200, "login {user}");
        let cookie = r.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().split(';').next().unwrap().to_owned();
        cookies.insert(role, cookie);
    }
    let call = |role: &'static str, method: reqwest::Method, path: String, body: Option<Value>| {
        let mut rq = http.request(method, format!("{base}{path}")).header(reqwest::header::COOKIE, cookies[role].clone());
        if let Some(b) = body {
            rq = rq.json(&b);
        }
        async move {
            let r = rq.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    use reqwest::Method;
    let (st, d) = call(
        "triage",
        Method::POST,
        "/api/disputes".into(),
        Some(json!({"category": "neighbour", "description": "楼上漏水", "parties": [
            {"kind": "applicant", "name": APPLICANT, "phone": PHONE, "id_number": ID_NUMBER},
            {"kind": "respondent", "name": RESPONDENT, "phone": "13787654321"}]})),
    )
    .await;
    assert_eq!(st, 201, "{d}");
    let id = d["dispute"]["id"].as_i64().unwrap();
    let (_, orgs) = call("org_admin", Method::GET, "/api/orgs".into(), None).await;
    let me: Value = http
        .get(format!("{base}/api/auth/me"))
        .header(reqwest::header::COOKIE, cookies["org_admin"].clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let org = me["user"]["org_id"].as_i64().or_else(|| orgs[0]["id"].as_i64()).unwrap();
    let (st, v) = call("triage", Method::POST, format!("/api/disputes/{id}/triage"), Some(json!({"org_id": org}))).await;
    assert_eq!(st, 200, "{v}");
    let (_, meds) = call("org_admin", Method::GET, format!("/api/mediators?org_id={org}"), None).await;
    let med = meds.as_array().unwrap().iter().find(|m| m["user_id"].is_i64()).unwrap()["id"].as_i64().unwrap();
    let (st, v) = call("org_admin", Method::POST, format!("/api/disputes/{id}/accept"), Some(json!({"mediator_id": med}))).await;
    assert_eq!(st, 200, "{v}");
    let (st, sess) = call(
        "mediator",
        Method::POST,
        format!("/api/disputes/{id}/sessions"),
        Some(json!({"scheduled_at": "2026-12-01T09:00:00+08:00", "duration_minutes": 60})),
    )
    .await;
    assert!(st == 200 || st == 201, "{st} {sess}");
    let invites = sess["invites"].as_array().unwrap().clone();
    let invite = |role: &str| {
        let i = invites.iter().find(|i| i["role"] == role).unwrap_or_else(|| panic!("no {role} invite: {sess}"));
        let token = i["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned();
        (i["pid"].as_str().unwrap().to_owned(), token)
    };
    let (m_pid, m_token) = invite("mediator");
    let (a_pid, a_token) = invite("applicant");
    let (_, r_token) = invite("respondent");
    // The invite page itself (the token is in the path).
    assert_eq!(http.get(format!("{base}/join/{a_token}")).send().await.unwrap().status(), 200);

    let ws = format!("ws://{http_addr}/ws");
    let m = common::Client::join_ws(&ws, &m_pid, m_token.clone(), None).await;
    let a = common::Client::join_ws(&ws, &a_pid, a_token.clone(), None).await;
    common::wait_for("both connected", Duration::from_secs(20), || {
        m.connected.load(std::sync::atomic::Ordering::SeqCst) && a.connected.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    // A join with a damaged token is refused (and its error logged, if at all, without it).
    let bad = format!("{}x", &r_token[..r_token.len() - 1]);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        let (mut w, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
        use futures_util::SinkExt as _;
        let _ = w.send(tokio_tungstenite::tungstenite::Message::Text(json!({"type": "join", "v": 1, "token": bad}).to_string().into())).await;
        use futures_util::StreamExt as _;
        let _ = w.next().await;
    })
    .await;
    // The outbox worker logs the invitations (to the parties' phones).
    tokio::task::block_in_place(|| {
        s.wait_for("invite notifications in the log", |_, e| {
            e.iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .any(|v| v["fields"]["message"] == "notification" && v["fields"]["kind"] == "invite")
                .then_some(())
        })
    });
    // The mediator removes the applicant with a free-text reason naming them: the
    // reason goes to the session's event log, not the process log.
    m.send(json!({"type": "remove", "id": a_pid, "reason": format!("{APPLICANT}拒不配合")})).await;
    tokio::task::block_in_place(|| {
        s.wait_for("the removal in the log", |_, e| log_fields(e, "removed").map(|_| ()))
    });
    m.leave().await;
    a.leave().await;
    let st = tokio::task::block_in_place(|| s.terminate());
    assert!(st.success(), "{st:?}");

    let log = s.stderr.lock().unwrap().clone();
    // Every tracing line is JSON (a C library such as GStreamer may still print its own
    // plain warnings on stderr; those are checked for secrets below like the rest).
    for l in &log {
        let tracing_text = [" INFO ", " WARN ", " ERROR ", " DEBUG "].iter().any(|lv| l.contains(lv));
        assert!(serde_json::from_str::<Value>(l).is_ok() || !tracing_text, "a tracing line not in JSON: {l}");
    }
    let text = log.join("\n");
    if std::env::var_os("FQ_DUMP_LOG").is_some() {
        eprintln!("{text}");
    }
    // The log is not empty of what matters: joins by opaque participant id, notifications.
    let joined = log.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v["fields"]["message"] == "joined").count();
    assert!(joined >= 2, "no join log lines:\n{text}");
    assert!(text.contains(&a_pid), "participants are logged by their opaque id:\n{text}");
    assert!(text.contains("139****5678"), "phone recipients are logged masked:\n{text}");
    let mut secrets: Vec<(&str, String)> = vec![
        ("applicant name", APPLICANT.into()),
        ("respondent name", RESPONDENT.into()),
        ("phone", PHONE.into()),
        ("respondent phone", "13787654321".into()),
        ("ID number", ID_NUMBER.into()),
        ("mediator display name", "王调解员".into()),
        ("demo party name", "张三".into()),
        ("mediator token", m_token.clone()),
        ("applicant token", a_token.clone()),
        ("respondent token", r_token.clone()),
        ("damaged token", bad.clone()),
    ];
    // A token's signature part alone is just as secret.
    for t in [&m_token, &a_token, &r_token] {
        if let Some(sig) = t.rsplit('.').next().filter(|s| s.len() >= 16) {
            secrets.push(("token signature", sig.to_owned()));
        }
    }
    for (what, s) in secrets {
        let hits: Vec<&String> = log.iter().filter(|l| l.contains(&s)).collect();
        assert!(hits.is_empty(), "the log shows the {what} {s:?}:\n{}", hits.iter().map(|l| l.as_str()).collect::<Vec<_>>().join("\n"));
    }
}

/// `docs/configuration.md` lists every key `config print-default` prints (and no
/// key it does not), so the reference cannot drift from the loader.
#[test]
fn configuration_md_lists_every_key_of_print_default() {
    let dir = tempfile::tempdir().unwrap();
    let o = run(fengqiao(dir.path(), &["config", "print-default"]), None);
    ok(&o);
    let mut section = String::new();
    let mut keys = Vec::new();
    for l in o.stdout.lines() {
        let l = l.trim_start_matches('#').trim();
        if let Some(s) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            section = format!("{s}.");
        } else if let Some((k, _)) = l.split_once(" = ") {
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                keys.push(format!("{section}{k}"));
            }
        }
    }
    assert!(keys.len() >= 30 && keys.contains(&"server.shutdown_grace_secs".to_owned()), "{keys:?}");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md")).unwrap();
    let missing: Vec<&String> = keys.iter().filter(|k| !doc.contains(&format!("| `{k}` |"))).collect();
    assert!(missing.is_empty(), "docs/configuration.md lacks {missing:?}");
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(k, _)| k))
        .filter(|k| k.contains('.') || *k == "data_dir")
        .collect();
    let unknown: Vec<&&str> = documented.iter().filter(|k| !keys.iter().any(|x| x == *k)).collect();
    assert!(unknown.is_empty(), "docs/configuration.md documents keys the loader does not have: {unknown:?}");
}
