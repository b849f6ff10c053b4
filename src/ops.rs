//! Operations endpoints: `GET /metrics` (Prometheus text), `GET /healthz`
//! (process alive) and `GET /readyz` (dependencies usable), plus the HTTP
//! request counter middleware.
//!
//! Labels never carry names, ID numbers, tokens or case details: routes are
//! labelled by their template (`/join/{token}`), never by the concrete path.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fengqiao_sfu::{Sfu, SfuStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// Labels of `fengqiao_http_requests_total` and `fengqiao_http_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route template, e.g. `/api/disputes/{id}`; `unmatched` otherwise.
    pub route: String,
    /// HTTP method.
    pub method: String,
    /// Status code.
    pub status: u16,
}

/// Labels of `fengqiao_jobs_total` / `fengqiao_job_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// `export` (disc export through `/api/disputes/{id}/disc-exports`, `src/export_api.rs`)
    /// or `render` (review video after a recording stops, `src/recording.rs`).
    pub kind: String,
    /// `done` or `failed`.
    pub outcome: String,
}

/// Server-side job metrics (disc exports, review renders). Process-wide:
/// the job code reaches them through [`job_finished`].
struct JobMetrics {
    jobs: Family<JobLabels, Counter>,
    seconds: Family<JobLabels, Histogram>,
}

fn job_metrics() -> &'static JobMetrics {
    static JOBS: std::sync::OnceLock<JobMetrics> = std::sync::OnceLock::new();
    JOBS.get_or_init(|| JobMetrics {
        jobs: Family::default(),
        seconds: Family::new_with_constructor(|| {
            Histogram::new([1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0])
        }),
    })
}

/// Counts one finished server job: `kind` is `export` or `render`, `ok` its outcome
/// (`done`/`failed`), `took` its wall time (observed in seconds).
pub fn job_finished(kind: &str, ok: bool, took: std::time::Duration) {
    let labels = JobLabels { kind: kind.into(), outcome: if ok { "done" } else { "failed" }.into() };
    let m = job_metrics();
    m.jobs.get_or_create(&labels).inc();
    m.seconds.get_or_create(&labels).observe(took.as_secs_f64());
}

/// The SFU's live counters and the database pool, read at scrape time.
struct SfuCollector {
    sfu: Sfu,
    cases: fengqiao_cases::Store,
}

impl std::fmt::Debug for SfuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SfuCollector")
    }
}

impl Collector for SfuCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &**self.sfu.stats();
        let pool = self.cases.pool();
        let pool_size = u64::from(pool.size());
        let pool_idle = pool.num_idle() as u64;
        let gauges: [(&str, &str, u64); 9] = [
            ("fengqiao_rooms", "Rooms open", SfuStats::get(&s.rooms)),
            ("fengqiao_participants", "Participants (Transports) connected or connecting", SfuStats::get(&s.participants)),
            ("fengqiao_producers", "Producers (incoming tracks)", SfuStats::get(&s.producers)),
            ("fengqiao_consumers", "Consumers (outgoing tracks)", SfuStats::get(&s.consumers)),
            ("fengqiao_recordings_active", "Sessions being recorded (started, not stopped; paused ones count)", SfuStats::get(&s.recordings_active)),
            ("fengqiao_recorder_queue_depth", "Messages waiting in the recorder queue (0 without a recorder)", self.sfu.recorder_queue_depth().unwrap_or(0) as u64),
            ("fengqiao_db_pool_connections", "Database pool connections open (idle and in use)", pool_size),
            ("fengqiao_db_pool_idle_connections", "Database pool connections open and idle", pool_idle),
            ("fengqiao_db_pool_in_use_connections", "Database pool connections in use", pool_size.saturating_sub(pool_idle)),
        ];
        for (name, help, v) in gauges {
            let g = ConstGauge::new(v as i64);
            g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        let counters: [(&str, &str, u64); 12] = [
            ("fengqiao_media_datagrams_in", "Datagrams received on the media port", SfuStats::get(&s.datagrams_in)),
            ("fengqiao_media_bytes_in", "Bytes received on the media port", SfuStats::get(&s.bytes_in)),
            ("fengqiao_media_datagrams_out", "Datagrams sent from the media port", SfuStats::get(&s.datagrams_out)),
            ("fengqiao_media_bytes_out", "Bytes sent from the media port", SfuStats::get(&s.bytes_out)),
            ("fengqiao_rtp_packets_in", "RTP packets received from Producers", SfuStats::get(&s.rtp_in)),
            ("fengqiao_rtp_packets_out", "RTP packets forwarded to Consumers", SfuStats::get(&s.rtp_out)),
            ("fengqiao_keyframe_requests_in", "PLI/FIR received from subscribers", SfuStats::get(&s.keyframe_requests_in)),
            ("fengqiao_keyframe_requests_out", "PLI/FIR sent to publishers", SfuStats::get(&s.keyframe_requests_out)),
            ("fengqiao_nack_packets_in", "Packets subscribers asked to be retransmitted (RTCP generic NACK, RFC 4585 6.2.1); answered from the send history", fengqiao_sfu::tap::nack_packets_in()),
            ("fengqiao_transport_failures", "Transports closed by ICE/DTLS failure", SfuStats::get(&s.transport_failures)),
            ("fengqiao_recorder_packets", "RTP packets handed to the recorder", SfuStats::get(&s.recorder_packets)),
            ("fengqiao_recorder_dropped", "Recorded packets dropped because the recorder queue was full", SfuStats::get(&s.recorder_dropped)),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        // Drops by reason: one family, the reason as its only label.
        let drops = [
            ("unknown_peer", SfuStats::get(&s.dropped_unknown_peer)),
            ("malformed", SfuStats::get(&s.dropped_malformed)),
            ("send_refused", SfuStats::get(&s.dropped_send)),
            ("waiting_keyframe", SfuStats::get(&s.dropped_waiting_keyframe)),
            ("consumer_error", SfuStats::get(&s.dropped_consumer_error)),
        ];
        let mut fam = enc.encode_descriptor(
            "fengqiao_media_packets_dropped",
            "Packets dropped, by reason",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, v) in drops {
            let c = ConstCounter::new(v);
            c.encode(fam.encode_family(&[("reason", reason)])?)?;
        }
        let (sum, count, buckets) = s.join_seconds.snapshot();
        let mut h = enc.encode_descriptor(
            "fengqiao_join_seconds",
            "Join time: SFU join accepted (WebSocket join) to the Transport's first ICE+DTLS connected state, seconds",
            None,
            prometheus_client::metrics::MetricType::Histogram,
        )?;
        h.encode_histogram::<prometheus_client::encoding::NoLabelSet>(sum, count, &buckets, None)?;
        Ok(())
    }
}

