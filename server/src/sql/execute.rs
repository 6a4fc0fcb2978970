//! What each statement does to the service, and the answer it gets: rows, a command tag,
//! notices, or an error with its SQLSTATE. The pgwire layer ([`super`]) only encodes these.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::scalar::ScalarValue;

use super::grammar::{Chatter, CreateBody, CreateJob, Opt, OptValue, Statement};
use super::tables;
use crate::error::ApiError;
use crate::lifecycle::{Action, State};
use crate::service::{LimitsChange, Service};

/// How long `PRECHECK JOB` waits for its items.
const PRECHECK_WAIT: Duration = Duration::from_secs(120);

/// The short `WITH` keys: the `[migration]` (and `[sink]`) keys they stand for.
const SHORT_KEYS: &[(&str, &str)] = &[
    ("types", "migration.types"),
    ("batch_size", "migration.batch_size"),
    ("parallelism", "migration.parallelism"),
    ("chunk_rows", "migration.chunk_rows"),
    ("max_rows_per_second", "migration.max_rows_per_second"),
    ("rows_per_sec", "migration.max_rows_per_second"),
    ("bandwidth_limit_mb", "migration.bandwidth_limit_mb"),
    ("mb_per_sec", "migration.bandwidth_limit_mb"),
    ("existing_rows", "sink.existing_rows"),
];

/// The sections a dotted key may start with.
const SECTIONS: &[&str] = &["source", "sink", "migration"];

/// A refusal or failure, with its SQLSTATE.
#[derive(Debug)]
pub struct SqlError {
    /// The SQLSTATE (`42704`).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// More about it (the failed precheck items).
    pub detail: Option<String>,
    /// What to do.
    pub hint: Option<String>,
    /// Where, in the query string (1-based characters).
    pub position: Option<usize>,
}

impl SqlError {
    /// An error of `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> SqlError {
        SqlError {
            code,
            message: message.into(),
            detail: None,
            hint: None,
            position: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> SqlError {
        self.hint = Some(hint.into());
        self
    }

    fn at(mut self, position: usize) -> SqlError {
        self.position = Some(position);
        self
    }

    /// A bad value of option `opt`.
    fn option(opt: &Opt, message: impl Into<String>) -> SqlError {
        SqlError::new("22023", message).at(opt.position)
    }
}

impl From<ApiError> for SqlError {
    fn from(error: ApiError) -> SqlError {
        let job = error
            .details
            .get("job")
            .and_then(|j| j.as_str())
            .unwrap_or_default()
            .to_string();
        match error.code {
            "JobNotFound" => SqlError::new("42704", format!("job \"{job}\" does not exist"))
                .hint("SHOW JOBS lists the jobs"),
            "JobAlreadyExists" => SqlError::new("42710", format!("job \"{job}\" already exists"))
                .hint(format!(
                "choose another name, or DROP JOB {job} first (CREATE JOB IF NOT EXISTS skips it)"
            )),
            "InvalidJobState" => SqlError::new("55000", error.message),
            "PrecheckFailed" => {
                let mut failed = Vec::new();
                let items = error
                    .details
                    .get("precheck")
                    .and_then(|p| p.get("items"))
                    .and_then(|i| i.as_array());
                if let Some(items) = items {
                    for item in items.iter().filter(|i| i["status"] == "failed") {
                        failed.push(format!(
                            "{}: {} (fix: {})",
                            item["name"].as_str().unwrap_or_default(),
                            item["message"].as_str().unwrap_or_default(),
                            item["fix"].as_str().unwrap_or_default()
                        ));
                    }
                }
                let mut sql = SqlError::new(
                    "55000",
                    format!("job {job} cannot start: its precheck failed"),
                )
                .hint(format!(
                    "fix what the items say, then START JOB {job}; SELECT * FROM ferry.precheck_items WHERE job = '{job}' lists them"
                ));
                sql.detail = Some(failed.join("\n"));
                sql
            }
            "InvalidParameter" | "MissingParameter" => SqlError::new("22023", error.message),
            "PayloadTooLarge" => SqlError::new("54000", error.message),
            "Unauthorized" => SqlError::new("28P01", error.message),
            _ => SqlError::new("XX000", error.message),
        }
    }
}

/// What a statement answers.
pub enum Reply {
    /// Rows (a query, `SHOW`, `PRECHECK JOB`).
    Rows {
        /// Their schema.
        schema: SchemaRef,
        /// The rows.
        batches: Vec<RecordBatch>,
    },
    /// A command tag (`CREATE JOB`).
    Tag(String),
    /// `BEGIN`.
    Begin,
    /// `COMMIT` / `ROLLBACK`: the tag.
    End(&'static str),
}

/// A statement's reply and the notices that come before it.
pub struct Answer {
    /// `NOTICE`s (`job "x" does not exist, skipping`).
    pub notices: Vec<String>,
    /// The reply.
    pub reply: Reply,
}

impl Answer {
    fn tag(tag: impl Into<String>) -> Answer {
        Answer {
            notices: Vec::new(),
            reply: Reply::Tag(tag.into()),
        }
    }

