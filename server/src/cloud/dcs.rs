//! Huawei Cloud DCS online Redis migration (`/v2/{project_id}/…`): create a task, configure
//! it with the source and target Redis (addresses, or instance ids through the server's
//! endpoint aliases), list, show, stats, stop, restart, delete — statuses as DCS names them,
//! its spelling kept (`INCRMIGEATING`), errors as `{"error_code", "error_msg",
//! "error_ext_msg"}`. `project_id` is a free label: every project sees the one catalog.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{with_credentials, Endpoints};
use crate::doc;
use crate::error::ApiError;
use crate::lifecycle::{Action, State};
use crate::service::{Service, View};

/// The most tasks one batch restart takes.
const MAX_BATCH: usize = 50;

/// A refusal or failure in DCS's shape.
#[derive(Debug)]
pub struct DcsError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl DcsError {
    fn invalid(message: impl Into<String>) -> DcsError {
        DcsError {
            status: StatusCode::BAD_REQUEST,
            code: "DCS.4003",
            message: message.into(),
        }
    }

    fn not_found(id: &str) -> DcsError {
        DcsError {
            status: StatusCode::NOT_FOUND,
            code: "DCS.4133",
            message: format!("migration task not found: {id}"),
        }
    }
}

impl From<ApiError> for DcsError {
    fn from(error: ApiError) -> DcsError {
        let code = match error.code {
            "JobNotFound" => "DCS.4133",
            "JobAlreadyExists" => "DCS.4000",
            "InvalidJobState" => "DCS.4001",
            "PrecheckFailed" => "DCS.4002",
            "InvalidParameter" | "MissingParameter" | "PayloadTooLarge" => "DCS.4003",
            "Unauthorized" => "DCS.4010",
            _ => "DCS.5000",
        };
        DcsError {
            status: error.status,
            code,
            message: error.message,
        }
    }
}

impl IntoResponse for DcsError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(
                json!({"error_code": self.code, "error_msg": self.message, "error_ext_msg": null}),
            ),
        )
            .into_response()
    }
}

type Answer = Result<Response, DcsError>;

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, axum::Json(value)).into_response())
}

/// The body as a JSON object.
fn object(body: &[u8]) -> Result<Map<String, Value>, DcsError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| DcsError::invalid(format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(DcsError::invalid("the body is a JSON object")),
    }
}

fn text<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, DcsError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DcsError::invalid(format!("{key} is a string"))),
    }
}

fn required<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, DcsError> {
    text(body, key)?.ok_or_else(|| DcsError::invalid(format!("{key} is mandatory")))
}

/// The task id a job answers to: its DCS id, else its id.
fn task_id(view: &View) -> String {
    view.record
        .labels
        .get("dcs_id")
        .cloned()
        .unwrap_or_else(|| view.record.id.to_string())
}

/// The job a task id names.
fn find(service: &Service, id: &str) -> Result<String, DcsError> {
    if let Some(view) = service
        .views()
        .into_iter()
        .find(|v| v.record.labels.get("dcs_id").map(String::as_str) == Some(id))
    {
        return Ok(view.record.name);
    }
    service.resolve(id).map_err(|_| DcsError::not_found(id))
}

/// What DCS calls a job's state.
fn status(view: &View) -> &'static str {
    match view.record.state {
        State::Draft | State::Ready => "RUNNING",
        State::Prechecking => "MIGRATING",
        State::PrecheckFailed | State::Failed => "FAILED",
        State::Running | State::CuttingOver => match view.record.phase.as_deref() {
            Some("full") => "FULLMIGRATING",
            Some("incremental") => "INCRMIGEATING",
            _ => "MIGRATING",
        },
        State::Pausing | State::Paused => "MIGRATING",
        State::Stopping => "TERMINATING",
        State::Stopped => "TERMINATED",
        State::Completed => "SUCCESS",
    }
}

fn spec_url(view: &View, side: &str) -> String {
    let url = super::spec_url(&view.record.spec, side);
    if url.is_empty() {
        return String::new();
    }
    // host:port, no credentials.
    let place = ferry_jobs::registry::place(&url);
    place.split_once("://").map_or(place.clone(), |(_, rest)| {
        rest.trim_end_matches('/').to_string()
    })
}

