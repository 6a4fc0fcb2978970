//! The status document of a job (`GET /v1/jobs/{name}`), its list summary and its tables:
//! the catalog's record (state, desired state, precheck, error, limits) joined with the run's
//! [`ferry_jobs::JobStatus`] (phase, counters, rates, lag), as CONTROL-PLANE.md §3.5 lays it
//! out.

use serde_json::{json, Value};

use crate::catalog::JobRecord;
use crate::lifecycle::{self, State};
use crate::service::View;

/// Milliseconds since the epoch as RFC 3339 (`2026-12-02T04:00:00Z`).
pub fn time(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

fn time_or_null(ms: Option<u64>) -> Value {
    ms.map_or(Value::Null, |ms| Value::String(time(ms)))
}

/// Whether the job's run is (or was last) in the incremental phase.
pub fn incremental(record: &JobRecord) -> bool {
    record.phase.as_deref() == Some("incremental")
}

/// The job's migration types, as its spec (`spec`, parsed) lists them.
fn types(spec: &toml::Table) -> Vec<String> {
    match spec.get("migration").and_then(|m| m.get("types")) {
        Some(toml::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec!["schema".into(), "full".into()],
    }
}

/// The status document.
pub fn document(view: &View) -> Value {
    let record = &view.record;
    let status = view.status.as_ref();
    let field = |path: &[&str]| -> Value {
        let mut value = status.cloned().unwrap_or(Value::Null);
        for key in path {
            value = value.get(key).cloned().unwrap_or(Value::Null);
        }
        value
    };
    // The spec, parsed once for the types and the endpoints.
    let spec: toml::Table = record.spec.parse().unwrap_or_default();
    let types = types(&spec);
    let runs = |t: &str| types.iter().any(|x| x == t);
    let active = record.state.is_active();
    let phase = record.phase.as_deref();
    let order = |p: &str| {
        ["schema", "full", "incremental"]
            .iter()
            .position(|x| *x == p)
    };
    let phase_status = |name: &str| -> &'static str {
        let here = order(name);
        let now = phase.and_then(order);
        if record.state == State::Completed {
            return "finished";
        }
        match (now, here) {
            (Some(now), Some(here)) if now > here => "finished",
            (Some(now), Some(here)) if now == here && active => "migrating",
            (Some(now), Some(here)) if now == here && record.state == State::Paused => "paused",
            (Some(now), Some(here)) if now == here && record.state == State::Failed => "failed",
            (Some(now), Some(here)) if now == here && record.state == State::Stopped => "stopped",
            _ => "not_started",
        }
    };
    let schema = runs("schema").then(|| {
        let status = phase_status("schema");
        json!({
            "status": status,
            "percent": if status == "finished" { 100.0 } else { 0.0 },
        })
    });
    let full = runs("full").then(|| {
        let mut full = field(&["full"]);
        if !full.is_object() {
            full = json!({"rows_done": 0, "rows_total_estimate": null, "tables_done": 0,
                          "tables_total": 0, "bytes_done": 0, "percent": 0.0,
                          "rows_per_sec": 0.0, "mb_per_sec": 0.0});
        }
        let finished = full.get("finished").and_then(Value::as_bool) == Some(true)
            || phase_status("full") == "finished";
        let object = full.as_object_mut().expect("an object");
        object.remove("finished");
        object.insert(
            "status".into(),
            if finished {
                "finished"
            } else {
                phase_status("full")
            }
            .into(),
        );
        if finished {
            object.insert("percent".into(), json!(100.0));
        }
        if !active {
            object.insert("rows_per_sec".into(), json!(0.0));
            object.insert("mb_per_sec".into(), json!(0.0));
        }
        full
    });
    let incremental = runs("incremental").then(|| {
        let mut stream = field(&["incremental"]);
        if !stream.is_object() {
            stream = json!({"lag_seconds": null, "lag_bytes": null, "checkpoint": null,
                            "rows_applied": 0, "transactions_applied": 0,
                            "rows_per_sec": 0.0, "mb_per_sec": 0.0});
        }
        let object = stream.as_object_mut().expect("an object");
        object.insert("status".into(), phase_status("incremental").into());
        if !active {
            object.insert("rows_per_sec".into(), json!(0.0));
            object.insert("mb_per_sec".into(), json!(0.0));
        }
        stream
    });
    let substate = if record.state == State::Running || record.state == State::CuttingOver {
        field(&["substate"])
    } else {
        Value::Null
    };
    let error = record.error.as_ref().map(|e| {
        json!({"code": "JobFailed", "class": e.class, "message": e.message,
               "retrying": false, "retries": view.retries, "at": time(e.at)})
    });
    // A live retry is the run's own error.
    let error = match (field(&["error"]), record.state) {
        (Value::Object(live), State::Running) if live.get("retrying") == Some(&json!(true)) => {
            Some(
                json!({"code": "Retrying", "class": live["class"], "message": live["message"],
                        "retrying": true, "retries": live["retries"], "at": Value::Null}),
            )
        }
        _ => error,
    };
    json!({
        "id": record.id,
        "name": record.name,
        "state": record.state.name(),
        "phase": record.phase,
        "substate": substate,
        "desired_state": record.desired,
        "allowed_actions": lifecycle::allowed_actions(record.state, crate::doc::incremental(record)),
        "source": endpoint(&spec, status, "source"),
        "sink": endpoint(&spec, status, "sink"),
        "types": types,
        "created_at": time(record.created_at),
        "started_at": time_or_null(record.started_at),
        "updated_at": time(record.updated_at),
        "finished_at": time_or_null(record.finished_at),
        "precheck": precheck(record),
        "schema": schema,
        "full": full,
        "incremental": incremental,
        "limits": {
            "rows_per_sec": record.limits.rows_per_sec,
            "mb_per_sec": record.limits.mb_per_sec,
        },
        "warnings": record.warnings,
        "error": error,
    })
}

fn endpoint(spec: &toml::Table, status: Option<&Value>, side: &str) -> Value {
    if let Some(found) = status.and_then(|s| s.get(side)).filter(|v| v.is_object()) {
        return found.clone();
    }
    let url = spec
        .get(side)
        .and_then(|s| s.get("url"))
        .and_then(|u| u.as_str())
        .unwrap_or_default();
    if url.is_empty() {
        // A job a cloud API created and has not configured yet.
        return json!({"engine": null, "url": null});
    }
    json!({"engine": ferry_jobs::registry::connector_name(url), "url": ferry_jobs::registry::place(url)})
}

fn precheck(record: &JobRecord) -> Value {
    let Some(precheck) = &record.precheck else {
        let status = if record.state == State::Prechecking {
            "checking"
        } else {
            "not_run"
        };
        return json!({"status": status, "percent": 0.0, "passed": 0, "warnings": 0,
                      "failed": 0, "checked_at": null, "items": []});
    };
    let count = |status: &str| precheck.items.iter().filter(|i| i.status == status).count();
    let (passed, warnings, failed) = (count("passed"), count("warning"), count("failed"));
    let status = if record.state == State::Prechecking {
        "checking"
    } else if precheck
        .items
        .iter()
        .any(|i| i.blocking && i.status == "failed")
    {
        "failed"
    } else if warnings > 0 {
        "warning"
    } else {
        "passed"
    };
    json!({
        "status": status,
        "percent": 100.0,
        "passed": passed,
        "warnings": warnings,
        "failed": failed,
        "checked_at": time(precheck.checked_at),
        "items": precheck.items,
    })
}

/// A job's entry in the list.
pub fn summary(view: &View) -> Value {
    let doc = document(view);
    let full = &doc["full"];
    let incremental = &doc["incremental"];
    let rows_done =
        full["rows_done"].as_u64().unwrap_or(0) + incremental["rows_applied"].as_u64().unwrap_or(0);
    let rows_per_sec = full["rows_per_sec"].as_f64().unwrap_or(0.0)
        + incremental["rows_per_sec"].as_f64().unwrap_or(0.0);
    json!({
        "id": doc["id"],
        "name": doc["name"],
        "state": doc["state"],
        "phase": doc["phase"],
        "substate": doc["substate"],
        "desired_state": doc["desired_state"],
        "full_percent": full["percent"],
        "rows_done": rows_done,
        "rows_per_sec": rows_per_sec,
        "lag_seconds": incremental["lag_seconds"],
        "error_message": doc["error"]["message"],
    })
}

/// The job's tables: per source table, its targets and progress.
pub fn tables(view: &View) -> Value {
    let tables = view
        .status
        .as_ref()
        .and_then(|s| s.get("tables"))
        .cloned()
        .unwrap_or_else(|| json!([]));
    json!({"job": view.record.name, "tables": tables})
}
