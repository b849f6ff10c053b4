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
    /// Load generator CPU, % of one core (all its threads).
    pub loadgen_cpu_pct: f64,
    pub pkts_out_per_s: f64,
    pub bits_out_per_s: f64,
    pub pkts_sent_per_s: f64,
    pub pkts_received: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub loss_pct: Option<f64>,
}

struct Member {
    session: Session,
    publisher: Publisher,
    rx: Arc<Rx>,
}

/// Runs `sc` against `target` through `adapter`. Bounded: joins time out (10 s
/// per step), settling waits at most `settle_max`, the window lasts `seconds`,
/// publishers stop by themselves after settle + window + 10 s at the latest.
pub async fn run(sc: &Scenario, adapter: &dyn Adapter, target: &Target) -> anyhow::Result<Report> {
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
                let factory = PcFactory { rx: rx.clone(), window: window.clone() };
                let publisher = Publisher::new(&pid, index);
                index += 1;
                let session = adapter.join(&room, &pid, &factory, &publisher).await?;
                if p < sc.publishers {
                    tasks.extend(publisher.run(stop.clone(), max_send));
                }
                members.push(Member { session, publisher, rx });
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

        let (p0, b0) = target.counters().await?;
        let (c0, l0, w0) = (target.cpu_secs(), self_cpu_secs(), Instant::now());
        let s0: u64 = members.iter().map(|m| m.publisher.sent.load(Ordering::Relaxed)).sum();
        window.measuring.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(sc.seconds)).await;
        window.measuring.store(false, Ordering::SeqCst);
        let (p1, b1) = target.counters().await?;
        let (c1, l1, dt) = (target.cpu_secs(), self_cpu_secs(), w0.elapsed().as_secs_f64());
        let s1: u64 = members.iter().map(|m| m.publisher.sent.load(Ordering::Relaxed)).sum();
        let rss = target.rss_kb();

        let pkts = p1 - p0;
        let server_cpu = c0.zip(c1).map(|(a, b)| b - a);
        let mut lat: Vec<u32> = Vec::new();
        let (mut got, mut expected) = (0u64, 0u64);
        for m in &members {
            let r = m.rx.inner.lock().unwrap();
            lat.extend_from_slice(&r.lat_us);
            for s in r.streams.values() {
                got += s.count;
                expected += s.last - s.first + 1;
            }
        }
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
            loadgen_cpu_pct: (l1 - l0) * 100.0 / dt,
            pkts_out_per_s: pkts / dt,
            bits_out_per_s: (b1 - b0) * 8.0 / dt,
            pkts_sent_per_s: (s1 - s0) as f64 / dt,
            pkts_received: got,
            latency_p50_ms: q(0.50),
            latency_p99_ms: q(0.99),
            latency_max_ms: lat.last().map(|&v| v as f64 / 1000.0),
            loss_pct: (expected > 0).then(|| (expected - got.min(expected)) as f64 * 100.0 / expected as f64),
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
        "{:<8} {:<9} {:>5} {:>9} {:>8} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7} {:>9} {:>8}\n",
        "scenario", "server", "flows", "cpu-us/pk", "srv-cpu%", "pkts/s", "Mbit/s", "p50 ms", "p99 ms", "max ms", "loss%",
        "lg-cpu%", "rss MB"
    );
    let o = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |v| format!("{v:.p$}"));
    for r in reports {
        s += &format!(
            "{:<8} {:<9} {:>5} {:>9} {:>8} {:>9.0} {:>9.1} {:>8} {:>8} {:>8} {:>7} {:>9.0} {:>8}\n",
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
        );
    }
    s
}