fn method(view: &View) -> &'static str {
    let doc = doc::document(view);
    let incremental = doc["types"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "incremental"));
    if incremental {
        "incremental_migration"
    } else {
        "full_amount_migration"
    }
}

/// A task as ShowMigrationTask and the list answer it.
fn detail(view: &View) -> Value {
    let record = &view.record;
    let doc = doc::document(view);
    json!({
        "task_id": task_id(view),
        "task_name": record.labels.get("display_name").cloned().unwrap_or_else(|| record.name.clone()),
        "description": record.labels.get("description").cloned().unwrap_or_default(),
        "status": status(view),
        "migration_type": "online_migration",
        "migration_method": method(view),
        "resume_mode": record.labels.get("resume_mode").cloned().unwrap_or_else(|| "manual".into()),
        "bandwidth_limit_mb": record.limits.mb_per_sec.map(|mb| format!("{}", mb.round() as u64)),
        "data_source": "",
        "source_instance": {"addrs": spec_url(view, "source"), "id": record.labels.get("source_id")},
        "target_instance": {"addrs": spec_url(view, "sink"), "id": record.labels.get("target_id")},
        "source_instance_addrs": spec_url(view, "source"),
        "target_instance_addrs": spec_url(view, "sink"),
        "created_at": doc::time(record.created_at),
        "updated_at": doc::time(record.updated_at),
        "released_at": "",
        "error_message": doc["error"]["message"],
    })
}

/// `GET …/migration-task/{id}/stats`.
fn stats(view: &View) -> Value {
    let doc = doc::document(view);
    let full = &doc["full"];
    let incremental = &doc["incremental"];
    let running = matches!(view.record.state, State::Running | State::CuttingOver);
    let offset = match (
        view.record.phase.as_deref(),
        incremental["lag_bytes"].as_u64(),
    ) {
        (Some("incremental"), Some(lag)) => lag.to_string(),
        _ => "".to_string(),
    };
    let kbps = (full["mb_per_sec"].as_f64().unwrap_or(0.0)
        + incremental["mb_per_sec"].as_f64().unwrap_or(0.0))
        * 1e6
        / 1024.0;
    let ops = full["rows_per_sec"].as_f64().unwrap_or(0.0)
        + incremental["rows_per_sec"].as_f64().unwrap_or(0.0);
    json!({
        "full_migration_progress": format!("{}", full["percent"].as_f64().unwrap_or(0.0).floor() as u64),
        "offset": offset,
        "source_dbsize": full["rows_total_estimate"].as_u64().map(|n| n.to_string()).unwrap_or_default(),
        "target_dbsize": full["rows_done"].as_u64().map(|n| n.to_string()).unwrap_or_default(),
        "target_input_kbps": format!("{kbps:.2}"),
        "target_ops": format!("{}", ops.round() as u64),
        "is_migrating": running,
    })
}

/// A Redis endpoint of a task body as a URL: `addrs` or an instance id's alias.
fn redis_url(
    body: &Map<String, Value>,
    side: &str,
    endpoints: &Endpoints,
) -> Result<(String, Option<String>), DcsError> {
    let instance = match body.get(side) {
        Some(Value::Object(o)) => o,
        Some(_) => {
            return Err(DcsError::invalid(format!(
                "{side} is an object {{\"addrs\" or \"id\", \"password\"}}"
            )))
        }
        None => return Err(DcsError::invalid(format!("{side} is mandatory"))),
    };
    let password = text(instance, "password")?;
    let id = text(instance, "id")?;
    let url = match (text(instance, "addrs")?, id) {
        (Some(addrs), _) => {
            let list: Vec<&str> = addrs
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect();
            let [address] = list[..] else {
                return Err(DcsError::invalid(format!(
                    "{side}.addrs lists {} addresses: ferry moves one Redis server (a standalone instance or a master), not a cluster yet",
                    list.len()
                )));
            };
            let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                super::check_host("addrs", host).is_ok() && port.parse::<u16>().is_ok()
            });
            if !valid {
                return Err(DcsError::invalid(format!(
                    "{side}.addrs {address:?} is not host:port"
                )));
            }
            format!("redis://{address}")
        }
        (None, Some(id)) => endpoints.url(id).map(str::to_string).ok_or_else(|| {
            DcsError::invalid(format!(
                "{side}.id {id:?}: no endpoint is configured for it; configured: {}",
                endpoints.ids()
            ))
        })?,
        (None, None) => return Err(DcsError::invalid(format!("{side} needs addrs or id"))),
    };
    Ok((
        with_credentials(&url, None, password),
        id.map(str::to_string),
    ))
}

