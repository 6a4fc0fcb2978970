//! Alibaba Cloud RDS actions: `ImportDatabaseBetweenInstances` / `CancelImport` (databases
//! of one instance copied into another) and the RDS PostgreSQL cloud-migration family — a
//! precheck task, a migration task (schema, full, then the change stream), their results in
//! RDS's words (`MigrateStage`, `ReplicationState`, a `Detail` log) and the switch-over.
//! Instances are named by the server's endpoint aliases.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::dts::{fields, quote, Params, RpcError};
use super::{encode, Endpoints};
use crate::doc;
use crate::error::ApiError;
use crate::lifecycle::{Action, State};
use crate::service::{Service, View};

/// RDS `ImportDatabaseBetweenInstances`: databases of one instance copied into another
/// (schema and full), the instances named by endpoint aliases.
pub async fn import(
    service: &Arc<Service>,
    endpoints: &Endpoints,
    params: &Params,
) -> Result<Map<String, Value>, RpcError> {
    let target = params.required("DBInstanceId")?;
    let source = params.required("SourceDBInstanceId")?;
    if target == source {
        return Err(RpcError::invalid(
            "SourceDBInstanceId",
            "it is the same instance as DBInstanceId",
        ));
    }
    let url = |name: &str, id: &str| {
        endpoints.url(id).map(str::to_string).ok_or_else(|| {
            RpcError::invalid(
                name,
                format!(
                    "no endpoint is configured for instance {id:?}; configured: {}",
                    endpoints.ids()
                ),
            )
        })
    };
    let (source_url, target_url) = (
        url("SourceDBInstanceId", source)?,
        url("DBInstanceId", target)?,
    );
    let info = params
        .json("DBInfo")?
        .ok_or_else(|| RpcError::missing("DBInfo"))?;
    let pairs: Vec<(String, String)> = match info.get("DBNames") {
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| n.as_str().map(|n| (n.to_string(), n.to_string())))
            .collect::<Option<_>>()
            .ok_or_else(|| RpcError::invalid("DBInfo", "DBNames lists names as strings"))?,
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                RpcError::invalid(
                    "DBInfo",
                    "DBNames maps source names to target names, as strings",
                )
            })?,
        _ => {
            return Err(RpcError::invalid(
                "DBInfo",
                "it is {\"DBNames\": [\"db\", …]} or {\"DBNames\": {\"source\": \"target\"}}",
            ))
        }
    };
    if pairs.is_empty() {
        return Err(RpcError::invalid("DBInfo", "DBNames lists no database"));
    }
    let mut text = format!(
        "[source]\nurl = {}\n[sink]\nurl = {}\n[migration]\ntypes = [\"schema\", \"full\"]\n",
        toml::Value::from(source_url.as_str()),
        toml::Value::from(target_url.as_str())
    );
    for (from, to) in &pairs {
        let rule = format!(
            "INSERT INTO {}.* SELECT * FROM {}.*",
            quote(to),
            quote(from)
        );
        text.push_str(&format!(
            "[[rules]]\nsql = {}\n",
            toml::Value::from(rule.as_str())
        ));
    }
    let labels = BTreeMap::from([
        ("origin".to_string(), "rds".to_string()),
        (
            "display_name".to_string(),
            format!("import {source} to {target}"),
        ),
        ("DBInstanceId".to_string(), target.to_string()),
    ]);
    let view = service.create_draft("rds_import_", labels)?;
    let name = view.record.name.clone();
    if let Err(error) = service.configure(&name, &text, BTreeMap::new(), true) {
        // Nothing half-made stays behind a refusal.
        let _ = service.drop_job(&name, true).await;
        return Err(error.into());
    }
    Ok(fields([("ImportId", view.record.id.into())]))
}

