//! Prometheus metrics of the scheduler and of an executor, served as
//! `/metrics` in the Prometheus text format.
//!
//! Names follow Prometheus conventions: a `ballista_` prefix, base units in
//! the name (`_seconds`, `_bytes`), `_total` on counters. Counters are
//! bumped where the event happens; gauges that mirror state (jobs queued
//! per pool, memory per executor) are set from that state when scraped, so
//! they can never drift from what the REST API shows.
//!
//! Label values come from bounded sets only (error kinds, Flight methods,
//! pools and tenants the configuration grants, executor ids the scheduler
//! registered): nothing a caller sends can grow the number of series. A
//! user granted no tenant counts under their own name, so tenant labels may
//! be user names: where those must not be seen, keep the HTTP port from
//! untrusted networks or turn the service off.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use tonic::codegen::http;

use crate::error::{BallistaError, Result};
use crate::proto;

/// Upper bounds of the duration histograms, in seconds: from a
/// millisecond task to a ten-minute job.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Registers `metric` in `registry`; the names here are fixed and valid, so
/// a failure is a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once, under a valid name");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("a valid name"))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid name");
    register(registry, metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("a valid name"))
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid name");
    register(registry, metric)
}

fn duration_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(DURATION_BUCKETS.to_vec())
}

fn histogram(registry: &Registry, name: &str, help: &str) -> Histogram {
    let metric = Histogram::with_opts(duration_opts(name, help)).expect("a valid histogram");
    register(registry, metric)
}

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let metric = HistogramVec::new(duration_opts(name, help), labels).expect("a valid histogram");
    register(registry, metric)
}

/// Everything in `registry`, in the Prometheus text format.
fn encode(registry: &Registry) -> Result<String> {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .map_err(|e| BallistaError::Internal(format!("encoding the metrics: {e}")))
}

/// The label of an error kind (`fetch_failed`, `resources_exhausted`, …).
pub(crate) fn error_kind_label(error: &proto::ErrorInfo) -> &'static str {
    use proto::ErrorKind as K;
    match K::try_from(error.kind).unwrap_or(K::Unspecified) {
        K::Unspecified => "unspecified",
        K::Internal => "internal",
        K::InvalidInput => "invalid_input",
        K::Plan => "plan",
        K::Execution => "execution",
        K::Io => "io",
        K::FetchFailed => "fetch_failed",
        K::ExecutorLost => "executor_lost",
        K::Cancelled => "cancelled",
        K::ResourcesExhausted => "resources_exhausted",
        K::NotFound => "not_found",
        K::Configuration => "configuration",
        K::NotSupported => "not_supported",
        K::Timeout => "timeout",
        K::Unavailable => "unavailable",
        K::PermissionDenied => "permission_denied",
        K::Unauthenticated => "unauthenticated",
    }
}

/// The methods of Arrow Flight, the label of `ballista_flight_requests_total`
/// (anything else counts as `other`).
const FLIGHT_METHODS: &[&str] = &[
    "Handshake",
    "ListFlights",
    "GetFlightInfo",
    "PollFlightInfo",
    "GetSchema",
    "DoGet",
    "DoPut",
    "DoExchange",
    "DoAction",
    "ListActions",
];

/// Path prefix of the Arrow Flight service's calls.
const FLIGHT_PREFIX: &str = "/arrow.flight.protocol.FlightService/";

/// Counts Arrow Flight calls by method; other gRPC paths are not counted.
fn count_flight_call(counter: &IntCounterVec, path: &str) {
    if let Some(method) = path.strip_prefix(FLIGHT_PREFIX) {
        let method = FLIGHT_METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        counter.with_label_values(&[method]).inc();
    }
}

/// A tower layer counting the Arrow Flight calls a gRPC server receives
/// into `ballista_flight_requests_total`.
#[derive(Debug, Clone)]
pub struct CountFlightCalls {
    counter: IntCounterVec,
}

impl CountFlightCalls {
    /// Counting into the scheduler's metrics.
    pub fn scheduler(metrics: &SchedulerMetrics) -> Self {
        Self {
            counter: metrics.flight_requests.clone(),
        }
    }

