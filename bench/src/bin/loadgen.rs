//! `loadgen`: drives real webrtc-rs clients against an SFU on 127.0.0.1 and prints
//! one table (and `bench/results/<scenario>.json` per scenario).
//!
//! The server under test is started by loadgen as a separate process
//! (`--server-bin target/release/fengqiao`, `serve` with a temp data folder, ports 0)
//! so its CPU is read from its own /proc/<pid>/stat.

use clap::Parser;
use fengqiao_bench::adapter::{Adapter, Fengqiao};
use fengqiao_bench::scenario::{self, Report, Scenario};
use fengqiao_bench::target::Target;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "WebRTC SFU load generator (loopback only)")]
struct Args {
    /// The fengqiao binary to start (`serve`).
    #[arg(long, default_value = "target/release/fengqiao")]
    server_bin: PathBuf,
    /// Pin the server with `taskset -c CPUS` (e.g. "1").
    #[arg(long)]
    server_cpus: Option<String>,
    /// Scenarios: `RxP` (R rooms × P participants) or `1toN` (one publisher, N
    /// subscribers). Repeatable, comma-separated.
    #[arg(long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Shorthand for one RxP scenario.
    #[arg(long)]
    rooms: Option<usize>,
    #[arg(long)]
    participants: Option<usize>,
    /// Measurement window per scenario, seconds (at most 600).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn parse(s: &str, seconds: u64) -> anyhow::Result<Scenario> {
    if let Some((a, b)) = s.split_once("to") {
        anyhow::ensure!(a == "1", "fan-out scenarios are 1toN");
        return Ok(Scenario::fanout(b.parse()?, seconds));
    }
    let (r, p) = s.split_once('x').ok_or_else(|| anyhow::anyhow!("scenario {s}: RxP or 1toN"))?;
    let (r, p): (usize, usize) = (r.parse()?, p.parse()?);
    anyhow::ensure!(r >= 1 && p >= 2, "scenario {s}: at least 1 room of 2");
    Ok(Scenario::grid(r, p, seconds))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((1..=600).contains(&a.seconds), "--seconds 1..=600");
    let mut scenarios = Vec::new();
    if let (Some(r), Some(p)) = (a.rooms, a.participants) {
        scenarios.push(parse(&format!("{r}x{p}"), a.seconds)?);
    }
    for s in &a.scenario {
        scenarios.push(parse(s, a.seconds)?);
    }
    if scenarios.is_empty() {
        scenarios.push(Scenario::grid(1, 2, a.seconds));
    }
    std::fs::create_dir_all(&a.out)?;
    let mut reports: Vec<Report> = Vec::new();
    for sc in &scenarios {
        // A fresh server per scenario: counters, CPU and RSS start clean.
        let target = Target::spawn(&a.server_bin, sc.per_room() + 4, a.server_cpus.as_deref())?;
        let adapter = Fengqiao { ws_url: target.ws_url(), key: target.key.clone() };
        eprintln!("bench: {} ({} clients) against {} pid {:?}", sc.name, sc.rooms * sc.per_room(), target.http, target.pid);
        let limit = sc.settle_max + Duration::from_secs(sc.seconds + 120);
        let r = tokio::time::timeout(limit, scenario::run(sc, &adapter as &dyn Adapter, &target)).await;
        drop(target);
        match r {
            Ok(Ok(r)) => {
                std::fs::write(a.out.join(format!("{}.json", r.scenario)), serde_json::to_string_pretty(&r)? + "\n")?;
                reports.push(r);
            }
            Ok(Err(e)) => eprintln!("bench: {} failed: {e:#}", sc.name),
            Err(_) => eprintln!("bench: {} timed out", sc.name),
        }
    }
    print!("{}", scenario::table(&reports));
    anyhow::ensure!(reports.len() == scenarios.len(), "some scenarios failed");
    Ok(())
}