/// RDS `CancelImport`: stops the import `ImportId` into `DBInstanceId`.
pub fn cancel_import(
    service: &Arc<Service>,
    params: &Params,
) -> Result<Map<String, Value>, RpcError> {
    let target = params.required("DBInstanceId")?;
    let id = params.required("ImportId")?;
    if id.parse::<u64>().is_err() {
        return Err(RpcError::invalid(
            "ImportId",
            format!("{id:?} is not an integer"),
        ));
    }
    let name = service.resolve(id)?;
    if service
        .view(&name)?
        .record
        .labels
        .get("DBInstanceId")
        .map(String::as_str)
        != Some(target)
    {
        return Err(ApiError::not_found(id).into());
    }
    service.act(&name, Action::Stop)?;
    Ok(Map::new())
}

/// Where the precheck and migration tasks may come from (RDS's `SourceCategory`).
const CATEGORIES: &[&str] = &["ecsonvpc", "idconvpc", "internet"];

/// `CreateCloudMigrationPrecheckTask` (`precheck_only`) or `CreateCloudMigrationTask`: a
/// self-managed PostgreSQL moved into the instance `DBInstanceName` names — every table of
/// the database its alias URL names, from the database of the same name at the source (RDS
/// moves a whole instance; a ferry job moves one database).
pub async fn create_task(
    service: &Arc<Service>,
    endpoints: &Endpoints,
    params: &Params,
    precheck_only: bool,
) -> Result<Map<String, Value>, RpcError> {
    let instance = params.required("DBInstanceName")?;
    let ip = super::check_host("SourceIpAddress", params.required("SourceIpAddress")?)
        .map_err(|m| RpcError::invalid("SourceIpAddress", m))?;
    let port = params.required("SourcePort")?;
    if port.parse::<u16>().is_err() {
        return Err(RpcError::invalid(
            "SourcePort",
            format!("{port:?} is not a port number"),
        ));
    }
    let account = params.required("SourceAccount")?;
    let password = params.required("SourcePassword")?;
    let category = params.required("SourceCategory")?;
    if !CATEGORIES.contains(&category.to_ascii_lowercase().as_str()) {
        return Err(RpcError::invalid(
            "SourceCategory",
            "it is ecsOnVpc, idcOnVpc or internet",
        ));
    }
    let target = endpoints.url(instance).ok_or_else(|| {
        RpcError::invalid(
            "DBInstanceName",
            format!(
                "no endpoint is configured for instance {instance:?}; configured: {}",
                endpoints.ids()
            ),
        )
    })?;
    if ferry_jobs::registry::connector_name(target) != "PostgreSQL" {
        return Err(RpcError {
            status: axum::http::StatusCode::FORBIDDEN,
            code: "IncorrectDBInstanceType".into(),
            message: format!("instance {instance} is not PostgreSQL: cloud migration moves PostgreSQL into PostgreSQL"),
        });
    }
    let database = Some(super::dts::parts(target).3)
        .filter(|db| !db.is_empty())
        .ok_or_else(|| RpcError::invalid("DBInstanceName", format!("the endpoint of {instance} names no database: give its URL as postgres://user@host:port/database")))?;
    let source = format!(
        "postgres://{}:{}@{ip}:{port}/{}",
        encode(account),
        encode(password),
        encode(&database)
    );
    let text = format!(
        "[source]\nurl = {}\n[sink]\nurl = {}\n[migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\n[[rules]]\nsql = \"SELECT * FROM *.*\"\n",
        toml::Value::from(source.as_str()),
        toml::Value::from(target)
    );
    let kind = if precheck_only {
        "precheck"
    } else {
        "migration"
    };
    let mut labels = BTreeMap::from([
        ("origin".to_string(), "rds".to_string()),
        ("rds_kind".to_string(), kind.to_string()),
        ("DBInstanceName".to_string(), instance.to_string()),
        ("SourceCategory".to_string(), category.to_string()),
        ("SourceIpAddress".to_string(), ip.to_string()),
        ("SourcePort".to_string(), port.to_string()),
    ]);
    let prefix = if precheck_only {
        "rds_precheck_"
    } else {
        "rds_migration_"
    };
    let view = service.create_draft(prefix, labels.clone())?;
    let name = view.record.name.clone();
    let task_name = params
        .get("TaskName")
        .map_or_else(|| name.clone(), str::to_string);
    labels.insert("display_name".into(), task_name.clone());
    let done = service
        .configure(&name, &text, labels, !precheck_only)
        .and_then(|()| {
            if precheck_only {
                service.act(&name, Action::Precheck).map(|_| ())
            } else {
                Ok(())
            }
        });
    if let Err(error) = done {
        // Nothing half-made stays behind a refusal.
        let _ = service.drop_job(&name, true).await;
        return Err(error.into());
    }
    Ok(fields([
        ("DBInstanceName", instance.into()),
        ("TaskId", view.record.id.into()),
        ("TaskName", task_name.into()),
    ]))
}