    /// Counting into an executor's metrics.
    pub fn executor(metrics: &ExecutorMetrics) -> Self {
        Self {
            counter: metrics.flight_requests.clone(),
        }
    }
}

impl<S> tower::Layer<S> for CountFlightCalls {
    type Service = CountedCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountedCalls {
            inner,
            counter: self.counter.clone(),
        }
    }
}

/// The service [`CountFlightCalls`] wraps.
#[derive(Debug, Clone)]
pub struct CountedCalls<S> {
    inner: S,
    counter: IntCounterVec,
}

impl<S, B> tower::Service<http::Request<B>> for CountedCalls<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        count_flight_call(&self.counter, request.uri().path());
        self.inner.call(request)
    }
}

/// The scheduler's metrics.
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    registry: Registry,
    /// Jobs accepted (queued or admitted).
    pub jobs_submitted: IntCounter,
    /// Jobs that ended with a result.
    pub jobs_succeeded: IntCounter,
    /// Jobs that ended with an error (refusals after queueing, timeouts
    /// included).
    pub jobs_failed: IntCounter,
    /// Jobs cancelled by a user or a disconnected client.
    pub jobs_cancelled: IntCounter,
    /// Jobs waiting for admission, per pool (set when scraped).
    pub jobs_queued: IntGaugeVec,
    /// Jobs planning or running, per pool (set when scraped).
    pub jobs_running: IntGaugeVec,
    /// Submission to end of finished jobs, by final state.
    pub job_duration: HistogramVec,
    /// Task attempts sent to executors.
    pub task_launches: IntCounter,
    /// Failed task attempts, by error kind.
    pub task_failures: IntCounterVec,
    /// Run time of succeeded task attempts on their executors.
    pub task_duration: Histogram,
    /// Executors registered now (set when scraped).
    pub executors: IntGauge,
    /// Registrations accepted.
    pub executors_registered: IntCounter,
    /// Executors declared lost (silent past the timeout, or their process
    /// gone), not those that left after draining.
    pub executors_lost: IntCounter,
    /// Memory reserved on each executor, from its last heartbeat.
    pub executor_memory_reserved: IntGaugeVec,
    /// Memory budget of each executor.
    pub executor_memory_budget: IntGaugeVec,
    /// Memory the jobs of each tenant hold over the whole cluster.
    pub tenant_memory_reserved: IntGaugeVec,
    /// Arrow Flight (and Flight SQL) calls, by method.
    pub flight_requests: IntCounterVec,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl SchedulerMetrics {
    /// Fresh metrics in a registry of their own.
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            jobs_submitted: counter(
                &r,
                "ballista_jobs_submitted_total",
                "Jobs accepted by the scheduler.",
            ),
            jobs_succeeded: counter(
                &r,
                "ballista_jobs_succeeded_total",
                "Jobs that ended with a result.",
            ),
            jobs_failed: counter(
                &r,
                "ballista_jobs_failed_total",
                "Jobs that ended with an error.",
            ),
            jobs_cancelled: counter(
                &r,
                "ballista_jobs_cancelled_total",
                "Jobs cancelled by a user or a disconnected client.",
            ),
            jobs_queued: gauge_vec(
                &r,
                "ballista_jobs_queued",
                "Jobs waiting for admission, per scheduling pool.",
                &["pool"],
            ),
            jobs_running: gauge_vec(
                &r,
                "ballista_jobs_running",
                "Jobs planning or running, per scheduling pool.",
                &["pool"],
            ),
            job_duration: histogram_vec(
                &r,
                "ballista_job_duration_seconds",
                "Time from submission to end of finished jobs.",
                &["state"],
            ),
            task_launches: counter(
                &r,
                "ballista_task_launches_total",
                "Task attempts sent to executors.",
            ),
            task_failures: counter_vec(
                &r,
                "ballista_task_failures_total",
                "Failed task attempts, by error kind.",
                &["kind"],
            ),
            task_duration: histogram(
                &r,
                "ballista_task_duration_seconds",
                "Run time of succeeded task attempts.",
            ),
            executors: gauge(&r, "ballista_executors", "Executors registered now."),
            executors_registered: counter(
                &r,
                "ballista_executors_registered_total",
                "Executor registrations accepted.",
            ),
            executors_lost: counter(
                &r,
                "ballista_executors_lost_total",
                "Executors declared lost (silent or gone, not drained).",
            ),
            executor_memory_reserved: gauge_vec(
                &r,
                "ballista_executor_memory_reserved_bytes",
                "Memory reserved by tasks on each executor, at its last heartbeat.",
                &["executor"],
            ),
            executor_memory_budget: gauge_vec(
                &r,
                "ballista_executor_memory_budget_bytes",
                "Memory budget of each executor.",
                &["executor"],
            ),
            tenant_memory_reserved: gauge_vec(
                &r,
                "ballista_cluster_tenant_memory_reserved_bytes",
                "Memory the running jobs of each tenant hold over the cluster.",
                &["tenant"],
            ),
            flight_requests: counter_vec(
                &r,
                "ballista_flight_requests_total",
                "Arrow Flight and Flight SQL calls received, by method.",
                &["method"],
            ),
            registry: r,
        }
    }

    /// The text of `/metrics`.
    pub fn encode(&self) -> Result<String> {
        encode(&self.registry)
    }
}

