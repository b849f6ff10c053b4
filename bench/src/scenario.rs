//! Scenarios and the measurement window.

use crate::adapter::{Adapter, Session};
use crate::client::{PcFactory, Publisher, Rx, Window};
use crate::target::{self_cpu_secs, Target};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub rooms: usize,
    /// Publishing participants per room (each also receives the others).
    pub publishers: usize,
    /// Receive-only participants per room.
    pub subscribers: usize,
    /// Length of the measurement window.
    pub seconds: u64,
    /// Longest wait for every expected stream to flow before measuring.
    pub settle_max: Duration,
}

impl Scenario {
    pub fn grid(rooms: usize, participants: usize, seconds: u64) -> Self {
        Self {
            name: format!("{rooms}x{participants}"),
            rooms,
            publishers: participants,
            subscribers: 0,
            seconds,
            settle_max: Duration::from_secs(20),
        }
    }
    pub fn fanout(subscribers: usize, seconds: u64) -> Self {
        Self {
            name: format!("1to{subscribers}"),
            rooms: 1,
            publishers: 1,
            subscribers,
            seconds,
            settle_max: Duration::from_secs(20),
        }
    }
    pub fn per_room(&self) -> usize {
        self.publishers + self.subscribers
    }
    /// (receiver, publisher, kind) streams that should flow.
    pub fn expected_streams(&self) -> usize {
        let per_room = self.publishers * (self.publishers - 1) + self.subscribers * self.publishers;
        self.rooms * per_room * 2
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub server: String,
    pub rooms: usize,
    pub publishers_per_room: usize,
    pub subscribers_per_room: usize,
    pub clients: usize,
    pub window_s: f64,
    pub settle_s: f64,
    pub streams_expected: usize,
    pub streams_flowing: usize,
    /// Server CPU (user + system) per forwarded RTP packet, µs; null in-process.
    pub server_cpu_us_per_pkt: Option<f64>,
    /// Server CPU, % of one core, over the window.
    pub server_cpu_pct: Option<f64>,
    pub server_rss_kb: Option<u64>,
    /// Server RSS at the end of the window ÷ participants, KiB.
    pub server_rss_kb_per_participant: Option<f64>,
    /// Load generator CPU, % of one core (all its threads).
    pub loadgen_cpu_pct: f64,
    /// RTP packets/s delivered to the clients in the window (every server counted
    /// the same way, at the receivers): the forwarded packets.
    pub pkts_out_per_s: f64,
    /// Bits/s of those packets (payload + 12-byte RTP header; no SRTP tag, UDP/IP).
    pub bits_out_per_s: f64,
    /// Our server's own counter (`fengqiao_rtp_packets_out_total`), packets/s; null for Janus.
    pub server_pkts_out_per_s: Option<f64>,
    /// Our server's `fengqiao_media_bytes_out_total` × 8 / s (whole datagrams); null for Janus.
    pub server_bits_out_per_s: Option<f64>,
    pub pkts_sent_per_s: f64,
    pub pkts_received: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    /// Join time: WebSocket connect → first remote RTP packet, for the members that
    /// joined when a publisher of their room was already sending.
    pub join_samples: usize,
    pub join_p50_ms: Option<f64>,
    pub join_max_ms: Option<f64>,
    /// The server's UDP sockets (`ss -uanp`) during the window, and how many of them
    /// are bound outside the bind address / loopback (must be 0).
    pub server_udp_sockets: usize,
    pub server_udp_sockets_elsewhere: usize,
    /// /proc/loadavg (1 min) at the end of the window.
    pub loadavg_1m: Option<f64>,
}

struct Member {
    session: Session,
    publisher: Publisher,
    rx: Arc<Rx>,
    /// [`crate::media::now_us`] just before the WebSocket connect, when a publisher
    /// of the room was already sending (join-time sample).
    join_from_us: Option<u64>,
}

/// Runs `sc` against `target` through `adapter`, clients bound to `bind` (an IP).
/// Bounded: joins time out (20 s per step), settling waits at most `settle_max`,
/// the window lasts `seconds`, publishers stop by themselves after settle +
/// window + 30 s + one second per client at the latest.
pub async fn run(sc: &Scenario, adapter: &dyn Adapter, target: &Target, bind: &str) -> anyhow::Result<Report> {
    let window = Arc::new(Window::default());
    let stop = Arc::new(AtomicBool::new(false));
    let max_send = sc.settle_max + Duration::from_secs(sc.seconds + 30 + sc.rooms as u64 * sc.per_room() as u64);
    let mut members: Vec<Member> = Vec::new();
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    let mut index = 0u32;
    let result = async {
        for r in 0..sc.rooms {
            let room = format!("bench-{}-{r}", sc.name);
            for p in 0..sc.per_room() {
                let pid = format!("r{r}p{p}");
                let rx = Arc::new(Rx::default());
                let factory = PcFactory { rx: rx.clone(), window: window.clone(), bind: bind.to_owned() };
                let publisher = Publisher::new(&pid, index);
                index += 1;
                let join_from_us = (p >= 1 && sc.publishers >= 1).then(crate::media::now_us);
                let session = adapter.join(&room, &pid, &factory, &publisher, p < sc.publishers).await?;
                if p < sc.publishers {
                    tasks.extend(publisher.run(stop.clone(), max_send));
                }
                members.push(Member { session, publisher, rx, join_from_us });
            }
        }
        // Settle: every expected stream delivers.
        let deadline = Instant::now() + sc.settle_max;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if flowing(&members) >= sc.expected_streams() || Instant::now() >= deadline {
                break;
            }
        }
        // One more keyframe interval so late consumers are past their first keyframe.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let settle_s = t0.elapsed().as_secs_f64();

        let (c0_srv, k0) = (target.counters().await?, Instant::now());
        let (c0, l0, w0) = (target.cpu_secs(), self_cpu_secs(), Instant::now());
        let s0: u64 = members.iter().map(|m| m.publisher.sent.load(Ordering::Relaxed)).sum();
        window.measuring.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(sc.seconds)).await;
        window.measuring.store(false, Ordering::SeqCst);
        // CPU and the client counts cover exactly the window; our server's own
        // counters the (slightly longer) span between the two /metrics reads.
        let (c1, l1, dt) = (target.cpu_secs(), self_cpu_secs(), w0.elapsed().as_secs_f64());
        let c1_srv = target.counters().await?;
        let dk = k0.elapsed().as_secs_f64();
        let s1: u64 = members.iter().map(|m| m.publisher.sent.load(Ordering::Relaxed)).sum();
        let rss = target.rss_kb();
        let udp = target.udp_sockets();
        let elsewhere = udp.iter().filter(|a| !a.starts_with(&format!("{bind}:")) && !a.starts_with("127.")).count();
        let loadavg = std::fs::read_to_string("/proc/loadavg").ok().and_then(|s| s.split_whitespace().next()?.parse().ok());