    fn skipped(tag: &str, notice: String) -> Answer {
        Answer {
            notices: vec![notice],
            reply: Reply::Tag(tag.to_string()),
        }
    }
}

/// Runs `statement` against `service`; `params` are the extended protocol's bound values.
pub async fn execute(
    service: &Arc<Service>,
    statement: &Statement,
    params: &[ScalarValue],
) -> Result<Answer, SqlError> {
    match statement {
        Statement::Query { sql, offset } => {
            let (schema, batches) = query(service, sql, *offset, params).await?;
            Ok(Answer {
                notices: Vec::new(),
                reply: Reply::Rows { schema, batches },
            })
        }
        Statement::ShowJobs => rows(service, SHOW_JOBS).await,
        Statement::ShowJob { name } => {
            service.view(name)?;
            rows(
                service,
                &format!(
                    "SELECT * FROM ferry.jobs WHERE name = '{}'",
                    name.replace('\'', "''")
                ),
            )
            .await
        }
        Statement::Chatter(chatter) => chatter_answer(chatter),
        Statement::CreateJob(create) => create_job(service, create),
        Statement::Act {
            action,
            name,
            if_exists,
            options,
        } => act(service, *action, name, *if_exists, options).await,
        Statement::DropJob {
            name,
            if_exists,
            keep_resources,
        } => {
            if *if_exists && service.view(name).is_err() {
                return Ok(Answer::skipped("DROP JOB", skipping(name)));
            }
            service.drop_job(name, *keep_resources).await?;
            Ok(Answer::tag("DROP JOB"))
        }
        Statement::AlterJob { name, options } => {
            let mut patch = toml::Table::new();
            for opt in options {
                if opt.key == "start" {
                    return Err(SqlError::option(
                        opt,
                        "start is not a job key: START JOB starts a job",
                    ));
                }
                set_key(&mut patch, opt)?;
            }
            let text =
                toml::to_string(&patch).map_err(|e| SqlError::new("XX000", e.to_string()))?;
            service.alter(name, &text)?;
            Ok(Answer::tag("ALTER JOB"))
        }
        Statement::SetLimit { name, options } => {
            let mut change = LimitsChange::default();
            for opt in options {
                let value = match &opt.value {
                    OptValue::Default => None,
                    OptValue::Number(n) => match n.parse::<f64>() {
                        Ok(-1.0) => None,
                        Ok(n) => Some(n),
                        Err(_) => {
                            return Err(SqlError::option(
                                opt,
                                format!("{} takes a number or DEFAULT, not {n}", opt.key),
                            ))
                        }
                    },
                    _ => {
                        return Err(SqlError::option(
                            opt,
                            format!("{} takes a number or DEFAULT (unlimited)", opt.key),
                        ))
                    }
                };
                match opt.key.as_str() {
                    "rows_per_sec" => change.rows_per_sec = Some(value),
                    "mb_per_sec" => change.mb_per_sec = Some(value),
                    other => {
                        return Err(SqlError::option(
                            opt,
                            format!(
                                "unknown limit {other}: the limits are rows_per_sec and mb_per_sec"
                            ),
                        ))
                    }
                }
            }
            service.change_limits(name, change)?;
            Ok(Answer::tag("SET LIMIT"))
        }
    }
}

/// `SHOW JOBS`, as CONTROL-PLANE.md §3.7 defines it.
pub const SHOW_JOBS: &str =
    "SELECT name, id, state, phase, substate, round(full_percent, 1) AS full_pct, \
     rows_per_sec, lag_seconds, error_message FROM ferry.jobs ORDER BY id";

async fn rows(service: &Arc<Service>, sql: &str) -> Result<Answer, SqlError> {
    let (schema, batches) = query(service, sql, 0, &[]).await?;
    Ok(Answer {
        notices: Vec::new(),
        reply: Reply::Rows { schema, batches },
    })
}

fn skipping(name: &str) -> String {
    format!("job \"{name}\" does not exist, skipping")
}

fn chatter_answer(chatter: &Chatter) -> Result<Answer, SqlError> {
    Ok(match chatter {
        Chatter::Accepted(tag) => Answer::tag(*tag),
        Chatter::Begin => Answer {
            notices: Vec::new(),
            reply: Reply::Begin,
        },
        Chatter::Commit => Answer {
            notices: Vec::new(),
            reply: Reply::End("COMMIT"),
        },
        Chatter::Rollback => Answer {
            notices: Vec::new(),
            reply: Reply::End("ROLLBACK"),
        },
        Chatter::Show(name) => {
            let value = setting(name).ok_or_else(|| {
                SqlError::new(
                    "42704",
                    format!("unrecognized configuration parameter \"{name}\""),
                )
            })?;
            let column = name.replace(' ', "_");
            let schema = Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new(column, DataType::Utf8, false),
            ]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(arrow::array::StringArray::from(vec![value]))],
            )
            .map_err(|e| SqlError::new("XX000", e.to_string()))?;
            Answer {
                notices: Vec::new(),
                reply: Reply::Rows {
                    schema,
                    batches: vec![batch],
                },
            }
        }
    })
}

