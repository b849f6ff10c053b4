//! `loadgen`: drives real webrtc-rs clients against an SFU — ours
//! (`target/release/fengqiao serve`) or Janus 1.1.2's videoroom — and prints one
//! table per run, a table of medians with the ratio us/Janus, and JSON under
//! `--out` (`<scenario>-<server>-run<k>.json`, `summary.json`).
//!
//! Each scenario gets a fresh server process (CPU from its /proc/<pid>/stat).
//! Servers alternate within a run (and swap order every run). With `--netns`
//! (required for Janus) loadgen first moves itself into a private network
//! namespace (see `fengqiao_bench::netns`); without it everything stays on
//! 127.0.0.1.

use clap::Parser;
use fengqiao_bench::adapter::{Adapter, Fengqiao};
use fengqiao_bench::janus::{self, Janus};
use fengqiao_bench::netns;
use fengqiao_bench::scenario::{self, Report, Scenario};
use fengqiao_bench::target::Target;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "WebRTC SFU load generator (loopback or a private network namespace only)")]
struct Args {
    /// Servers to measure, alternated: `ours`, `janus` (needs --netns), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ours")]
    server: Vec<String>,
    /// The fengqiao binary to start (`serve`).
    #[arg(long, default_value = "target/release/fengqiao")]
    server_bin: PathBuf,
    /// The Janus binary (Debian package `janus` 1.1.2).
    #[arg(long, default_value = "/usr/bin/janus")]
    janus_bin: PathBuf,
    /// Pin the server with `taskset -c CPUS` (e.g. "1"). Pin loadgen itself with
    /// `taskset -c 0 loadgen ...`.
    #[arg(long)]
    server_cpus: Option<String>,
    /// Run inside a new private network namespace (root): lo + veth fqb0 10.99.0.1.
    #[arg(long)]
    netns: bool,
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
    /// Runs of the whole set (medians over runs; at most 20).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Where the JSON results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

fn parse(s: &str, seconds: u64) -> anyhow::Result<Scenario> {
    if let Some((a, b)) = s.split_once("to") {
        anyhow::ensure!(a == "1", "fan-out scenarios are 1toN");
        let n: usize = b.parse()?;
        anyhow::ensure!(n >= 1, "scenario {s}: at least one subscriber");
        return Ok(Scenario::fanout(n, seconds));
    }
    let (r, p) = s.split_once('x').ok_or_else(|| anyhow::anyhow!("scenario {s}: RxP or 1toN"))?;
    let (r, p): (usize, usize) = (r.parse()?, p.parse()?);
    anyhow::ensure!(r >= 1 && p >= 2, "scenario {s}: at least 1 room of 2");
    Ok(Scenario::grid(r, p, seconds))
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    anyhow::ensure!((1..=600).contains(&a.seconds), "--seconds 1..=600");
    anyhow::ensure!((1..=20).contains(&a.runs), "--runs 1..=20");
    for s in &a.server {
        anyhow::ensure!(s == "ours" || s == "janus", "--server: ours or janus, not {s}");
        anyhow::ensure!(s != "janus" || a.netns, "--server janus needs --netns (Janus ignores loopback)");
    }
    if a.netns {
        // Before the runtime starts any thread.
        netns::enter()?;
    }
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(a))
}

async fn run(a: Args) -> anyhow::Result<()> {
    let bind = if a.netns { netns::IP } else { "127.0.0.1" };
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
    let mut reports: Vec<(usize, Report)> = Vec::new();
    let mut failures = 0;
    for run in 1..=a.runs {
        for sc in &scenarios {
            // Alternate servers; swap the order every run.
            let mut order = a.server.clone();
            if run % 2 == 0 {
                order.reverse();
            }
            for server in &order {
                // A fresh server per scenario: counters, CPU and RSS start clean.
                let target = if server == "janus" {
                    janus::spawn(&a.janus_bin, bind, netns::IFACE, 8188, a.server_cpus.as_deref())
                } else {
                    Target::spawn(&a.server_bin, bind, sc.per_room() + 4, a.server_cpus.as_deref())
                };
                let target = match target {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("bench: {server} did not start: {e:#}");
                        failures += 1;
                        continue;
                    }
                };
                let adapter: Box<dyn Adapter> = if server == "janus" {
                    Box::new(Janus { ws_url: target.ws_url() })
                } else {
                    Box::new(Fengqiao { ws_url: target.ws_url(), key: target.key.clone() })
                };
                eprintln!(
                    "bench: run {run} {} ({} clients) against {server} {} pid {:?}",
                    sc.name,
                    sc.rooms * sc.per_room(),
                    target.http,
                    target.pid
                );
                let limit = sc.settle_max + Duration::from_secs(sc.seconds + 120 + 2 * (sc.rooms * sc.per_room()) as u64);
                let r = tokio::time::timeout(limit, scenario::run(sc, adapter.as_ref(), &target, bind)).await;
                drop(target);
                match r {
                    Ok(Ok(r)) => {
                        let f = a.out.join(format!("{}-{}-run{run}.json", r.scenario, r.server));
                        std::fs::write(f, serde_json::to_string_pretty(&r)? + "\n")?;
                        eprint!("{}", scenario::table(std::slice::from_ref(&r)));
                        reports.push((run, r));
                    }
                    Ok(Err(e)) => {
                        eprintln!("bench: {} on {server} failed: {e:#}", sc.name);
                        failures += 1;
                    }
                    Err(_) => {
                        eprintln!("bench: {} on {server} timed out", sc.name);
                        failures += 1;
                    }
                }
                // Let sockets and the previous server's threads go before the next one.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let all: Vec<Report> = reports.iter().map(|(_, r)| r.clone()).collect();
    println!("all runs:");
    print!("{}", scenario::table(&all));
    let summary = scenario::summarize(&all);
    println!("medians over {} run(s):", a.runs);
    print!("{}", scenario::summary_table(&summary));
    std::fs::write(a.out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    anyhow::ensure!(failures == 0, "{failures} scenario run(s) failed");
    Ok(())
}