/// The tasks of `kind` on `instance`, as `TaskId` / `TaskName` choose them.
fn tasks(service: &Service, params: &Params, kind: &str) -> Result<Vec<View>, RpcError> {
    let instance = params.required("DBInstanceName")?;
    let id = params
        .get("TaskId")
        .map(|id| {
            id.parse::<u64>()
                .map_err(|_| RpcError::invalid("TaskId", format!("{id:?} is not a number")))
        })
        .transpose()?;
    let name = params.get("TaskName");
    let ip = params.get("SourceIpAddress");
    let port = params.get("SourcePort");
    Ok(service
        .views()
        .into_iter()
        .filter(|v| {
            let label = |key: &str| v.record.labels.get(key).map(String::as_str);
            label("rds_kind") == Some(kind)
                && label("DBInstanceName") == Some(instance)
                && id.is_none_or(|id| v.record.id == id)
                && name.is_none_or(|n| label("display_name") == Some(n))
                && ip.is_none_or(|ip| label("SourceIpAddress") == Some(ip))
                && port.is_none_or(|p| label("SourcePort") == Some(p))
        })
        .collect())
}

/// The precheck's items as RDS writes its report: `[Check …]` then `Check …: success`.
fn report(view: &View) -> String {
    let Some(precheck) = &view.record.precheck else {
        return if view.record.state == State::Prechecking {
            "checking".into()
        } else {
            String::new()
        };
    };
    let mut lines = Vec::new();
    for item in &precheck.items {
        lines.push(format!("[Check {}]", item.name));
        let result = match item.status.as_str() {
            "passed" => "success".to_string(),
            "failed" => format!("failed({}; fix: {})", item.message, item.fix),
            other => format!("{other}({})", item.message),
        };
        lines.push(format!("Check {}: {result}", item.name));
    }
    lines.join("\n")
}

/// RDS's `MigrateStage` and `ReplicationState` of a job.
fn stage(view: &View, doc: &Value) -> (&'static str, &'static str) {
    let phase = view.record.phase.as_deref();
    match view.record.state {
        State::Draft | State::Ready | State::Prechecking | State::PrecheckFailed => {
            ("precheck", "unstarted")
        }
        State::CuttingOver => ("switch", "streaming"),
        State::Stopped | State::Completed => ("success", "finish"),
        State::Failed => (
            if phase == Some("incremental") {
                "increment"
            } else {
                "basebackup"
            },
            "disconnect",
        ),
        _ if phase == Some("incremental") => {
            if doc["substate"] == "caught_up" {
                ("increment", "streaming")
            } else {
                ("startup", "catchup")
            }
        }
        _ => ("basebackup", "unstarted"),
    }
}