/// `bandwidth_limit_mb`: 1–10240, sent as a string (or, as the example does, a number).
fn bandwidth(body: &Map<String, Value>) -> Result<Option<u64>, DcsError> {
    let value = match body.get("bandwidth_limit_mb") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        Some(_) => None,
    };
    match value {
        Some(n @ 1..=10240) => Ok(Some(n)),
        _ => Err(DcsError::invalid(format!(
            "bandwidth_limit_mb is {}: it is a whole number of MB/s from 1 to 10240",
            body["bandwidth_limit_mb"]
        ))),
    }
}

/// The job spec of a task body (seed: SetOnlineMigrationTask), and its labels.
fn task_spec(
    body: &Map<String, Value>,
    endpoints: &Endpoints,
) -> Result<(String, BTreeMap<String, String>), DcsError> {
    let method = required(body, "migration_method")?;
    let types = match method {
        "full_amount_migration" => "[\"full\"]",
        "incremental_migration" => "[\"full\", \"incremental\"]",
        other => {
            return Err(DcsError::invalid(format!(
                "migration_method {other:?} is full_amount_migration or incremental_migration"
            )))
        }
    };
    let resume = required(body, "resume_mode")?;
    if resume != "auto" && resume != "manual" {
        return Err(DcsError::invalid(format!(
            "resume_mode {resume:?} is auto or manual"
        )));
    }
    let bandwidth = bandwidth(body)?;
    let (source, source_id) = redis_url(body, "source_instance", endpoints)?;
    let (target, target_id) = redis_url(body, "target_instance", endpoints)?;
    let mut text = format!(
        "[source]\nurl = {}\n[source.options]\nresume_mode = \"{resume}\"\n[sink]\nurl = {}\n[migration]\ntypes = {types}\n",
        toml::Value::from(source.as_str()),
        toml::Value::from(target.as_str())
    );
    if let Some(mb) = bandwidth {
        text.push_str(&format!("bandwidth_limit_mb = {mb}\n"));
    }
    let mut labels = BTreeMap::from([("resume_mode".to_string(), resume.to_string())]);
    if let Some(id) = source_id {
        labels.insert("source_id".into(), id);
    }
    if let Some(id) = target_id {
        labels.insert("target_id".into(), id);
    }
    Ok((text, labels))
}

fn new_task(
    service: &Arc<Service>,
    name: &str,
    description: Option<&str>,
) -> Result<View, DcsError> {
    let mut labels = BTreeMap::from([
        ("origin".to_string(), "dcs".to_string()),
        ("dcs_id".to_string(), super::uuid()),
        ("display_name".to_string(), name.to_string()),
    ]);
    if let Some(description) = description {
        labels.insert("description".into(), description.into());
    }
    Ok(service.create_draft("dcs_", labels)?)
}

/// `POST /v2/{project_id}/migration/instance`: a task to be configured.
pub fn create_instance(service: &Arc<Service>, body: &[u8]) -> Answer {
    let body = object(body)?;
    let name = required(&body, "name")?;
    required(&body, "security_group_id")?;
    let view = new_task(service, name, text(&body, "description")?)?;
    let id = task_id(&view);
    ok(json!({"instance_id": id, "job_id": id}))
}

/// `POST /v2/{project_id}/migration-task`: a task created whole, and started.
pub async fn create_task(service: &Arc<Service>, endpoints: &Endpoints, body: &[u8]) -> Answer {
    let body = object(body)?;
    let name = required(&body, "task_name")?;
    match required(&body, "migration_type")? {
        "online_migration" => {}
        "backupfile_import" => {
            return Err(DcsError::invalid(
                "migration_type backupfile_import (from backup files in a bucket) is not supported: use online_migration",
            ))
        }
        other => return Err(DcsError::invalid(format!("migration_type {other:?} is online_migration"))),
    }
    let mut body = body.clone();
    body.entry("resume_mode").or_insert_with(|| "manual".into());
    let (spec, labels) = task_spec(&body, endpoints)?;
    let view = new_task(service, name, text(&body, "description")?)?;
    if let Err(error) = configure_job(service, &view.record.name, &spec, labels).await {
        // Nothing half-made stays behind a refusal.
        let _ = service.drop_job(&view.record.name, true).await;
        return Err(error);
    }
    let view = service.view(&view.record.name)?;
    ok(json!({"id": task_id(&view), "name": name, "status": status(&view)}))
}

