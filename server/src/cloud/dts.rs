//! Alibaba Cloud DTS and RDS RPC actions (`GET|POST /?Action=…`, parameters in the query or
//! a form body, nested ones flattened with dots), answered in the services' JSON shape:
//! `RequestId` and `Success` always, `ErrCode` / `ErrMessage` on failure, numbers as strings
//! where DTS writes them so. A `MigrationObject` becomes ferry rules, so the same checks,
//! filters and renames apply as to a job file.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::{encode, rds, request_id, with_credentials, Endpoints};
use crate::doc;
use crate::error::ApiError;
use crate::lifecycle::{Action, State};
use crate::service::{LimitsChange, Service, View};

/// A refused or failed action, as the RPC services answer it.
#[derive(Debug)]
pub struct RpcError {
    pub(super) status: StatusCode,
    pub(super) code: String,
    pub(super) message: String,
}

impl RpcError {
    pub(super) fn missing(name: &str) -> RpcError {
        RpcError {
            status: StatusCode::BAD_REQUEST,
            code: "MissingParameter".into(),
            message: format!("{name} is mandatory for this action"),
        }
    }

    pub(super) fn invalid(name: &str, message: impl Into<String>) -> RpcError {
        RpcError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidParameter".into(),
            message: format!("the value of {name} is not valid: {}", message.into()),
        }
    }
}

impl From<ApiError> for RpcError {
    fn from(error: ApiError) -> RpcError {
        RpcError {
            status: error.status,
            code: error.code.to_string(),
            message: error.message,
        }
    }
}

/// The parameters of one request: query and form together, names as sent.
#[derive(Debug, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub(super) fn required(&self, name: &str) -> Result<&str, RpcError> {
        self.get(name).ok_or_else(|| RpcError::missing(name))
    }

    /// A Boolean (`true` / `false`, any case).
    pub(super) fn flag(&self, name: &str) -> Result<Option<bool>, RpcError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(RpcError::invalid(
                name,
                format!("{v:?} is not true or false"),
            )),
        }
    }

    /// The first of `names` given (the API's misspelling and the correct one).
    fn flag_of(&self, names: &[&str]) -> Result<Option<bool>, RpcError> {
        for name in names {
            if let Some(value) = self.flag(name)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    pub(super) fn json(&self, name: &str) -> Result<Option<Value>, RpcError> {
        self.get(name)
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| RpcError::invalid(name, format!("it is not valid JSON: {e}")))
            })
            .transpose()
    }

    /// A whole number of at least 1.
    pub(super) fn count(&self, name: &str) -> Result<Option<u64>, RpcError> {
        self.get(name)
            .map(|v| {
                v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    RpcError::invalid(name, format!("{v:?} is not a whole number of at least 1"))
                })
            })
            .transpose()
    }
}

/// Answers one RPC request.
pub async fn handle(service: &Arc<Service>, endpoints: &Endpoints, params: Params) -> Response {
    let request = request_id();
    let action = params.get("Action").unwrap_or_default().to_string();
    let result = match action.as_str() {
        "CreateMigrationJob" => create(service, &params),
        "ConfigureMigrationJob" => configure(service, endpoints, &params),
        "StartMigrationJob" => job(service, &params, "MigrationJobId").and_then(|name| {
            service.start_or_resume(&name)?;
            Ok(Map::new())
        }),
        "SuspendMigrationJob" => simple(service, &params, Action::Pause),
        "StopMigrationJob" => simple(service, &params, Action::Stop),
        "DeleteMigrationJob" => match job(service, &params, "MigrationJobId") {
            Ok(name) => service
                .drop_job(&name, false)
                .await
                .map(|_| Map::new())
                .map_err(RpcError::from),
            Err(e) => Err(e),
        },
        "DescribeMigrationJobs" => list(service, &params),
        "DescribeMigrationJobStatus" => {
            job(service, &params, "MigrationJobId").and_then(|name| Ok(status(&service.view(&name)?)))
        }
        "DescribeMigrationJobDetail" => detail(service, &params),
        "ModifyDynamicConfig" => limits(service, &params),
        "ImportDatabaseBetweenInstances" => rds::import(service, endpoints, &params).await,
        "CancelImport" => rds::cancel_import(service, &params),
        "CreateCloudMigrationPrecheckTask" => rds::create_task(service, endpoints, &params, true).await,
        "CreateCloudMigrationTask" => rds::create_task(service, endpoints, &params, false).await,
        "DescribeCloudMigrationPrecheckResult" => rds::describe(service, &params, true),
        "DescribeCloudMigrationResult" => rds::describe(service, &params, false),
        "ActivateMigrationTargetInstance" => rds::activate(service, &params),
        "" => Err(RpcError::missing("Action")),
        other => Err(RpcError {
            status: StatusCode::BAD_REQUEST,
            code: "InvalidAction.NotFound".into(),
            message: format!(
                "the action {other} is not served: ferry serves CreateMigrationJob, ConfigureMigrationJob, StartMigrationJob, SuspendMigrationJob, StopMigrationJob, DeleteMigrationJob, DescribeMigrationJobs, DescribeMigrationJobStatus, DescribeMigrationJobDetail, ModifyDynamicConfig; of RDS ImportDatabaseBetweenInstances, CancelImport, CreateCloudMigrationPrecheckTask, DescribeCloudMigrationPrecheckResult, CreateCloudMigrationTask, DescribeCloudMigrationResult and ActivateMigrationTargetInstance"
            ),
        }),
    };
    match result {
        Ok(mut fields) => {
            let mut body = Map::new();
            body.insert("RequestId".into(), request.into());
            body.insert("Success".into(), true.into());
            body.append(&mut fields);
            (StatusCode::OK, axum::Json(Value::Object(body))).into_response()
        }
        Err(error) => (
            error.status,
            axum::Json(json!({
                "RequestId": request,
                "Success": false,
                "ErrCode": error.code,
                "ErrMessage": error.message,
                // The gateway's spelling of the same, which RDS clients read.
                "Code": error.code,
                "Message": error.message,
                "HttpStatusCode": error.status.as_u16(),
            })),
        )
            .into_response(),
    }
}