/// The value `SHOW name` answers.
pub fn setting(name: &str) -> Option<String> {
    Some(
        match name {
            "server_version" => "15.0",
            "server_version_num" => "150000",
            "server_encoding" | "client_encoding" => "UTF8",
            "transaction isolation level"
            | "transaction_isolation"
            | "default_transaction_isolation" => "read committed",
            "transaction_read_only" | "default_transaction_read_only" => "off",
            "standard_conforming_strings" | "integer_datetimes" => "on",
            "datestyle" => "ISO, MDY",
            "timezone" => "UTC",
            "intervalstyle" => "postgres",
            "search_path" => "ferry",
            "max_identifier_length" => "63",
            "application_name" => "",
            "is_superuser" => "off",
            _ => return None,
        }
        .to_string(),
    )
}

/// A job's spec from a `CREATE JOB`, and whether to start it.
fn create_job(service: &Arc<Service>, create: &CreateJob) -> Result<Answer, SqlError> {
    if create.if_not_exists && service.view(&create.name).is_ok() {
        return Ok(Answer::skipped(
            "CREATE JOB",
            format!("job \"{}\" already exists, skipping", create.name),
        ));
    }
    let (mut spec, mut start) = match &create.body {
        CreateBody::FromTo {
            source,
            sink,
            rules,
        } => {
            let mut spec = toml::Table::new();
            spec.insert("source".into(), section("url", source));
            spec.insert("sink".into(), section("url", sink));
            if !rules.is_empty() {
                let rules = rules
                    .iter()
                    .map(|sql| section("sql", sql))
                    .collect::<Vec<_>>();
                spec.insert("rules".into(), toml::Value::Array(rules));
            }
            (spec, true)
        }
        CreateBody::File(text) => {
            let spec: toml::Table = text.parse().map_err(|e: toml::de::Error| {
                SqlError::new(
                    "22023",
                    format!("the job file does not parse: {}", e.message()),
                )
            })?;
            (spec, true)
        }
        // A copy is a draft (the console's Duplicate Task), unless told to start.
        CreateBody::Like(other) => {
            let spec: toml::Table = service
                .view(other)?
                .record
                .spec
                .parse()
                .map_err(|e: toml::de::Error| SqlError::new("XX000", e.to_string()))?;
            // The copy is named by the statement, not by the original's file.
            let mut spec = spec;
            spec.remove("name");
            (spec, false)
        }
    };
    for opt in &create.options {
        if opt.key == "start" {
            start = match opt.value {
                OptValue::Bool(b) => b,
                _ => return Err(SqlError::option(opt, "start takes true or false")),
            };
            continue;
        }
        set_key(&mut spec, opt)?;
    }
    // The job is named by the statement; a name in the file must agree (checked by create).
    let text = toml::to_string(&spec).map_err(|e| SqlError::new("XX000", e.to_string()))?;
    service.create(&create.name, &text, start)?;
    Ok(Answer::tag("CREATE JOB"))
}