async fn configure_job(
    service: &Arc<Service>,
    name: &str,
    spec: &str,
    labels: BTreeMap<String, String>,
) -> Result<(), DcsError> {
    Ok(service.configure(name, spec, labels, true)?)
}

/// `POST /v2/{project_id}/migration/{task_id}/task`: configure and start (seed 003).
pub async fn configure(
    service: &Arc<Service>,
    endpoints: &Endpoints,
    id: &str,
    body: &[u8],
) -> Answer {
    let name = find(service, id)?;
    let body = object(body)?;
    let (spec, labels) = task_spec(&body, endpoints)?;
    configure_job(service, &name, &spec, labels).await?;
    let view = service.view(&name)?;
    ok(json!({
        "id": task_id(&view),
        "name": view.record.labels.get("display_name").cloned().unwrap_or_else(|| view.record.name.clone()),
        "status": status(&view),
        "error": "",
    }))
}

/// `GET /v2/{project_id}/migration-tasks?offset=&limit=&name=`.
pub fn list(service: &Service, params: &BTreeMap<String, String>) -> Answer {
    for key in params.keys() {
        if !["offset", "limit", "name"].contains(&key.as_str()) {
            return Err(DcsError::invalid(format!(
                "unknown query parameter {key}: the list takes offset, limit and name"
            )));
        }
    }
    let number = |key: &str,
                  default: usize,
                  range: std::ops::RangeInclusive<usize>|
     -> Result<usize, DcsError> {
        match params.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    DcsError::invalid(format!(
                        "{key} {v:?} is a whole number from {} to {}",
                        range.start(),
                        range.end()
                    ))
                }),
        }
    };
    let offset = number("offset", 0, 0..=usize::MAX)?;
    let limit = number("limit", 10, 1..=1000)?;
    let tasks: Vec<Value> = service
        .views()
        .iter()
        .filter(|v| {
            params.get("name").is_none_or(|n| {
                v.record
                    .labels
                    .get("display_name")
                    .unwrap_or(&v.record.name)
                    .contains(n.as_str())
            })
        })
        .map(detail)
        .collect();
    let count = tasks.len();
    let page: Vec<Value> = tasks.into_iter().skip(offset).take(limit).collect();
    ok(json!({"count": count, "migration_tasks": page}))
}

/// `GET /v2/{project_id}/migration-task/{task_id}`.
pub fn show(service: &Service, id: &str) -> Answer {
    let name = find(service, id)?;
    ok(detail(&service.view(&name)?))
}

/// `GET /v2/{project_id}/migration-task/{task_id}/stats`.
pub fn show_stats(service: &Service, id: &str) -> Answer {
    let name = find(service, id)?;
    ok(stats(&service.view(&name)?))
}

/// `POST …/migration-task/{task_id}/stop` (the task's detail) and `…/sync-stop` (204,
/// once stopped).
pub async fn stop(service: &Arc<Service>, id: &str, sync: bool) -> Answer {
    let name = find(service, id)?;
    service.act(&name, Action::Stop)?;
    if sync {
        service
            .settle(&name, std::time::Duration::from_secs(60))
            .await;
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    ok(detail(&service.view(&name)?))
}

fn id_list(body: &Map<String, Value>, key: &str) -> Result<Vec<String>, DcsError> {
    match body.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| DcsError::invalid(format!("{key} lists task ids as strings"))),
        _ => Err(DcsError::invalid(format!(
            "{key} is mandatory: a list of task ids"
        ))),
    }
}

