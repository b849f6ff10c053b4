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
use fengqiao_bench::adapter::{Adapter, Fengqiao, BASELINE, OURS};
use fengqiao_bench::janus::{self, Janus};
use fengqiao_bench::netns;
use fengqiao_bench::scenario::{self, Report, Scenario};
use fengqiao_bench::target::Target;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "WebRTC SFU load generator (loopback or a private network namespace only)")]
struct Args {
    /// Servers to measure, alternated: `ours`, `base` (needs --baseline-bin), `janus`
    /// (needs --netns), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "ours")]
    server: Vec<String>,
    /// The fengqiao binary to start (`serve`).
    #[arg(long, default_value = "target/release/fengqiao")]
    server_bin: PathBuf,
    /// An older fengqiao binary measured beside `--server-bin` as server `base`
    /// (reported as `baseline`; the ratio column `us/base` is ours ÷ it): a
    /// before/after comparison in one run.
    #[arg(long)]
    baseline_bin: Option<PathBuf>,
    /// Ramp instead of (after) the scenario list: R rooms × this many participants,
    /// R = 1, 2, 4, 6, 8, 10, then +25 % (13, 17, 22, 28, 35, 44, 55, …) up to --ramp-max-rooms,
    /// each server in turn, until a step is not held (loss ≥ 0.5 %, p99 ≥ 20 ms, a
    /// stream missing, or a failure) twice in a row.
    #[arg(long)]
    ramp: Option<usize>,
    /// Largest room count the ramp tries.
    #[arg(long, default_value_t = 60)]
    ramp_max_rooms: usize,
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
        anyhow::ensure!(s == "ours" || s == "base" || s == "janus", "--server: ours, base or janus, not {s}");
        anyhow::ensure!(s != "janus" || a.netns, "--server janus needs --netns (Janus ignores loopback)");
        anyhow::ensure!(s != "base" || a.baseline_bin.is_some(), "--server base needs --baseline-bin");
    }
    if let Some(p) = a.ramp {
        anyhow::ensure!(p >= 2, "--ramp: at least 2 participants per room");
        anyhow::ensure!((1..=200).contains(&a.ramp_max_rooms), "--ramp-max-rooms 1..=200");
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
    if scenarios.is_empty() && a.ramp.is_none() {
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
                match run_one(&a, sc, server, run, bind).await {
                    Ok(r) => reports.push((run, r)),
                    Err(()) => failures += 1,
                }
            }
        }
    }
    if let Some(p) = a.ramp {
        ramp(&a, p, bind).await?;
    }
    let all: Vec<Report> = reports.iter().map(|(_, r)| r.clone()).collect();
    if !all.is_empty() {
        println!("all runs:");
        print!("{}", scenario::table(&all));
        let summary = scenario::summarize(&all);
        println!("medians over {} run(s):", a.runs);
        print!("{}", scenario::summary_table(&summary));
        std::fs::write(a.out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    anyhow::ensure!(failures == 0, "{failures} scenario run(s) failed");
    Ok(())
}

/// One scenario against one server: a fresh server process, the scenario, its JSON
/// file and table row. `Err` (already printed) when the server did not start or the
/// scenario failed or timed out.
async fn run_one(a: &Args, sc: &Scenario, server: &str, run: usize, bind: &str) -> Result<Report, ()> {
    // A fresh server per scenario: counters, CPU and RSS start clean.
    let (bin, label) = match server {
        "base" => (a.baseline_bin.as_deref().unwrap_or(&a.server_bin), BASELINE),
        _ => (a.server_bin.as_path(), OURS),
    };
    let target = if server == "janus" {
        janus::spawn(&a.janus_bin, bind, netns::IFACE, 8188, a.server_cpus.as_deref())
    } else {
        Target::spawn(bin, bind, sc.per_room() + 4, a.server_cpus.as_deref())
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench: {server} did not start: {e:#}");
            return Err(());
        }
    };
    let adapter: Box<dyn Adapter> = if server == "janus" {
        Box::new(Janus { ws_url: target.ws_url() })
    } else {
        Box::new(Fengqiao { ws_url: target.ws_url(), key: target.key.clone(), label })
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
    // Let sockets and the previous server's threads go before the next one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    match r {
        Ok(Ok(r)) => {
            let f = a.out.join(format!("{}-{}-run{run}.json", r.scenario, r.server));
            if let Ok(j) = serde_json::to_string_pretty(&r) {
                let _ = std::fs::write(f, j + "\n");
            }
            eprint!("{}", scenario::table(std::slice::from_ref(&r)));
            Ok(r)
        }
        Ok(Err(e)) => {
            eprintln!("bench: {} on {server} failed: {e:#}", sc.name);
            Err(())
        }
        Err(_) => {
            eprintln!("bench: {} on {server} timed out", sc.name);
            Err(())
        }
    }
}

/// Room counts of the ramp: 1, 2, 4, 6, 8, 10, then +25 % (rounded up) per step.
fn ramp_steps(max: usize) -> Vec<usize> {
    let mut v = vec![1, 2, 4, 6, 8, 10];
    while *v.last().unwrap_or(&1) < max {
        let l = *v.last().unwrap_or(&1);
        v.push(l + l.div_ceil(4));
    }
    v.retain(|&r| r <= max);
    v
}

/// Ramps R × `per_room` for every server in turn until a step is not held twice in a
/// row (the second try rules out a one-off stall on a shared machine); prints and
/// writes (`ramp.json`) the highest step each server held.
async fn ramp(a: &Args, per_room: usize, bind: &str) -> anyhow::Result<()> {
    let mut alive: Vec<String> = a.server.clone();
    let mut highest: Vec<(String, Option<String>, Option<String>)> =
        a.server.iter().map(|s| (s.clone(), None, None)).collect();
    let mut rows = Vec::new();
    for rooms in ramp_steps(a.ramp_max_rooms) {
        if alive.is_empty() {
            break;
        }
        let sc = Scenario::grid(rooms, per_room, a.seconds);
        for server in alive.clone() {
            let mut held = false;
            let mut why = String::new();
            for attempt in 1..=2 {
                match run_one(a, &sc, &server, attempt, bind).await {
                    Ok(r) => {
                        held = scenario::held(&r);
                        why = format!(
                            "loss {:.2} %, p99 {:.1} ms, {}/{} streams",
                            r.loss_pct.unwrap_or(f64::NAN),
                            r.latency_p99_ms.unwrap_or(f64::NAN),
                            r.streams_flowing,
                            r.streams_expected
                        );
                        rows.push(r);
                    }
                    Err(()) => why = "failed".into(),
                }
                if held {
                    break;
                }
            }
            eprintln!("ramp: {server} {} {} ({why})", sc.name, if held { "held" } else { "NOT held" });
            let h = highest.iter_mut().find(|h| h.0 == server).expect("listed");
            if held {
                h.1 = Some(sc.name.clone());
            } else {
                h.2 = Some(format!("{} ({why})", sc.name));
                alive.retain(|s| *s != server);
            }
        }
    }
    println!("ramp (rooms x {per_room}, held = loss < 0.5 %, p99 < 20 ms, every stream):");
    for (server, held, broke) in &highest {
        println!(
            "  {server}: highest held {}, broke at {}",
            held.as_deref().unwrap_or("none"),
            broke.as_deref().unwrap_or("none (max reached)")
        );
    }
    let j = serde_json::json!({
        "per_room": per_room,
        "servers": highest.iter().map(|(s, h, b)| serde_json::json!({"server": s, "highest_held": h, "broke_at": b})).collect::<Vec<_>>(),
        "runs": rows,
    });
    std::fs::write(a.out.join("ramp.json"), serde_json::to_string_pretty(&j)? + "\n")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ramp_grows_by_a_quarter_after_ten_and_stops_at_the_max() {
        assert_eq!(super::ramp_steps(60), vec![1, 2, 4, 6, 8, 10, 13, 17, 22, 28, 35, 44, 55]);
        assert_eq!(super::ramp_steps(5), vec![1, 2, 4]);
        assert_eq!(super::ramp_steps(1), vec![1]);
    }
}