/// Shared state of the ops endpoints.
#[derive(Clone)]
pub struct Ops {
    registry: Arc<Registry>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Family<HttpLabels, Histogram>,
    /// Overdue case deadlines, refreshed from the case store on each scrape.
    deadlines_overdue: Gauge,
    sfu: Sfu,
    data_dir: PathBuf,
    cases: fengqiao_cases::Store,
}

impl Ops {
    /// Registers every metric.
    pub fn new(sfu: Sfu, data_dir: PathBuf, cases: fengqiao_cases::Store) -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_seconds = Family::<HttpLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        });
        registry.register("fengqiao_http_requests", "HTTP requests by route template, method and status", http_requests.clone());
        registry.register(
            "fengqiao_http_request_duration_seconds",
            "HTTP request handling time, seconds",
            http_seconds.clone(),
        );
        let jobs = job_metrics();
        registry.register("fengqiao_jobs", "Server jobs finished (kind: export = disc export, render = review video), by outcome", jobs.jobs.clone());
        registry.register(
            "fengqiao_job_duration_seconds",
            "Server job wall time (kind: export, render), by outcome, seconds",
            jobs.seconds.clone(),
        );
        let deadlines_overdue = Gauge::default();
        registry.register(
            "fengqiao_deadlines_overdue",
            "Case deadlines (triage response, mediator acceptance, mediation term...) past due and not met, all disputes; counted at scrape time",
            deadlines_overdue.clone(),
        );
        registry.register_collector(Box::new(SfuCollector { sfu: sfu.clone(), cases: cases.clone() }));
        Self { registry: Arc::new(registry), http_requests, http_seconds, deadlines_overdue, sfu, data_dir, cases }
    }

    /// `/metrics`, `/healthz`, `/readyz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(metrics))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .with_state(self.clone())
    }

    /// Readiness: every failed check, named, one per line. Empty when ready.
    pub async fn readiness_failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        if let Err(e) = self.cases.has_no_users().await {
            failed.push(format!("database: {e}"));
        }
        if !self.sfu.is_running() {
            failed.push(format!("media: the media task on {} has stopped", self.sfu.local_addr()));
        }
        let probe = self.data_dir.join(format!(".readyz-{}", std::process::id()));
        match std::fs::write(&probe, b"ok") {
            Ok(()) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => failed.push(format!("data_dir: {} is not writable: {e}", self.data_dir.display())),
        }
        failed
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    // The one metric that needs the database; on an error it keeps its last value
    // (`/readyz` names a database failure).
    match ops.cases.pending_deadlines(fengqiao_cases::Scope::All, true).await {
        Ok(d) => {
            ops.deadlines_overdue.set(d.len() as i64);
        }
        Err(e) => tracing::warn!("metrics: cannot count overdue deadlines: {e}"),
    }
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &ops.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
        .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let failed = ops.readiness_failures().await;
    if failed.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready\n{}\n", failed.join("\n"))).into_response()
    }
}

/// Middleware: counts and times every request by route template.
pub async fn track_http(State(ops): State<Ops>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let labels = HttpLabels { route, method, status: resp.status().as_u16() };
    ops.http_requests.get_or_create(&labels).inc();
    ops.http_seconds.get_or_create(&labels).observe(t0.elapsed().as_secs_f64());
    resp
}
