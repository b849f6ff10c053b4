//! The WebDriver side of the browser tests (`tests/browser`, `tests/staff`): a
//! chromedriver or geckodriver child process on a free loopback port, killed on drop,
//! and a session on it with the caller's capabilities. What each test asks of the
//! browser (fake media, window size, language) stays in its capabilities.

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running WebDriver server, in a process group of its own with the browsers it
/// starts: dropping this kills the whole group, so a browser whose session was never
/// ended (a failed case) does not outlive the test.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's id is the driver's pid (`process_group(0)` below).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// geckodriver from `cargo install` (`~/.cargo/bin`, where `scripts/deps.sh` puts it),
/// else from `PATH`.
fn geckodriver_path() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = format!("{home}/.cargo/bin/geckodriver");
    if std::path::Path::new(&cargo_bin).exists() {
        cargo_bin
    } else {
        "geckodriver".into()
    }
}

/// Starts the driver of `browser` (`chromium` or `firefox`) and waits (≤ 15 s) until
/// it listens.
///
/// # Errors
/// An unknown browser, a driver that does not start or does not listen in time.
pub async fn start_driver(browser: &str) -> Result<Driver, String> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("free port: {e}"))?
        .port();
    let mut cmd = match browser {
        "chromium" => {
            let mut c = Command::new("chromedriver");
            c.arg(format!("--port={port}"));
            c
        }
        "firefox" => {
            let mut c = Command::new(geckodriver_path());
            c.args(["--port", &port.to_string(), "--host", "127.0.0.1"]);
            c
        }
        other => return Err(format!("unknown browser {other}")),
    };
    let child = cmd
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("{browser} driver: {e}"))?;
    let driver = Driver { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{browser} driver did not listen on {port}"));
        }
        poll.tick().await;
    }
    Ok(driver)
}

/// Polls `attempt` every `every` until it is done, for at most `within`: `Ok(None)`
/// is done, `Ok(Some(why))` not yet (the last `why` is the timeout's message), `Err`
/// gives up at once.
///
/// # Errors
/// The deadline passed, or `attempt` failed.
pub async fn poll_until<F>(within: Duration, every: Duration, mut attempt: impl FnMut() -> F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<Option<String>, String>>,
{
    let deadline = Instant::now() + within;
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match attempt().await? {
            None => return Ok(()),
            Some(why) if Instant::now() > deadline => return Err(format!("not within {within:?}: {why}")),
            Some(_) => {}
        }
    }
}

/// A new browser session on `driver` with `caps`.
///
/// # Errors
/// The driver refused the session (`what` names it in the message).
pub async fn connect(driver: &Driver, caps: Capabilities, what: &str) -> Result<Client, String> {
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .map_err(|e| format!("{what} session: {e}"))
}
