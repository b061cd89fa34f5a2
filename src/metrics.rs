//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! Every label value comes from a fixed set (route names, status codes, endpoint names, outcome
//! kinds, WeChat's errcodes), never from client input, so the number of series stays bounded.
//! Each server has its own registry, so servers started side by side in tests do not mix.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::time::Duration;

/// Latency buckets from 0.5 ms to 10 s: logins sit around WeChat's 50–300 ms, `/api/me` well
/// under a millisecond.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// All of the service's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    upstream_calls: IntCounterVec,
    upstream_duration: HistogramVec,
    db_errors: IntCounterVec,
    rate_limited: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    webhook_events: IntGaugeVec,
    db_connections_in_use: IntGauge,
    db_connections_max: IntGauge,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let metrics = Metrics {
            http_requests: counter(
                "wxlogin_http_requests_total",
                "HTTP requests answered, by route and status.",
                &["route", "status"],
            ),
            http_duration: histogram(
                "wxlogin_http_request_duration_seconds",
                "Time from taking a request to sending its answer, by route.",
                &["route"],
            ),
            upstream_calls: counter(
                "wxlogin_upstream_requests_total",
                "Calls to WeChat's API, by endpoint and outcome (ok, errcode_<n>, http_status, bad_answer, unreachable, interrupted, timeout).",
                &["endpoint", "outcome"],
            ),
            upstream_duration: histogram(
                "wxlogin_upstream_request_duration_seconds",
                "Duration of calls to WeChat's API, by endpoint.",
                &["endpoint"],
            ),
            db_errors: counter(
                "wxlogin_db_errors_total",
                "Database failures seen by requests, by kind (unavailable, query).",
                &["kind"],
            ),
            rate_limited: counter(
                "wxlogin_rate_limited_total",
                "Requests refused with 429 by wxlogin's own limits, by route and scope (client, user).",
                &["route", "scope"],
            ),
            webhook_deliveries: counter(
                "wxlogin_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered, failed).",
                &["outcome"],
            ),
            webhook_events: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "wxlogin_webhook_events",
                        "Undelivered webhook events in the outbox, by state: pending (being retried) or failed (given up; see docs/webhooks.md).",
                    ),
                    &["state"],
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            db_connections_in_use: gauge(
                "wxlogin_db_connections_in_use",
                "Database connections lent out at the time of the scrape.",
            ),
            db_connections_max: gauge(
                "wxlogin_db_connections_max",
                "Most database connections the pool will hold.",
            ),
            registry,
        };
        let build = IntGaugeVec::new(
            Opts::new(
                "wxlogin_build_info",
                "Always 1; the labels say which build runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        metrics
            .registry
            .register(Box::new(build))
            .expect("unique metric");
        metrics
    }

    pub fn observe_request(&self, route: &str, status: u16, took: Duration) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    pub fn observe_upstream(&self, endpoint: &str, outcome: &str, took: Duration) {
        self.upstream_calls
            .with_label_values(&[endpoint, outcome])
            .inc();
        self.upstream_duration
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
    }

    pub fn count_db_error(&self, kind: &str) {
        self.db_errors.with_label_values(&[kind]).inc();
    }

    /// A request refused by a rate limit; `scope` is `client` or `user`.
    pub fn count_rate_limited(&self, route: &str, scope: &str) {
        self.rate_limited.with_label_values(&[route, scope]).inc();
    }

    /// One webhook delivery attempt; `outcome` is `delivered` or `failed`.
    pub fn count_webhook_delivery(&self, outcome: &str) {
        self.webhook_deliveries.with_label_values(&[outcome]).inc();
    }

    /// The outbox's undelivered events, as this node last counted them.
    pub fn set_webhook_events(&self, pending: u64, failed: u64) {
        let gauge = |state: &str, n: u64| {
            self.webhook_events
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX))
        };
        gauge("pending", pending);
        gauge("failed", failed);
    }

    /// The text exposition, with the pool gauges set to `(in_use, max)` first.
    pub fn render(&self, pool: (usize, usize)) -> String {
        self.db_connections_in_use.set(pool.0 as i64);
        self.db_connections_max.set(pool.1 as i64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into memory cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