        let server_cpu = c0.zip(c1).map(|(a, b)| b - a);
        let mut lat: Vec<u32> = Vec::new();
        let mut joins: Vec<f64> = Vec::new();
        let (mut got, mut expected, mut win_pkts, mut win_bytes) = (0u64, 0u64, 0u64, 0u64);
        for m in &members {
            let r = m.rx.inner.lock().unwrap();
            lat.extend_from_slice(&r.lat_us);
            win_pkts += r.win_pkts;
            win_bytes += r.win_bytes;
            if let (Some(a), Some(b)) = (m.join_from_us, r.first_us) {
                joins.push(b.saturating_sub(a) as f64 / 1000.0);
            }
            for s in r.streams.values() {
                got += s.count;
                expected += s.last - s.first + 1;
            }
        }
        joins.sort_by(f64::total_cmp);
        let pkts = win_pkts as f64;
        let own = c0_srv.zip(c1_srv).map(|((p0, b0), (p1, b1))| ((p1 - p0) / dk, (b1 - b0) * 8.0 / dk));
        lat.sort_unstable();
        let q = |f: f64| (!lat.is_empty()).then(|| lat[((lat.len() - 1) as f64 * f) as usize] as f64 / 1000.0);
        Ok::<_, anyhow::Error>(Report {
            scenario: sc.name.clone(),
            server: adapter.name().into(),
            rooms: sc.rooms,
            publishers_per_room: sc.publishers,
            subscribers_per_room: sc.subscribers,
            clients: members.len(),
            window_s: dt,
            settle_s,
            streams_expected: sc.expected_streams(),
            streams_flowing: flowing(&members),
            server_cpu_us_per_pkt: server_cpu.filter(|_| pkts > 0.0).map(|c| c * 1e6 / pkts),
            server_cpu_pct: server_cpu.map(|c| c * 100.0 / dt),
            server_rss_kb: rss,
            server_rss_kb_per_participant: rss.map(|k| k as f64 / members.len().max(1) as f64),
            loadgen_cpu_pct: (l1 - l0) * 100.0 / dt,
            pkts_out_per_s: pkts / dt,
            bits_out_per_s: win_bytes as f64 * 8.0 / dt,
            server_pkts_out_per_s: own.map(|o| o.0),
            server_bits_out_per_s: own.map(|o| o.1),
            pkts_sent_per_s: (s1 - s0) as f64 / dt,
            pkts_received: got,
            latency_p50_ms: q(0.50),
            latency_p99_ms: q(0.99),
            latency_max_ms: lat.last().map(|&v| v as f64 / 1000.0),
            loss_pct: (expected > 0).then(|| (expected - got.min(expected)) as f64 * 100.0 / expected as f64),
            join_samples: joins.len(),
            join_p50_ms: (!joins.is_empty()).then(|| joins[(joins.len() - 1) / 2]),
            join_max_ms: joins.last().copied(),
            server_udp_sockets: udp.len(),
            server_udp_sockets_elsewhere: elsewhere,
            loadavg_1m: loadavg,
        })
    }
    .await;
    stop.store(true, Ordering::SeqCst);
    let closing = members.into_iter().map(|m| m.session.close());
    if tokio::time::timeout(Duration::from_secs(15), futures_util::future::join_all(closing)).await.is_err() {
        eprintln!("bench: some clients did not close within 15 s");
    }
    for t in tasks {
        t.abort();
    }
    result
}