/// An executor's metrics.
#[derive(Debug, Clone)]
pub struct ExecutorMetrics {
    registry: Registry,
    /// Tasks started here.
    pub tasks_started: IntCounter,
    /// Tasks that failed here, by error kind.
    pub tasks_failed: IntCounterVec,
    /// Run time of tasks that succeeded here.
    pub task_duration: Histogram,
    /// Bytes of map output written (Arrow IPC, as committed).
    pub shuffle_written_bytes: IntCounter,
    /// Bytes of map output read by tasks here, from this executor
    /// (`local`) or over the network (`remote`).
    pub shuffle_fetched_bytes: IntCounterVec,
    /// Bytes operators spilled to disk when their memory was refused.
    pub spilled_bytes: IntCounter,
    /// Map output held in memory now (set when scraped).
    pub shuffle_memory_held: IntGauge,
    /// Map output ever kept in memory, in bytes (brought up to date when
    /// scraped).
    pub shuffle_memory_committed: IntCounter,
    /// Map outputs written to disk because memory was refused (brought up
    /// to date when scraped).
    pub shuffle_memory_refusals: IntCounter,
    /// Memory all tasks may reserve together (set when scraped).
    pub memory_budget: IntGauge,
    /// Memory reserved now (set when scraped).
    pub memory_reserved: IntGauge,
    /// Highest reservation seen (set when scraped).
    pub memory_peak: IntGauge,
    /// Memory held per tenant (set when scraped).
    pub tenant_memory_reserved: IntGaugeVec,
    /// Task slots.
    pub slots: IntGauge,
    /// Tasks running now (set when scraped).
    pub running_tasks: IntGauge,
    /// 1 while draining.
    pub draining: IntGauge,
    /// 1 once registered with the scheduler.
    pub registered: IntGauge,
    /// Arrow Flight calls, by method.
    pub flight_requests: IntCounterVec,
}