/// The job a parameter names (its id, or its name).
pub(super) fn job(service: &Service, params: &Params, name: &str) -> Result<String, RpcError> {
    let key = params.required(name)?;
    Ok(service.resolve(key)?)
}

fn simple(
    service: &Arc<Service>,
    params: &Params,
    action: Action,
) -> Result<Map<String, Value>, RpcError> {
    let name = job(service, params, "MigrationJobId")?;
    service.act(&name, action)?;
    Ok(Map::new())
}

/// `MigrationJobClass` → parallelism: the instance sizes DTS sells, as parts at once.
const CLASSES: &[(&str, u64)] = &[
    ("small", 2),
    ("medium", 4),
    ("large", 8),
    ("xlarge", 12),
    ("2xlarge", 16),
];

fn create(service: &Arc<Service>, params: &Params) -> Result<Map<String, Value>, RpcError> {
    let class = params.required("MigrationJobClass")?;
    if !CLASSES.iter().any(|(c, _)| *c == class) {
        return Err(RpcError::invalid(
            "MigrationJobClass",
            format!("{class:?}; it is one of small, medium, large, xlarge, 2xlarge"),
        ));
    }
    params.required("Region")?;
    let token = params.get("ClientToken");
    if let Some(token) = token {
        if token.len() > 64 || !token.is_ascii() {
            return Err(RpcError::invalid(
                "ClientToken",
                "at most 64 ASCII characters",
            ));
        }
    }
    let mut labels = BTreeMap::from([
        ("origin".to_string(), "dts".to_string()),
        ("class".to_string(), class.to_string()),
    ]);
    if let Some(token) = token {
        labels.insert("client_token".into(), token.into());
    }
    // The same token again: the same job, not another.
    let view = service.create_draft_once("dts_", labels, token.map(|_| "client_token"))?;
    Ok(fields([(
        "MigrationJobId",
        view.record.id.to_string().into(),
    )]))
}

pub(super) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// A database of an endpoint: its URL and how rules name its tables.
struct Endpoint {
    url: String,
    /// Tables are `schema.table` within the URL's database (PostgreSQL), not
    /// `database.table` (MySQL).
    schemas: bool,
}

/// What the engines DTS names are to ferry's connectors.
fn engine(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "mysql" | "mariadb" | "polardb" | "tidb" | "drds" => "MySQL",
        "postgresql" | "polardb_pg" | "postgres" => "PostgreSQL",
        "redis" => "Redis",
        _ => return None,
    })
}

/// Whether a URL's engine names tables `schema.table` inside a database.
fn has_schemas(url: &str) -> bool {
    ferry_jobs::registry::connector_name(url) == "PostgreSQL"
}

/// `SourceEndpoint.*` or `DestinationEndpoint.*` as a URL: an instance id through the
/// server's endpoint aliases, or IP and port of a self-managed database.
fn endpoint(
    params: &Params,
    endpoints: &Endpoints,
    side: &str,
    database: Option<&str>,
) -> Result<Endpoint, RpcError> {
    let name = |field: &str| format!("{side}.{field}");
    let kind = params.required(&name("InstanceType"))?;
    let user = params.get(&name("UserName"));
    let password = params.get(&name("Password"));
    let database = params
        .get(&name("DatabaseName"))
        .or_else(|| params.get(&name("DataBaseName")))
        .or(database);
    let url = match params
        .get(&name("InstanceID"))
        .or_else(|| params.get(&name("InstanceId")))
    {
        Some(id) if !matches!(kind, "LocalInstance" | "Express") => {
            let url = endpoints.url(id).ok_or_else(|| {
                RpcError::invalid(
                    &name("InstanceID"),
                    format!(
                        "no endpoint is configured for instance {id:?}; configured: {}",
                        endpoints.ids()
                    ),
                )
            })?;
            with_credentials(url, user, password)
        }
        _ => {
            let ip = super::check_host(&name("IP"), params.required(&name("IP"))?)
                .map_err(|m| RpcError::invalid(&name("IP"), m))?;
            let port = params.required(&name("Port"))?;
            if port.parse::<u16>().is_err() {
                return Err(RpcError::invalid(
                    &name("Port"),
                    format!("{port:?} is not a port number"),
                ));
            }
            let engine_name = params.required(&name("EngineName"))?;
            let scheme = engine(engine_name)
                .and_then(ferry_jobs::registry::scheme_of_engine)
                .ok_or_else(|| {
                    RpcError::invalid(
                        &name("EngineName"),
                        format!("ferry does not move {engine_name}; it moves MySQL (and MariaDB, TiDB, POLARDB), PostgreSQL (and polardb_pg) and Redis"),
                    )
                })?;
            let credentials = match (user, password) {
                (Some(u), Some(p)) => format!("{}:{}@", encode(u), encode(p)),
                (Some(u), None) => format!("{}@", encode(u)),
                (None, Some(p)) => format!(":{}@", encode(p)),
                (None, None) => String::new(),
            };
            format!("{scheme}://{credentials}{ip}:{port}")
        }
    };
    let schemas = has_schemas(&url);
    // A PostgreSQL URL names its database; a MySQL one need not.
    let url = match (schemas, database) {
        (true, Some(db))
            if url
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.contains('/')) =>
        {
            format!("{url}/{}", encode(db))
        }
        (true, None)
            if url
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.contains('/')) =>
        {
            return Err(RpcError::missing(&name("DatabaseName")))
        }
        _ => url,
    };
    Ok(Endpoint { url, schemas })
}