fn item(view: &View, precheck_only: bool) -> Value {
    let record = &view.record;
    let label = |key: &str| record.labels.get(key).cloned().unwrap_or_default();
    let port: Value = label("SourcePort")
        .parse::<u64>()
        .map_or(Value::Null, Value::from);
    let mut item = json!({
        "TaskId": record.id,
        "TaskName": label("display_name"),
        "SourceCategory": label("SourceCategory").to_ascii_lowercase(),
        "SourceIpAddress": label("SourceIpAddress"),
        "SourcePort": port,
        "GmtCreated": doc::time(record.created_at),
        "Detail": report(view),
    });
    if !precheck_only {
        let doc = doc::document(view);
        let (stage, replication) = stage(view, &doc);
        let incremental = &doc["incremental"];
        let info = json!({
            "Status": replication,
            "ReceivedLsn": incremental["checkpoint"],
            "ReplayLsn": incremental["checkpoint"],
            "ReplayLag": incremental["lag_seconds"],
            "LagBytes": incremental["lag_bytes"],
            "SourceAccount": super::dts::parts(&super::spec_url(&record.spec, "source")).0,
            "SourcePassword": crate::spec::REDACTED,
        });
        item["MigrateStage"] = stage.into();
        item["ReplicationState"] = replication.into();
        item["ReplicationInfo"] = info.to_string().into();
        item["GmtModified"] = doc::time(record.updated_at).into();
        item["SwitchTime"] = record
            .finished_at
            .map_or(Value::Null, |at| doc::time(at).into());
        item["TargetInstanceName"] = label("DBInstanceName").into();
        if let Some(message) = doc["error"]["message"].as_str() {
            item["Detail"] = message.into();
        }
    }
    item
}

/// `DescribeCloudMigrationPrecheckResult` / `DescribeCloudMigrationResult`.
pub fn describe(
    service: &Service,
    params: &Params,
    precheck_only: bool,
) -> Result<Map<String, Value>, RpcError> {
    let page = params
        .count("PageNumber")?
        .ok_or_else(|| RpcError::missing("PageNumber"))? as usize;
    let size = params
        .count("PageSize")?
        .ok_or_else(|| RpcError::missing("PageSize"))? as usize;
    let kind = if precheck_only {
        "precheck"
    } else {
        "migration"
    };
    let all = tasks(service, params, kind)?;
    let total = all.len();
    let items: Vec<Value> = all
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|v| item(v, precheck_only))
        .collect();
    Ok(fields([
        ("TotalSize", total.into()),
        ("PageNumber", page.into()),
        ("PageSize", size.into()),
        ("Items", items.into()),
    ]))
}

/// `ActivateMigrationTargetInstance`: the switch-over, allowed only in stage `increment`.
pub fn activate(service: &Arc<Service>, params: &Params) -> Result<Map<String, Value>, RpcError> {
    let instance = params.required("DBInstanceName")?;
    for (name, only) in [("SwitchTimeMode", "0"), ("ForceSwitch", "1")] {
        if let Some(value) = params.get(name) {
            if value != only {
                return Err(RpcError::invalid(
                    name,
                    format!("only {only} is taken (an immediate switch-over)"),
                ));
            }
        }
    }
    let candidates: Vec<View> = tasks(service, params, "migration")?
        .into_iter()
        .filter(|v| v.record.state.is_active())
        .collect();
    let view = match &candidates[..] {
        [one] => one,
        [] => return Err(ApiError::not_found(instance).into()),
        _ => {
            return Err(RpcError::invalid(
                "TaskId",
                format!(
                    "instance {instance} has {} migration tasks running: name one with TaskId",
                    candidates.len()
                ),
            ))
        }
    };
    let doc = doc::document(view);
    if stage(view, &doc).0 != "increment" {
        let (stage, _) = stage(view, &doc);
        return Err(RpcError {
            status: axum::http::StatusCode::CONFLICT,
            code: "InvalidJobState".into(),
            message: format!("task {} is in stage {stage}: the switch-over waits for stage increment (the change stream caught up)", view.record.id),
        });
    }
    service.act(&view.record.name, Action::Cutover)?;
    let label = |key: &str| view.record.labels.get(key).cloned().unwrap_or_default();
    Ok(fields([
        ("DBInstanceName", instance.into()),
        ("TaskId", view.record.id.into()),
        ("SourceIpAddress", label("SourceIpAddress").into()),
        (
            "SourcePort",
            label("SourcePort")
                .parse::<u64>()
                .map_or(Value::Null, Value::from),
        ),
    ]))
}