/// Streams (receiver, publisher, kind) that have delivered at least one packet.
fn flowing(members: &[Member]) -> usize {
    members.iter().map(|m| m.rx.inner.lock().unwrap().seen.len()).sum()
}

pub fn table(reports: &[Report]) -> String {
    let mut s = format!(
        "{:<8} {:<9} {:>7} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>8} {:>8}\n",
        "scenario", "server", "flows", "cpu-us/pk", "srv-cpu%", "pkts/s", "Mbit/s", "p50 ms", "p99 ms", "max ms", "loss%",
        "lg-cpu%", "rss MB", "join ms"
    );
    let o = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for r in reports {
        s += &format!(
            "{:<8} {:<9} {:>7} {:>9} {:>8} {:>9.0} {:>9.1} {:>8} {:>8} {:>8} {:>7} {:>9.0} {:>8} {:>8}\n",
            r.scenario,
            r.server,
            format!("{}/{}", r.streams_flowing, r.streams_expected),
            o(r.server_cpu_us_per_pkt, 2),
            o(r.server_cpu_pct, 0),
            r.pkts_out_per_s,
            r.bits_out_per_s / 1e6,
            o(r.latency_p50_ms, 2),
            o(r.latency_p99_ms, 2),
            o(r.latency_max_ms, 1),
            o(r.loss_pct, 2),
            r.loadgen_cpu_pct,
            o(r.server_rss_kb.map(|k| k as f64 / 1024.0), 0),
            o(r.join_p50_ms, 0),
        );
    }
    s
}

/// Medians over runs of one (scenario, server).
#[derive(Debug, Clone, Serialize)]
pub struct Median {
    pub scenario: String,
    pub server: String,
    pub runs: usize,
    pub clients: usize,
    pub streams_expected: usize,
    /// Every run had every stream flowing.
    pub all_flowing: bool,
    pub server_cpu_us_per_pkt: Option<f64>,
    pub server_cpu_pct: Option<f64>,
    pub pkts_out_per_s: Option<f64>,
    pub bits_out_per_s: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub loadgen_cpu_pct: Option<f64>,
    pub server_rss_kb_per_participant: Option<f64>,
    pub join_p50_ms: Option<f64>,
    pub loadavg_1m: Option<f64>,
    /// Median loss < 0.5 %, median p99 < 20 ms and every stream flowing.
    pub held: bool,
    /// Ours ÷ Janus of the median CPU-µs per forwarded packet (on the `ours` row).
    pub cpu_ratio_vs_janus: Option<f64>,
    /// `cpu_us_per_pkt` of ours ÷ that of the baseline build (`--baseline-bin`), same run.
    pub cpu_ratio_vs_baseline: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rows: Vec<Median>,
    /// Per server: the held scenario with the most expected streams.
    pub highest_held: Vec<(String, Option<String>)>,
}

/// Whether one run held: every stream flowing, loss < 0.5 %, p99 < 20 ms (the
/// issue's bounds; the same test as [`Median::held`] on medians).
pub fn held(r: &Report) -> bool {
    r.streams_flowing >= r.streams_expected
        && r.loss_pct.is_some_and(|l| l < 0.5)
        && r.latency_p99_ms.is_some_and(|p| p < 20.0)
}