/// A name as a rule writes it: quoted, exact.
pub(super) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Whether a DTS table name is a regular expression.
fn is_pattern(name: &str) -> bool {
    // `$` and `.` alone do not make one: MySQL names may hold them.
    name.chars().any(|c| "*+?[](){}|^\\".contains(c))
}

fn text_field<'a>(object: &'a Value, key: &str, at: &str) -> Result<Option<&'a str>, RpcError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RpcError::invalid(
            "MigrationObject",
            format!("{at}.{key} is not a string"),
        )),
    }
}

/// `MigrationObject` as ferry rules.
fn rules(object: &Value, source: &Endpoint, sink: &Endpoint) -> Result<Vec<String>, RpcError> {
    let list = object.as_array().ok_or_else(|| {
        RpcError::invalid(
            "MigrationObject",
            "it is a JSON array of {\"DBName\": …, \"TableIncludes\": […]}",
        )
    })?;
    if list.is_empty() {
        return Err(RpcError::invalid("MigrationObject", "it lists no database"));
    }
    let mut rules = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = format!("[{i}]");
        if !entry.is_object() {
            return Err(RpcError::invalid(
                "MigrationObject",
                format!("{at} is not an object"),
            ));
        }
        known_fields(
            entry,
            &at,
            "a MigrationObject field",
            &[
                "DBName",
                "NewDBName",
                "SchemaName",
                "NewSchemaName",
                "AllTable",
                "TableIncludes",
                "TableExcludes",
            ],
        )?;
        let db = text_field(entry, "DBName", &at)?.ok_or_else(|| {
            RpcError::invalid("MigrationObject", format!("{at}.DBName is missing"))
        })?;
        let schema = text_field(entry, "SchemaName", &at)?;
        let new_db = text_field(entry, "NewDBName", &at)?;
        let new_schema = text_field(entry, "NewSchemaName", &at)?;
        // Where tables are, and where they go: a PostgreSQL side names a schema (public
        // unless told), a MySQL side a database.
        let from = if source.schemas {
            schema.unwrap_or("public")
        } else {
            db
        };
        let to = if sink.schemas {
            new_schema
                .or(schema)
                .unwrap_or(if source.schemas { from } else { "public" })
        } else {
            new_db
                .or(new_schema)
                .unwrap_or(if source.schemas { db } else { from })
        };
        // TableExcludes: `FROM "ns".* EXCEPT (…)` on the rules whose source is a pattern.
        let mut excluded = Vec::new();
        match entry.get("TableExcludes") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    let at = format!("{at}.TableExcludes[{j}]");
                    let name = text_field(item, "TableName", &at)?.ok_or_else(|| {
                        RpcError::invalid("MigrationObject", format!("{at}.TableName is missing"))
                    })?;
                    excluded.push(source_name(from, name));
                }
            }
            Some(_) => {
                return Err(RpcError::invalid(
                    "MigrationObject",
                    format!("{at}.TableExcludes is not an array"),
                ))
            }
        }
        let except_tables = if excluded.is_empty() {
            String::new()
        } else {
            format!(" EXCEPT ({})", excluded.join(", "))
        };
        let includes = match entry.get("TableIncludes") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                return Err(RpcError::invalid(
                    "MigrationObject",
                    format!("{at}.TableIncludes is not an array"),
                ))
            }
        };
        if includes.is_empty() {
            rules.push(format!(
                "INSERT INTO {}.* SELECT * FROM {}.*{except_tables}",
                quote(to),
                quote(from)
            ));
            continue;
        }
        for (j, table) in includes.iter().enumerate() {
            let at = format!("{at}.TableIncludes[{j}]");
            // PrimaryKey and PartKey are taken, not needed: ferry reads the keys itself.
            known_fields(
                table,
                &at,
                "a table field",
                &[
                    "TableName",
                    "NewTableName",
                    "FilterCondition",
                    "ColumnIncludes",
                    "ColumnExcludes",
                    "PrimaryKey",
                    "PartKey",
                ],
            )?;
            let name = text_field(table, "TableName", &at)?.ok_or_else(|| {
                RpcError::invalid("MigrationObject", format!("{at}.TableName is missing"))
            })?;
            let new_name = text_field(table, "NewTableName", &at)?;
            let filter = text_field(table, "FilterCondition", &at)?;
            let mut left_out = Vec::new();
            match table.get("ColumnExcludes") {
                None | Some(Value::Null) => {}
                Some(Value::Array(columns)) => {
                    for (k, column) in columns.iter().enumerate() {
                        let at = format!("{at}.ColumnExcludes[{k}]");
                        let column = text_field(column, "ColumnName", &at)?.ok_or_else(|| {
                            RpcError::invalid(
                                "MigrationObject",
                                format!("{at}.ColumnName is missing"),
                            )
                        })?;
                        left_out.push(quote(column));
                    }
                }
                Some(_) => {
                    return Err(RpcError::invalid(
                        "MigrationObject",
                        format!("{at}.ColumnExcludes is not an array"),
                    ))
                }
            }
            let all = if left_out.is_empty() {
                "*".to_string()
            } else {
                format!("* EXCEPT ({})", left_out.join(", "))
            };
            let columns = match table.get("ColumnIncludes") {
                None | Some(Value::Null) => all,
                Some(Value::Array(columns)) if columns.is_empty() => all,
                Some(Value::Array(columns)) => {
                    let mut list = Vec::new();
                    for (k, column) in columns.iter().enumerate() {
                        let at = format!("{at}.ColumnIncludes[{k}]");
                        let column_name =
                            text_field(column, "ColumnName", &at)?.ok_or_else(|| {
                                RpcError::invalid(
                                    "MigrationObject",
                                    format!("{at}.ColumnName is missing"),
                                )
                            })?;
                        list.push(match text_field(column, "NewColumnName", &at)? {
                            Some(new) if new != column_name => {
                                format!("{} AS {}", quote(column_name), quote(new))
                            }
                            _ => quote(column_name),
                        });
                    }
                    list.join(", ")
                }
                Some(_) => {
                    return Err(RpcError::invalid(
                        "MigrationObject",
                        format!("{at}.ColumnIncludes is not an array"),
                    ))
                }
            };
            let (source_table, target_table) = if is_pattern(name) {
                let source = format!("{}{except_tables}", source_name(from, name));
                let template = format!("{to}.{}", new_name.unwrap_or("${1}"));
                let target = format!("'{}'", template.replace('\'', "''"));
                (source, target)
            } else {
                (
                    format!("{}.{}", quote(from), quote(name)),
                    format!("{}.{}", quote(to), quote(new_name.unwrap_or(name))),
                )
            };
            let mut rule =
                format!("INSERT INTO {target_table} SELECT {columns} FROM {source_table}");
            if let Some(filter) = filter {
                rule.push_str(&format!(" WHERE {filter}"));
            }
            rules.push(rule);
        }
    }
    Ok(rules)
}