/// The `migration_tasks` of a batch request: at most [`MAX_BATCH`].
fn batch(body: &Map<String, Value>) -> Result<Vec<String>, DcsError> {
    let ids = id_list(body, "migration_tasks")?;
    if ids.len() > MAX_BATCH {
        return Err(DcsError::invalid(format!(
            "migration_tasks lists {}: at most {MAX_BATCH} at once",
            ids.len()
        )));
    }
    Ok(ids)
}

/// `POST /v2/{project_id}/migration-task/batch-stop`.
pub fn batch_stop(service: &Arc<Service>, body: &[u8]) -> Answer {
    let body = object(body)?;
    let ids = batch(&body)?;
    let results: Vec<Value> = ids
        .iter()
        .map(|id| {
            let done = find(service, id).and_then(|name| Ok(service.act(&name, Action::Stop)?));
            json!({"task_id": id, "result": if done.is_ok() { "success" } else { "failed" }})
        })
        .collect();
    ok(json!({"migration_tasks": results}))
}

/// `POST /v2/{project_id}/migration-tasks/batch-restart` (at most 50): stopped or failed
/// tasks start again from their checkpoints.
pub fn batch_restart(service: &Arc<Service>, body: &[u8]) -> Answer {
    let body = object(body)?;
    let ids = batch(&body)?;
    let results: Vec<Value> = ids
        .iter()
        .map(|id| {
            let done = find(service, id).and_then(|name| Ok(service.start_or_resume(&name)?));
            match done {
                Ok(_) => json!({"task_id": id, "result": "success", "error_code": null, "error_msg": null}),
                Err(e) => json!({"task_id": id, "result": "failed", "error_code": e.code, "error_msg": e.message}),
            }
        })
        .collect();
    ok(json!({"migration_tasks": results}))
}

/// `DELETE /v2/{project_id}/migration-tasks/delete`: unknown ids are ignored.
pub async fn delete(service: &Arc<Service>, body: &[u8]) -> Answer {
    let body = object(body)?;
    let ids = id_list(&body, "task_id_list")?;
    let mut deleted = Vec::new();
    for id in &ids {
        if let Ok(name) = find(service, id) {
            service.drop_job(&name, false).await?;
            deleted.push(id.clone());
        }
    }
    ok(json!({"task_id_list": deleted}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_body_becomes_a_redis_job() {
        let body: Map<String, Value> = serde_json::from_str(
            r#"{"migration_method":"incremental_migration","bandwidth_limit_mb":123,"resume_mode":"auto",
                "source_instance":{"id":null,"addrs":"127.0.0.1:6379","password":"xxxxxx"},
                "target_instance":{"id":"cf4a05df","addrs":null,"password":null}}"#,
        )
        .unwrap();
        let endpoints = Endpoints(BTreeMap::from([(
            "cf4a05df".to_string(),
            "redis://127.0.0.1:6380".to_string(),
        )]));
        let (spec, labels) = task_spec(&body, &endpoints).unwrap();
        assert!(
            spec.contains("url = \"redis://:xxxxxx@127.0.0.1:6379\""),
            "{spec}"
        );
        assert!(spec.contains("url = \"redis://127.0.0.1:6380\""), "{spec}");
        assert!(
            spec.contains("types = [\"full\", \"incremental\"]"),
            "{spec}"
        );
        assert!(spec.contains("bandwidth_limit_mb = 123"), "{spec}");
        assert!(spec.contains("resume_mode = \"auto\""), "{spec}");
        assert_eq!(labels["target_id"], "cf4a05df");
        for (key, value) in [
            ("bandwidth_limit_mb", json!("10241")),
            ("bandwidth_limit_mb", json!(0)),
            ("bandwidth_limit_mb", json!("x")),
            ("resume_mode", json!("sometimes")),
            ("migration_method", json!("all")),
        ] {
            let mut bad = body.clone();
            bad.insert(key.into(), value.clone());
            let error = task_spec(&bad, &endpoints).unwrap_err();
            assert_eq!(
                (error.status, error.code),
                (StatusCode::BAD_REQUEST, "DCS.4003"),
                "{key} {value}"
            );
        }
        let mut bad = body.clone();
        bad.insert("source_instance".into(), json!({"addrs": "a:1,b:2"}));
        assert!(task_spec(&bad, &endpoints)
            .unwrap_err()
            .message
            .contains("cluster"));
    }
}