fn section(key: &str, value: &str) -> toml::Value {
    let mut table = toml::Table::new();
    table.insert(key.into(), toml::Value::String(value.to_string()));
    toml::Value::Table(table)
}

/// Sets the job-file key `opt` names (a short key, or a dotted one) in `spec`.
fn set_key(spec: &mut toml::Table, opt: &Opt) -> Result<(), SqlError> {
    let key = SHORT_KEYS
        .iter()
        .find(|(short, _)| *short == opt.key)
        .map_or(opt.key.as_str(), |(_, long)| long);
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() < 2 || !SECTIONS.contains(&parts[0]) {
        let known: Vec<&str> = SHORT_KEYS
            .iter()
            .map(|(short, _)| *short)
            .chain(["start"])
            .collect();
        let mut message = format!("unknown option {}", opt.key);
        if let Some(close) = ferry_sql::suggest::closest(&opt.key, known.iter().copied()) {
            message.push_str(&format!(" (did you mean {close}?)"));
        }
        return Err(SqlError::option(opt, message).hint(format!(
            "the options are {} and start, or any job-file key written out, quoted: \"source.url\", \"sink.existing_rows\", \"migration.chunk_rows\", \"source.options.server_id\"",
            known[..known.len() - 1].join(", ")
        )));
    }
    let value = match &opt.value {
        OptValue::Text(text) if key == "migration.types" => toml::Value::Array(
            text.split(',')
                .map(|t| toml::Value::String(t.trim().to_ascii_lowercase()))
                .filter(|t| t.as_str() != Some(""))
                .collect(),
        ),
        OptValue::Text(text) => toml::Value::String(text.clone()),
        OptValue::Bool(b) => toml::Value::Boolean(*b),
        OptValue::Number(n) => match n.parse::<i64>() {
            Ok(i) => toml::Value::Integer(i),
            Err(_) => toml::Value::Float(
                n.parse()
                    .map_err(|_| SqlError::option(opt, format!("{n} is not a number")))?,
            ),
        },
        OptValue::Default => {
            return Err(SqlError::option(
                opt,
                format!(
                    "{} has no DEFAULT here: leave it out to keep the default",
                    opt.key
                ),
            ))
        }
    };
    let mut table = spec;
    for part in &parts[..parts.len() - 1] {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(inner) => inner,
            _ => {
                return Err(SqlError::option(
                    opt,
                    format!("{key}: {part} is a value, not a table of keys"),
                ))
            }
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

async fn act(
    service: &Arc<Service>,
    action: Action,
    name: &str,
    if_exists: bool,
    options: &[Opt],
) -> Result<Answer, SqlError> {
    let tag = format!("{} JOB", action.name().to_ascii_uppercase());
    if if_exists && service.view(name).is_err() {
        if action == Action::Precheck {
            // What PRECHECK JOB describes itself as: rows (none here).
            let schema = tables::precheck_schema();
            return Ok(Answer {
                notices: vec![skipping(name)],
                reply: Reply::Rows {
                    batches: vec![RecordBatch::new_empty(Arc::clone(&schema))],
                    schema,
                },
            });
        }
        return Ok(Answer::skipped(&tag, skipping(name)));
    }
    match action {
        Action::Cutover => {
            let mut max_lag = crate::service::CUTOVER_LAG;
            let mut timeout = crate::service::CUTOVER_TIMEOUT;
            for opt in options {
                match (opt.key.as_str(), &opt.value) {
                    ("max_lag_seconds", OptValue::Number(n)) => {
                        max_lag = n
                            .parse::<f64>()
                            .ok()
                            .filter(|n| *n >= 0.0 && n.is_finite())
                            .ok_or_else(|| SqlError::option(opt, "max_lag_seconds takes a number of 0 or more"))?;
                    }
                    ("timeout", OptValue::Number(n)) => {
                        timeout = n
                            .parse::<u64>()
                            .ok()
                            .filter(|n| *n <= 86_400)
                            .map(Duration::from_secs)
                            .ok_or_else(|| SqlError::option(opt, "timeout takes seconds (at most 86400) or a duration such as '10m'"))?;
                    }
                    ("timeout", OptValue::Text(text)) => {
                        timeout = humantime::parse_duration(text)
                            .ok()
                            .filter(|d| d.as_secs() <= 86_400)
                            .ok_or_else(|| SqlError::option(opt, format!("timeout {text:?} is not a duration of at most a day (such as '10m' or '90s')")))?;
                    }
                    _ => {
                        return Err(SqlError::option(
                            opt,
                            format!("unknown cutover option {} (or a wrong value): the options are max_lag_seconds = N and timeout = '10m'", opt.key),
                        ))
                    }
                }
            }
            service.act_with(name, action, max_lag, timeout)?;
            // A cutover answers when it is done, or when it gave up.
            service
                .settle(name, timeout + Duration::from_secs(30))
                .await;
            let view = service.view(name)?;
            let state = view.record.state;
            if state == State::Failed {
                let why = view.record.error.map(|e| e.message).unwrap_or_default();
                return Err(SqlError::new(
                    "55000",
                    format!("job {name} failed during its cutover: {why}"),
                ));
            }
            if state != State::Stopped {
                return Err(SqlError::new(
                    "57014",
                    format!(
                        "the cutover of job {name} timed out: the lag did not fall to {max_lag} s within {} s; the job is {} again",
                        timeout.as_secs(),
                        state.name()
                    ),
                )
                .hint("stop the writes at the source, or raise max_lag_seconds / timeout, and CUTOVER JOB again"));
            }
            Ok(Answer::tag(tag))
        }
        Action::Precheck => {
            if let Some(opt) = options.first() {
                return Err(SqlError::option(opt, "PRECHECK JOB takes no options"));
            }
            service.act(name, action)?;
            service.settle(name, PRECHECK_WAIT).await;
            let view = service.view(name)?;
            let batch =
                tables::precheck_batch(&view).map_err(|e| SqlError::new("XX000", e.to_string()))?;
            Ok(Answer {
                notices: Vec::new(),
                reply: Reply::Rows {
                    schema: batch.schema(),
                    batches: vec![batch],
                },
            })
        }
        _ => {
            if let Some(opt) = options.first() {
                return Err(SqlError::option(opt, format!("{tag} takes no options")));
            }
            service.act(name, action)?;
            Ok(Answer::tag(tag))
        }
    }
}

/// The words that start a statement that would write: the tables are read-only.
const WRITES: &[&str] = &[
    "INSERT", "UPDATE", "DELETE", "TRUNCATE", "CREATE", "DROP", "ALTER", "MERGE", "COPY", "GRANT",
    "REVOKE", "COMMENT", "UPSERT", "REPLACE", "VACUUM",
];

/// Runs a query over the `ferry.*` tables: its schema and rows.
pub async fn query(
    service: &Arc<Service>,
    sql: &str,
    offset: usize,
    params: &[ScalarValue],
) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
    let frame = plan(service, sql, offset).await?;
    let frame = if params.is_empty() {
        frame
    } else {
        frame
            .with_param_values(params.to_vec())
            .map_err(|e| datafusion_error(e, sql, offset))?
    };
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let run = async {
        use futures::StreamExt;
        let mut stream = frame
            .execute_stream()
            .await
            .map_err(|e| datafusion_error(e, sql, offset))?;
        let mut batches = Vec::new();
        let mut rows = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| datafusion_error(e, sql, offset))?;
            rows += batch.num_rows();
            if rows > MAX_ROWS {
                return Err(SqlError::new(
                    "54000",
                    format!("the query answers more than {MAX_ROWS} rows: narrow it with WHERE or LIMIT"),
                ));
            }
            batches.push(batch);
        }
        Ok(batches)
    };
    let batches = tokio::time::timeout(QUERY_TIMEOUT, run)
        .await
        .map_err(|_| {
            SqlError::new(
                "57014",
                format!(
                    "canceling statement due to statement timeout: a query over ferry's tables may run {} s",
                    QUERY_TIMEOUT.as_secs()
                ),
            )
        })??;
    Ok((schema, batches))
}