/// Refuses a key of `object` (at `at`) that is not one of `known`.
fn known_fields(object: &Value, at: &str, what: &str, known: &[&str]) -> Result<(), RpcError> {
    let keys = object.as_object().into_iter().flat_map(|o| o.keys());
    match keys.into_iter().find(|k| !known.contains(&k.as_str())) {
        Some(key) => Err(RpcError::invalid(
            "MigrationObject",
            format!("{at}.{key} is not {what} ({})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// A DTS table name in namespace `from` as a rule's source: quoted, or as a regex (its
/// match the group `${1}` a target template uses).
fn source_name(from: &str, name: &str) -> String {
    if is_pattern(name) {
        let pattern = format!("{}\\.({name})", regex_escape(from));
        format!("'{}'", pattern.replace('\'', "''"))
    } else {
        format!("{}.{}", quote(from), quote(name))
    }
}

fn regex_escape(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if ".*+?[](){}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn configure(
    service: &Arc<Service>,
    endpoints: &Endpoints,
    params: &Params,
) -> Result<Map<String, Value>, RpcError> {
    let name = job(service, params, "MigrationJobId")?;
    let display = params.required("MigrationJobName")?;
    if display.chars().count() > 32 {
        return Err(RpcError::invalid(
            "MigrationJobName",
            "at most 32 characters",
        ));
    }
    let schema = params.flag_of(&[
        "MigrationMode.StructureIntialization",
        "MigrationMode.StructureInitialization",
    ])?;
    let full = params.flag_of(&[
        "MigrationMode.DataIntialization",
        "MigrationMode.DataInitialization",
    ])?;
    let incremental = params.flag("MigrationMode.DataSynchronization")?;
    let (Some(schema), Some(full), Some(incremental)) = (schema, full, incremental) else {
        let missing = if schema.is_none() {
            "MigrationMode.StructureIntialization"
        } else if full.is_none() {
            "MigrationMode.DataIntialization"
        } else {
            "MigrationMode.DataSynchronization"
        };
        return Err(RpcError::missing(missing));
    };
    let types: Vec<&str> = [
        (schema, "schema"),
        (full, "full"),
        (incremental, "incremental"),
    ]
    .into_iter()
    .filter_map(|(on, t)| on.then_some(t))
    .collect();
    if types.is_empty() {
        return Err(RpcError::invalid("MigrationMode", "turn on at least one of StructureIntialization, DataIntialization, DataSynchronization"));
    }
    let object = params
        .json("MigrationObject")?
        .ok_or_else(|| RpcError::missing("MigrationObject"))?;
    if params.get("Checkpoint").is_some() {
        return Err(RpcError::invalid("Checkpoint", "starting the incremental phase at a time is not supported: ferry starts it exactly where its snapshot ends (leave Checkpoint out)"));
    }
    let first_db = object
        .get(0)
        .and_then(|o| o.get("DBName"))
        .and_then(Value::as_str);
    let new_db = object
        .get(0)
        .and_then(|o| o.get("NewDBName"))
        .and_then(Value::as_str)
        .or(first_db);
    let source = endpoint(params, endpoints, "SourceEndpoint", first_db)?;
    let sink = endpoint(params, endpoints, "DestinationEndpoint", new_db)?;
    let rules = rules(&object, &source, &sink)?;
    let mut start = true;
    let mut existing = None;
    if let Some(reserved) = params.json("MigrationReserved")? {
        let reserved = reserved
            .as_object()
            .ok_or_else(|| RpcError::invalid("MigrationReserved", "it is a JSON object"))?;
        for (key, value) in reserved {
            match (key.as_str(), value) {
                ("autoStartModulesAfterConfig", Value::String(v)) => start = v != "none",
                ("targetTableMode", v) => {
                    existing = Some(match v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
                        Some(0) => "fail",
                        Some(2) => "append",
                        _ => return Err(RpcError::invalid("MigrationReserved", "targetTableMode is 0 (stop when a target table has rows) or 2 (add to them)")),
                    });
                }
                (other, _) => {
                    return Err(RpcError::invalid("MigrationReserved", format!("{other} is not taken; ferry takes autoStartModulesAfterConfig and targetTableMode")));
                }
            }
        }
    }
    let view = service.view(&name)?;
    let class = view
        .record
        .labels
        .get("class")
        .cloned()
        .unwrap_or_else(|| "medium".into());
    let parallelism = CLASSES
        .iter()
        .find(|(c, _)| *c == class)
        .map_or(4, |(_, p)| *p);
    let mut spec = toml::Table::new();
    let mut source_table = toml::Table::new();
    source_table.insert("url".into(), source.url.into());
    spec.insert("source".into(), source_table.into());
    let mut sink_table = toml::Table::new();
    sink_table.insert("url".into(), sink.url.into());
    if let Some(existing) = existing {
        sink_table.insert("existing_rows".into(), existing.into());
    }
    spec.insert("sink".into(), sink_table.into());
    let mut migration = toml::Table::new();
    migration.insert(
        "types".into(),
        toml::Value::Array(types.iter().map(|t| toml::Value::from(*t)).collect()),
    );
    migration.insert(
        "parallelism".into(),
        toml::Value::Integer(parallelism as i64),
    );
    spec.insert("migration".into(), migration.into());
    spec.insert(
        "rules".into(),
        toml::Value::Array(
            rules
                .into_iter()
                .map(|sql| {
                    let mut rule = toml::Table::new();
                    rule.insert("sql".into(), sql.into());
                    toml::Value::Table(rule)
                })
                .collect(),
        ),
    );
    let text =
        toml::to_string(&spec).map_err(|e| RpcError::from(ApiError::internal(e.to_string())))?;
    let mut labels = BTreeMap::from([
        ("display_name".to_string(), display.to_string()),
        (
            "migration_object".to_string(),
            params
                .get("MigrationObject")
                .unwrap_or_default()
                .to_string(),
        ),
    ]);
    for side in ["SourceEndpoint", "DestinationEndpoint"] {
        for field in ["InstanceType", "InstanceID", "EngineName"] {
            if let Some(v) = params.get(&format!("{side}.{field}")) {
                labels.insert(format!("{side}.{field}"), v.to_string());
            }
        }
    }
    service.configure(&name, &text, labels, start)?;
    Ok(Map::new())
}

/// What DTS calls a job's state.
fn job_status(state: State) -> &'static str {
    match state {
        State::Draft | State::Ready => "NotStarted",
        State::Prechecking => "Prechecking",
        State::PrecheckFailed => "PrecheckFailed",
        State::Running | State::CuttingOver | State::Stopping => "Migrating",
        State::Pausing | State::Paused => "Suspending",
        State::Failed => "MigrationFailed",
        State::Stopped | State::Completed => "Finished",
    }
}

/// A phase's status in DTS's words.
fn phase_status(status: &Value) -> &'static str {
    match status.as_str() {
        Some("finished") | Some("stopped") => "Finished",
        Some("migrating") => "Migrating",
        Some("paused") => "Suspending",
        Some("failed") => "Failed",
        _ => "NotStarted",
    }
}

fn percent(value: &Value) -> String {
    format!("{}", value.as_f64().unwrap_or(0.0).floor() as u64)
}

/// Precheck item names as DTS spells its own (`CHECK_CONN_SRC`).
fn item_name(name: &str) -> String {
    match name {
        "source.connectivity" => "CHECK_CONN_SRC".into(),
        "sink.connectivity" => "CHECK_CONN_DEST".into(),
        other => format!("CHECK_{}", other.replace('.', "_").to_ascii_uppercase()),
    }
}

fn endpoint_fields(view: &View, doc: &Value, side: &str, doc_side: &str, lower: bool) -> Value {
    let labels = &view.record.labels;
    let url = super::spec_url(&view.record.spec, doc_side);
    let (user, host, port, database) = parts(&url);
    let engine = doc[doc_side]["engine"].as_str().unwrap_or_default();
    let engine = labels
        .get(&format!("{side}.EngineName"))
        .cloned()
        .unwrap_or_else(|| engine.split('/').next().unwrap_or_default().to_string());
    let id_key = if lower { "InstanceID" } else { "InstanceId" };
    json!({
        "InstanceType": labels.get(&format!("{side}.InstanceType")).cloned().unwrap_or_else(|| "LocalInstance".into()),
        id_key: labels.get(&format!("{side}.InstanceID")).cloned().unwrap_or_default(),
        "EngineName": engine,
        "IP": host,
        "Port": port,
        "DatabaseName": database,
        "UserName": user,
        "oracleSID": "",
    })
}

/// User, host, port and database of a URL (no password).
pub(super) fn parts(url: &str) -> (String, String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (credentials, place) = rest.rsplit_once('@').unwrap_or(("", rest));
    let user = credentials
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let place = place.split(['?', '#']).next().unwrap_or_default();
    let (address, database) = place.split_once('/').unwrap_or((place, ""));
    let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
    (
        user,
        host.to_string(),
        port.to_string(),
        database.to_string(),
    )
}

fn modes(doc: &Value) -> Value {
    let types: Vec<&str> = doc["types"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    json!({
        "structureInitialization": types.contains(&"schema"),
        "dataInitialization": types.contains(&"full"),
        "dataSynchronization": types.contains(&"incremental"),
    })
}

/// `DescribeMigrationJobStatus` of a job.
fn status(view: &View) -> Map<String, Value> {
    status_of(view, &doc::document(view))
}

/// [`status`] of a job whose status document `doc` is at hand.
fn status_of(view: &View, doc: &Value) -> Map<String, Value> {
    let record = &view.record;
    let state = record.state;
    let error_message = doc["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let precheck = &doc["precheck"];
    let precheck_status = match precheck["status"].as_str() {
        Some("checking") => "Checking",
        Some("failed") => "Failed",
        Some("passed") | Some("warning") => "Finished",
        _ => "NotStarted",
    };
    let items: Vec<Value> = precheck["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    let failed = item["status"] == "failed";
                    let mut out = json!({
                        "ItemName": item_name(item["name"].as_str().unwrap_or_default()),
                        "CheckStatus": if failed { "Failed" } else { "Success" },
                    });
                    if failed {
                        out["ErrorMessage"] = item["message"].clone();
                        out["RepairMethod"] = item["fix"].clone();
                    }
                    out
                })
                .collect()
        })
        .unwrap_or_default();
    let phase_error = |phase: &str| {
        if state == State::Failed && record.phase.as_deref() == Some(phase) {
            error_message.clone()
        } else {
            String::new()
        }
    };
    let schema = &doc["schema"];
    let full = &doc["full"];
    let incremental = &doc["incremental"];
    let tables_done = doc::tables(view)["tables"]
        .as_array()
        .map_or(0, |t| t.len());
    let mut out = fields([
        ("MigrationJobId", record.id.to_string().into()),
        (
            "MigrationJobName",
            record
                .labels
                .get("display_name")
                .cloned()
                .unwrap_or_else(|| record.name.clone())
                .into(),
        ),
        ("MigrationJobStatus", job_status(state).into()),
        (
            "MigrationJobClass",
            record
                .labels
                .get("class")
                .cloned()
                .unwrap_or_else(|| "medium".into())
                .into(),
        ),
        ("PayType", "PostPaid".into()),
        ("TaskId", record.name.clone().into()),
        ("MigrationMode", modes(doc)),
        (
            "MigrationObject",
            record
                .labels
                .get("migration_object")
                .cloned()
                .unwrap_or_default()
                .into(),
        ),
        (
            "SourceEndpoint",
            endpoint_fields(view, doc, "SourceEndpoint", "source", false),
        ),
        (
            "DestinationEndpoint",
            endpoint_fields(view, doc, "DestinationEndpoint", "sink", false),
        ),
        (
            "PrecheckStatus",
            json!({
                "Status": precheck_status,
                "Percent": percent(&precheck["percent"]),
                "Detail": {"CheckItem": items},
            }),
        ),
    ]);
    if schema.is_object() {
        let finished = schema["status"] == "finished";
        out.insert(
            "StructureInitializationStatus".into(),
            json!({
                "Status": phase_status(&schema["status"]),
                "Percent": percent(&schema["percent"]),
                "Progress": if finished { tables_done.to_string() } else { "0".to_string() },
                "ErrorMessage": phase_error("schema"),
            }),
        );
    }
    if full.is_object() {
        out.insert(
            "DataInitializationStatus".into(),
            json!({
                "Status": phase_status(&full["status"]),
                "Percent": percent(&full["percent"]),
                "Progress": full["rows_done"].as_u64().unwrap_or(0).to_string(),
                "ErrorMessage": phase_error("full"),
            }),
        );
    }
    if incremental.is_object() {
        let caught_up = doc["substate"] == "caught_up";
        let mut sync = json!({
            "Status": if caught_up { "Catched" } else { phase_status(&incremental["status"]) },
            "ErrorMessage": phase_error("incremental"),
        });
        if caught_up {
            sync["Percent"] = "100".into();
        }
        if let Some(lag) = incremental["lag_seconds"].as_f64() {
            sync["Delay"] = format!("{}", lag.round() as u64).into();
            let at = crate::service::now_ms() / 1000;
            sync["Checkpoint"] = (at.saturating_sub(lag.round() as u64)).to_string().into();
        }
        out.insert("DataSynchronizationStatus".into(), sync);
    }
    out
}

fn list(service: &Service, params: &Params) -> Result<Map<String, Value>, RpcError> {
    let size = match params.get("PageSize") {
        None => 30,
        Some(v) => match v.parse::<usize>() {
            Ok(n @ (10 | 20 | 30)) => n,
            _ => return Err(RpcError::invalid("PageSize", "it is 10, 20 or 30")),
        },
    };
    let page = params.count("PageNum")?.unwrap_or(1) as usize;
    let wanted = params.get("MigrationJobName").map(str::to_lowercase);
    let views: Vec<View> = service
        .views()
        .into_iter()
        .filter(|v| {
            wanted.as_ref().is_none_or(|w| {
                let name = v
                    .record
                    .labels
                    .get("display_name")
                    .unwrap_or(&v.record.name);
                name.to_lowercase().contains(w) || v.record.name.contains(w.as_str())
            })
        })
        .collect();
    let total = views.len();
    let jobs: Vec<Value> = views
        .iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|view| {
            let doc = doc::document(view);
            let status = status_of(view, &doc);
            let lower = |phase: &Value| {
                let mut phase = phase.clone();
                if let Some(object) = phase.as_object_mut() {
                    if let Some(s) = object.remove("Status") {
                        object.insert("status".into(), s);
                    }
                }
                phase
            };
            json!({
                "MigrationJobID": view.record.id.to_string(),
                "MigrationJobName": status["MigrationJobName"],
                "MigrationJobStatus": status["MigrationJobStatus"],
                "MigrationJobClass": status["MigrationJobClass"],
                "PayType": "PostPaid",
                "InstanceCreateTime": doc::time(view.record.created_at),
                "JobCreateTime": doc::time(view.record.created_at),
                "MigrationMode": status["MigrationMode"],
                "SourceEndpoint": endpoint_fields(view, &doc, "SourceEndpoint", "source", true),
                "DestinationEndpoint": endpoint_fields(view, &doc, "DestinationEndpoint", "sink", true),
                "Precheck": {
                    "Percent": status["PrecheckStatus"]["Percent"],
                    "Status": if status["PrecheckStatus"]["Status"] == "Failed" { "Failed" } else { "Success" },
                },
                "StructureInitialization": lower(status.get("StructureInitializationStatus").unwrap_or(&Value::Null)),
                "DataInitialization": lower(status.get("DataInitializationStatus").unwrap_or(&Value::Null)),
                "DataSynchronization": lower(status.get("DataSynchronizationStatus").unwrap_or(&Value::Null)),
                "Tags": {"Tag": []},
            })
        })
        .collect();
    let count = jobs.len();
    Ok(fields([
        ("MigrationJobs", json!({"MigrationJob": jobs})),
        ("PageNumber", page.into()),
        ("PageRecordCount", count.into()),
        ("TotalRecordCount", total.into()),
    ]))
}

