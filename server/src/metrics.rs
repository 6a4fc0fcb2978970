//! `GET /metrics`: every job's state, counters, lag and limits in the Prometheus text format,
//! labelled `job="<name>"`, encoded by the Prometheus project's client (`prometheus-client`).
//! The registry is built per scrape from the jobs' status: jobs come and go, and a dropped
//! job leaves no stale series behind.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::lifecycle::State;
use crate::service::View;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// The scrape's content type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn family<
    M: Default
        + Clone
        + prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Send
        + Sync
        + std::fmt::Debug
        + 'static,
>(
    registry: &mut Registry,
    name: &str,
    help: &str,
) -> Family<Labels, M> {
    let family = Family::<Labels, M>::default();
    registry.register(name, help, family.clone());
    family
}

/// The metrics of `views` as text.
pub fn render(views: &[View]) -> String {
    let mut registry = Registry::default();
    let state = family::<Gauge>(
        &mut registry,
        "ferry_job_state",
        "1 for the state the job is in, 0 for the others",
    );
    let rows = family::<Counter>(
        &mut registry,
        "ferry_job_rows",
        "Rows (keys, commands) moved by the job's current or last run",
    );
    let bytes = family::<Counter>(
        &mut registry,
        "ferry_job_bytes",
        "Source bytes read by the job's current or last run",
    );
    let lag_seconds = family::<FloatGauge>(
        &mut registry,
        "ferry_job_lag_seconds",
        "Seconds the incremental phase is behind the source",
    );
    let lag_bytes = family::<Gauge>(
        &mut registry,
        "ferry_job_lag_bytes",
        "Log bytes the source has written past what the job applied",
    );
    let percent = family::<FloatGauge>(
        &mut registry,
        "ferry_job_full_percent",
        "Progress of the full phase, 0-100",
    );
    let errors = family::<Counter>(
        &mut registry,
        "ferry_job_errors",
        "Failures of the job's runs since the service started, retried ones included",
    );
    let retries = family::<Counter>(
        &mut registry,
        "ferry_job_retries",
        "Retries after external failures since the service started",
    );
    let limit_rows = family::<Gauge>(
        &mut registry,
        "ferry_job_limit_rows_per_sec",
        "The job's rows-per-second limit (0: none)",
    );
    let limit_bytes = family::<Gauge>(
        &mut registry,
        "ferry_job_limit_bytes_per_sec",
        "The job's source-bytes-per-second limit (0: none)",
    );
    for view in views {
        let doc = crate::doc::document(view);
        let job: Labels = vec![("job".into(), view.record.name.clone())];
        for s in State::ALL {
            let mut labels = job.clone();
            labels.push(("state".into(), s.name().into()));
            state
                .get_or_create(&labels)
                .set(i64::from(s == view.record.state));
        }
        let number = |path: [&str; 2]| doc[path[0]][path[1]].as_u64().unwrap_or(0);
        let float = |path: [&str; 2]| doc[path[0]][path[1]].as_f64().unwrap_or(0.0);
        rows.get_or_create(&job)
            .inc_by(number(["full", "rows_done"]) + number(["incremental", "rows_applied"]));
        bytes
            .get_or_create(&job)
            .inc_by(number(["full", "bytes_done"]));
        lag_seconds
            .get_or_create(&job)
            .set(float(["incremental", "lag_seconds"]));
        lag_bytes
            .get_or_create(&job)
            .set(number(["incremental", "lag_bytes"]) as i64);
        percent.get_or_create(&job).set(float(["full", "percent"]));
        errors.get_or_create(&job).inc_by(view.errors);
        retries.get_or_create(&job).inc_by(view.retries);
        let limits = view.record.limits;
        limit_rows
            .get_or_create(&job)
            .set(limits.rows_per_sec.unwrap_or(0) as i64);
        limit_bytes
            .get_or_create(&job)
            .set(limits.mb_per_sec.map_or(0, |mb| (mb * 1e6) as i64));
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}