/// The most rows one query answers: the tables of even a large service hold fewer.
const MAX_ROWS: usize = 1_000_000;

/// The longest a query over ferry's tables runs.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// A query's result schema and its parameters' types, without running it.
pub async fn describe(
    service: &Arc<Service>,
    sql: &str,
) -> Result<(SchemaRef, Vec<Option<DataType>>), SqlError> {
    let frame = plan(service, sql, 0).await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let types = frame
        .logical_plan()
        .get_parameter_types()
        .map_err(|e| datafusion_error(e, sql, 0))?;
    let mut params: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(id, t)| {
            id.trim_start_matches('$')
                .parse()
                .ok()
                .map(|n: usize| (n, t))
        })
        .collect();
    params.sort_by_key(|(n, _)| *n);
    let count = params.last().map_or(0, |(n, _)| *n);
    let mut list = vec![None; count];
    for (n, t) in params {
        if n >= 1 {
            list[n - 1] = t;
        }
    }
    Ok((schema, list))
}

async fn plan(
    service: &Arc<Service>,
    sql: &str,
    offset: usize,
) -> Result<datafusion::dataframe::DataFrame, SqlError> {
    let first = sql
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| !w.is_empty())
        .unwrap_or_default()
        .to_ascii_uppercase();
    if WRITES.contains(&first.as_str()) {
        return Err(SqlError::new(
            "25006",
            format!("cannot execute {first}: ferry's tables (ferry.{}) are read-only", tables::TABLES.join(", ferry.")),
        )
        .hint("change jobs with CREATE JOB, ALTER JOB, SET LIMIT FOR JOB, START/PAUSE/RESUME/STOP/CUTOVER JOB and DROP JOB")
        .at(offset + 1));
    }
    let context = tables::context(service, sql).map_err(|e| datafusion_error(e, sql, offset))?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    context
        .sql_with_options(sql, options)
        .await
        .map_err(|e| datafusion_error(e, sql, offset))
}