/// The median of the present values (upper median for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Medians per (scenario, server), in first-seen order, and the ratios.
pub fn summarize(reports: &[Report]) -> Summary {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in reports {
        let k = (r.scenario.clone(), r.server.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let mut rows: Vec<Median> = keys
        .iter()
        .map(|(sc, sv)| {
            let rs: Vec<&Report> = reports.iter().filter(|r| &r.scenario == sc && &r.server == sv).collect();
            let m = |f: &dyn Fn(&Report) -> Option<f64>| median(rs.iter().filter_map(|r| f(r)).collect());
            let all_flowing = rs.iter().all(|r| r.streams_flowing >= r.streams_expected);
            let loss = m(&|r| r.loss_pct);
            let p99 = m(&|r| r.latency_p99_ms);
            Median {
                scenario: sc.clone(),
                server: sv.clone(),
                runs: rs.len(),
                clients: rs[0].clients,
                streams_expected: rs[0].streams_expected,
                all_flowing,
                server_cpu_us_per_pkt: m(&|r| r.server_cpu_us_per_pkt),
                server_cpu_pct: m(&|r| r.server_cpu_pct),
                pkts_out_per_s: m(&|r| Some(r.pkts_out_per_s)),
                bits_out_per_s: m(&|r| Some(r.bits_out_per_s)),
                latency_p50_ms: m(&|r| r.latency_p50_ms),
                latency_p99_ms: p99,
                latency_max_ms: m(&|r| r.latency_max_ms),
                loss_pct: loss,
                loadgen_cpu_pct: m(&|r| Some(r.loadgen_cpu_pct)),
                server_rss_kb_per_participant: m(&|r| r.server_rss_kb_per_participant),
                join_p50_ms: m(&|r| r.join_p50_ms),
                loadavg_1m: m(&|r| r.loadavg_1m),
                held: all_flowing && loss.is_some_and(|l| l < 0.5) && p99.is_some_and(|p| p < 20.0),
                cpu_ratio_vs_janus: None,
                cpu_ratio_vs_baseline: None,
            }
        })
        .collect();
    let cpu_of = |server: &str| -> Vec<(String, Option<f64>)> {
        rows.iter().filter(|r| r.server == server).map(|r| (r.scenario.clone(), r.server_cpu_us_per_pkt)).collect()
    };
    let (janus, base) = (cpu_of("janus"), cpu_of(crate::adapter::BASELINE));
    let ratio = |other: &[(String, Option<f64>)], r: &Median| {
        let o = other.iter().find(|(s, _)| *s == r.scenario).and_then(|(_, c)| *c);
        r.server_cpu_us_per_pkt.zip(o).map(|(a, b)| a / b)
    };
    for r in rows.iter_mut() {
        if r.server == crate::adapter::OURS || r.server == crate::adapter::BASELINE {
            r.cpu_ratio_vs_janus = ratio(&janus, r);
        }
        if r.server == crate::adapter::OURS {
            r.cpu_ratio_vs_baseline = ratio(&base, r);
        }
    }
    let mut servers: Vec<String> = rows.iter().map(|r| r.server.clone()).collect();
    servers.dedup();
    servers.sort();
    servers.dedup();
    let highest_held = servers
        .into_iter()
        .map(|s| {
            let best = rows.iter().filter(|r| r.server == s && r.held).max_by_key(|r| r.streams_expected);
            (s, best.map(|r| r.scenario.clone()))
        })
        .collect();
    Summary { rows, highest_held }
}

pub fn summary_table(s: &Summary) -> String {
    let o = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    let mut t = format!(
        "{:<8} {:<9} {:>4} {:>9} {:>7} {:>7} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>5}\n",
        "scenario", "server", "runs", "cpu-us/pk", "us/jan", "us/base", "srv-cpu%", "pkts/s", "Mbit/s", "p50 ms", "p99 ms", "max ms",
        "loss%", "lg-cpu%", "rss KB/p", "join ms", "held"
    );
    for r in &s.rows {
        t += &format!(
            "{:<8} {:<9} {:>4} {:>9} {:>7} {:>7} {:>8} {:>9} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>8} {:>8} {:>5}\n",
            r.scenario,
            r.server,
            r.runs,
            o(r.server_cpu_us_per_pkt, 2),
            o(r.cpu_ratio_vs_janus, 2),
            o(r.cpu_ratio_vs_baseline, 2),
            o(r.server_cpu_pct, 0),
            o(r.pkts_out_per_s, 0),
            o(r.bits_out_per_s.map(|b| b / 1e6), 1),
            o(r.latency_p50_ms, 2),
            o(r.latency_p99_ms, 2),
            o(r.latency_max_ms, 1),
            o(r.loss_pct, 2),
            o(r.loadgen_cpu_pct, 0),
            o(r.server_rss_kb_per_participant, 0),
            o(r.join_p50_ms, 0),
            if r.held { "yes" } else { "no" },
        );
    }
    for (sv, sc) in &s.highest_held {
        t += &format!("highest scenario held by {sv}: {}\n", sc.as_deref().unwrap_or("none"));
    }
    t
}