impl Default for ExecutorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ExecutorMetrics {
    /// Fresh metrics in a registry of their own.
    pub fn new() -> Self {
        let r = Registry::new();
        Self {
            tasks_started: counter(
                &r,
                "ballista_executor_tasks_started_total",
                "Tasks started on this executor.",
            ),
            tasks_failed: counter_vec(
                &r,
                "ballista_executor_tasks_failed_total",
                "Tasks that failed on this executor, by error kind.",
                &["kind"],
            ),
            task_duration: histogram(
                &r,
                "ballista_executor_task_duration_seconds",
                "Run time of tasks that succeeded on this executor.",
            ),
            shuffle_written_bytes: counter(
                &r,
                "ballista_shuffle_written_bytes_total",
                "Bytes of map output written.",
            ),
            shuffle_fetched_bytes: counter_vec(
                &r,
                "ballista_shuffle_fetched_bytes_total",
                "Bytes of map output read, from this executor (local) or another (remote).",
                &["source"],
            ),
            spilled_bytes: counter(
                &r,
                "ballista_spilled_bytes_total",
                "Bytes operators spilled to disk.",
            ),
            shuffle_memory_held: gauge(
                &r,
                "ballista_shuffle_memory_held_bytes",
                "Map output held in memory now (it counts against the memory budget).",
            ),
            shuffle_memory_committed: counter(
                &r,
                "ballista_shuffle_memory_committed_bytes_total",
                "Bytes of map output kept in memory.",
            ),
            shuffle_memory_refusals: counter(
                &r,
                "ballista_shuffle_memory_refused_outputs_total",
                "Map outputs written to disk because memory was refused or they exceeded shuffle.memory_max_output (none are counted when the tier is off: memory_fraction or memory_max_output 0).",
            ),
            memory_budget: gauge(
                &r,
                "ballista_memory_budget_bytes",
                "Memory all tasks of this executor may reserve together.",
            ),
            memory_reserved: gauge(
                &r,
                "ballista_memory_reserved_bytes",
                "Memory reserved by tasks now.",
            ),
            memory_peak: gauge(
                &r,
                "ballista_memory_peak_bytes",
                "Highest memory reservation seen.",
            ),
            tenant_memory_reserved: gauge_vec(
                &r,
                "ballista_tenant_memory_reserved_bytes",
                "Memory held by the jobs of each tenant on this executor.",
                &["tenant"],
            ),
            slots: gauge(&r, "ballista_executor_slots", "Task slots."),
            running_tasks: gauge(&r, "ballista_executor_running_tasks", "Tasks running now."),
            draining: gauge(
                &r,
                "ballista_executor_draining",
                "1 while the executor drains (takes no new tasks).",
            ),
            registered: gauge(
                &r,
                "ballista_executor_registered",
                "1 once the executor has registered with its scheduler.",
            ),
            flight_requests: counter_vec(
                &r,
                "ballista_flight_requests_total",
                "Arrow Flight calls received, by method.",
                &["method"],
            ),
            registry: r,
        }
    }

    /// Records the end of a task: its run time, or its failure's kind, and
    /// the bytes it wrote, read and spilled.
    pub fn task_ended(&self, status: &proto::TaskStatus) {
        match &status.result {
            Some(proto::task_status::Result::Succeeded(success)) => {
                let seconds = status.ended_at_ms.saturating_sub(status.started_at_ms) as f64 / 1e3;
                self.task_duration.observe(seconds);
                if let Some(m) = &success.metrics {
                    self.shuffle_written_bytes.inc_by(m.output_bytes);
                    self.shuffle_fetched_bytes
                        .with_label_values(&["local"])
                        .inc_by(m.local_read_bytes);
                    self.shuffle_fetched_bytes
                        .with_label_values(&["remote"])
                        .inc_by(m.remote_fetch_bytes);
                    self.spilled_bytes.inc_by(m.spilled_bytes);
                }
            }
            Some(proto::task_status::Result::Failed(error)) => {
                self.tasks_failed
                    .with_label_values(&[error_kind_label(error)])
                    .inc();
            }
            None => {}
        }
    }

    /// The text of `/metrics`.
    pub fn encode(&self) -> Result<String> {
        encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_carry_total_and_units_and_flight_methods_are_bounded() {
        let metrics = SchedulerMetrics::new();
        metrics.jobs_succeeded.inc();
        let counter = &metrics.flight_requests;
        count_flight_call(counter, "/arrow.flight.protocol.FlightService/DoGet");
        count_flight_call(counter, "/arrow.flight.protocol.FlightService/Made-Up");
        count_flight_call(counter, "/ballista.SchedulerGrpc/HeartBeat");
        let text = metrics.encode().unwrap();
        assert!(text.contains("ballista_jobs_succeeded_total 1"), "{text}");
        assert!(
            text.contains("ballista_flight_requests_total{method=\"DoGet\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ballista_flight_requests_total{method=\"other\"} 1"),
            "{text}"
        );
        assert!(!text.contains("HeartBeat"), "{text}");
    }
}