/// A DataFusion error as a SQLSTATE, with the position of a syntax error.
fn datafusion_error(error: DataFusionError, sql: &str, offset: usize) -> SqlError {
    let message = error.strip_backtrace();
    let lower = message.to_ascii_lowercase();
    match error.find_root() {
        DataFusionError::SQL(parse, _) => {
            let text = parse.to_string();
            let mut error = SqlError::new("42601", format!("syntax error: {text}"));
            if let Some(at) = line_column(&text, sql) {
                error.position = Some(offset + at);
            }
            error
        }
        _ if lower.contains("dml not supported") || lower.contains("ddl not supported") => {
            SqlError::new("25006", format!("ferry's tables are read-only: {message}"))
                .hint("change jobs with CREATE JOB, ALTER JOB, SET LIMIT FOR JOB, START/PAUSE/RESUME/STOP/CUTOVER JOB and DROP JOB")
        }
        _ if lower.contains("table") && lower.contains("not found") => {
            SqlError::new("42P01", message).hint(format!(
                "the tables are ferry.{}",
                tables::TABLES.join(", ferry.")
            ))
        }
        DataFusionError::SchemaError(..) => SqlError::new("42703", message),
        _ if lower.contains("invalid function")
            || lower.contains("function") && lower.contains("not found") =>
        {
            SqlError::new("42883", message)
        }
        DataFusionError::Plan(_) | DataFusionError::NotImplemented(_) => {
            SqlError::new("0A000", message)
        }
        _ => SqlError::new("XX000", message),
    }
}

/// The character position in `sql` of sqlparser's "at Line: L, Column: C".
fn line_column(text: &str, sql: &str) -> Option<usize> {
    let number = |label: &str| -> Option<usize> {
        let at = text.rfind(label)? + label.len();
        let digits: String = text[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    let (line, column) = (number("Line: ")?, number("Column: ")?);
    let before: usize = sql
        .split('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count() + 1)
        .sum();
    Some(before + column)
}