fn detail(service: &Service, params: &Params) -> Result<Map<String, Value>, RpcError> {
    let name = job(service, params, "MigrationJobId")?;
    let view = service.view(&name)?;
    let tables = doc::tables(&view);
    let rows: Vec<Value> = tables["tables"]
        .as_array()
        .map(|tables| {
            tables
                .iter()
                .map(|t| {
                    let source = t["source_table"].as_str().unwrap_or_default();
                    let (owner, table) = source.split_once('.').unwrap_or(("", source));
                    json!({
                        "SourceOwnerDBName": owner,
                        "TableName": table,
                        "TotalRowNum": t["rows_total_estimate"].as_u64().unwrap_or(0),
                        "FinishRowNum": t["rows_done"].as_u64().unwrap_or(0),
                        "Status": phase_status(&t["status"]),
                        "ErrorMessage": "",
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let count = rows.len();
    Ok(fields([
        (
            "DataInitializationDetailList",
            json!({"DataInitializationDetail": rows}),
        ),
        ("PageNumber", 1.into()),
        ("PageRecordCount", count.into()),
        ("TotalRecordCount", count.into()),
    ]))
}

fn limits(service: &Service, params: &Params) -> Result<Map<String, Value>, RpcError> {
    let key = params
        .get("DtsJobId")
        .or_else(|| params.get("MigrationJobId"))
        .ok_or_else(|| RpcError::missing("DtsJobId"))?;
    let name = service.resolve(key)?;
    let config = params
        .json("ConfigList")?
        .ok_or_else(|| RpcError::missing("ConfigList"))?;
    let config = config.as_object().ok_or_else(|| {
        RpcError::invalid(
            "ConfigList",
            "it is a JSON object such as {\"dts.datamove.source.rps.max\": 5000}",
        )
    })?;
    if params.flag("EnableLimit")? == Some(false) {
        service.change_limits(
            &name,
            LimitsChange {
                rows_per_sec: Some(None),
                mb_per_sec: Some(None),
            },
        )?;
        return Ok(Map::new());
    }
    let number = |key: &str, value: &Value| -> Result<Option<f64>, RpcError> {
        let n = value
            .as_f64()
            .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| {
                RpcError::invalid(
                    "ConfigList",
                    format!("{key} takes a number (-1: unlimited)"),
                )
            })?;
        Ok(if n == -1.0 { None } else { Some(n) })
    };
    let mut change = LimitsChange::default();
    for (key, value) in config {
        match key.as_str() {
            "dts.datamove.source.rps.max" => change.rows_per_sec = Some(number(key, value)?),
            // Bytes a second, as DTS counts them; ferry's limit is megabytes (10^6 bytes).
            "dts.datamove.source.bps.max" => {
                change.mb_per_sec = Some(number(key, value)?.map(|bytes| bytes / 1e6));
            }
            other => {
                return Err(RpcError::invalid("ConfigList", format!("{other} is not taken; ferry takes dts.datamove.source.rps.max and dts.datamove.source.bps.max")));
            }
        }
    }
    service.change_limits(&name, change)?;
    Ok(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(url: &str) -> Endpoint {
        Endpoint {
            url: url.into(),
            schemas: true,
        }
    }

    #[test]
    fn a_migration_object_becomes_rules() {
        let object: Value = serde_json::from_str(
            r#"[{"DBName":"src","SchemaName":"public","NewSchemaName":"sales",
                 "TableIncludes":[{"TableName":"t","NewTableName":"t2","FilterCondition":"id > 5",
                                   "ColumnIncludes":[{"ColumnName":"id"},{"ColumnName":"v","NewColumnName":"w"}]},
                                  {"TableName":"order_[0-9]+"}]},
                {"DBName":"src","SchemaName":"audit"}]"#,
        )
        .unwrap();
        let made = rules(&object, &pg("postgres://h/src"), &pg("postgres://h/dst")).unwrap();
        assert_eq!(
            made,
            [
                "INSERT INTO \"sales\".\"t2\" SELECT \"id\", \"v\" AS \"w\" FROM \"public\".\"t\" WHERE id > 5",
                "INSERT INTO 'sales.${1}' SELECT * FROM 'public\\.(order_[0-9]+)'",
                "INSERT INTO \"audit\".* SELECT * FROM \"audit\".*",
            ]
        );
        let mysql = Endpoint {
            url: "mysql://h".into(),
            schemas: false,
        };
        let object: Value = serde_json::from_str(
            r#"[{"DBName":"shop","NewDBName":"shop2","TableIncludes":[{"TableName":"orders"}]}]"#,
        )
        .unwrap();
        assert_eq!(
            rules(
                &object,
                &mysql,
                &Endpoint {
                    url: "mysql://g".into(),
                    schemas: false
                }
            )
            .unwrap(),
            ["INSERT INTO \"shop2\".\"orders\" SELECT * FROM \"shop\".\"orders\""]
        );
        assert_eq!(
            rules(&object, &pg("postgres://h/shop"), &mysql).unwrap(),
            ["INSERT INTO \"shop2\".\"orders\" SELECT * FROM \"public\".\"orders\""]
        );
        for bad in [
            r#"{"DBName":"x"}"#,
            r#"[]"#,
            r#"[{"TableIncludes":[]}]"#,
            r#"[{"DBName":"x","TableExcludes":[{"Table":"y"}]}]"#,
            r#"[{"DBName":"x","Tables":[]}]"#,
            r#"[{"DBName":"x","TableIncludes":[{"TableName":"y","ColumnExcludes":"z"}]}]"#,
        ] {
            let object: Value = serde_json::from_str(bad).unwrap();
            let error = rules(&object, &pg("postgres://h/x"), &pg("postgres://h/y")).unwrap_err();
            assert_eq!(error.code, "InvalidParameter", "{bad}");
        }
    }

    #[test]
    fn excludes_become_except_lists() {
        let object: Value = serde_json::from_str(
            r#"[{"DBName":"src","SchemaName":"public","TableExcludes":[{"TableName":"audit"},{"TableName":"tmp_.*"}]},
                {"DBName":"src","SchemaName":"app","TableIncludes":[{"TableName":"users","ColumnExcludes":[{"ColumnName":"password"}]}]}]"#,
        )
        .unwrap();
        let made = rules(&object, &pg("postgres://h/src"), &pg("postgres://h/dst")).unwrap();
        assert_eq!(
            made,
            [
                "INSERT INTO \"public\".* SELECT * FROM \"public\".* EXCEPT (\"public\".\"audit\", 'public\\.(tmp_.*)')",
                "INSERT INTO \"app\".\"users\" SELECT * EXCEPT (\"password\") FROM \"app\".\"users\"",
            ]
        );
    }

    #[test]
    fn urls_are_taken_apart_without_the_password() {
        assert_eq!(
            parts("postgres://u:secret@127.0.0.1:5432/src"),
            ("u".into(), "127.0.0.1".into(), "5432".into(), "src".into())
        );
        assert_eq!(
            parts("mysql://u@h:3306"),
            ("u".into(), "h".into(), "3306".into(), String::new())
        );
    }
}
