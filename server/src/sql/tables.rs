//! The read-only `ferry.*` tables the SQL control plane queries with DataFusion: `jobs`,
//! `job_tables`, `precheck_items` and `events`, built for each query from the jobs' live
//! views (the same status documents HTTP serves), states as text.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::scalar::ScalarValue;
use serde_json::Value;

use crate::doc;
use crate::service::{Service, View};

/// The schema the tables live in (also the default one: `jobs` is `ferry.jobs`).
pub const SCHEMA: &str = "ferry";

/// What `SELECT version()` answers: a PostgreSQL version drivers can parse, then ferry's.
pub fn version() -> String {
    format!(
        "PostgreSQL 15.0 (ferry {}) — ferry's SQL control plane",
        env!("CARGO_PKG_VERSION")
    )
}

/// A column's type.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int8,
    Int4,
    Float8,
    Time,
    Bool,
}

/// One value.
enum Cell {
    Text(Option<String>),
    Int(Option<i64>),
    Float(Option<f64>),
    /// Milliseconds since the epoch.
    Time(Option<u64>),
    Bool(Option<bool>),
}

/// A column: its name, type and how a row gives its value.
struct Column<R> {
    name: &'static str,
    kind: Kind,
    value: fn(&R) -> Cell,
}

const fn column<R>(name: &'static str, kind: Kind, value: fn(&R) -> Cell) -> Column<R> {
    Column { name, kind, value }
}

fn schema_of<R>(columns: &[Column<R>]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| {
                let data_type = match c.kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Int8 => DataType::Int64,
                    Kind::Int4 => DataType::Int32,
                    Kind::Float8 => DataType::Float64,
                    Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    Kind::Bool => DataType::Boolean,
                };
                Field::new(c.name, data_type, true)
            })
            .collect::<Vec<_>>(),
    ))
}

fn batch_of<R>(columns: &[Column<R>], rows: &[R]) -> Result<RecordBatch, DataFusionError> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|c| -> ArrayRef {
            let cells = rows.iter().map(|r| (c.value)(r));
            match c.kind {
                Kind::Text => {
                    let mut b = StringBuilder::new();
                    cells.for_each(|v| {
                        b.append_option(if let Cell::Text(v) = v { v } else { None })
                    });
                    Arc::new(b.finish())
                }
                Kind::Int8 => {
                    let mut b = Int64Builder::new();
                    cells
                        .for_each(|v| b.append_option(if let Cell::Int(v) = v { v } else { None }));
                    Arc::new(b.finish())
                }
                Kind::Int4 => {
                    let mut b = Int32Builder::new();
                    cells.for_each(|v| {
                        b.append_option(match v {
                            Cell::Int(v) => v.and_then(|v| i32::try_from(v).ok()),
                            _ => None,
                        })
                    });
                    Arc::new(b.finish())
                }
                Kind::Float8 => {
                    let mut b = Float64Builder::new();
                    cells.for_each(|v| {
                        b.append_option(if let Cell::Float(v) = v { v } else { None })
                    });
                    Arc::new(b.finish())
                }
                Kind::Time => {
                    let mut b = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
                    cells.for_each(|v| {
                        b.append_option(match v {
                            Cell::Time(v) => {
                                v.and_then(|ms| i64::try_from(ms).ok()).map(|ms| ms * 1000)
                            }
                            _ => None,
                        })
                    });
                    Arc::new(b.finish())
                }
                Kind::Bool => {
                    let mut b = BooleanBuilder::new();
                    cells.for_each(|v| {
                        b.append_option(if let Cell::Bool(v) = v { v } else { None })
                    });
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema_of(columns), arrays)?)
}

/// A job as `ferry.jobs` reads it: its view and status document.
struct JobRow {
    view: View,
    doc: Value,
}

fn text(value: &Value) -> Cell {
    Cell::Text(match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

fn float(value: &Value) -> Option<f64> {
    value.as_f64()
}

fn int(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_f64().map(|f| f as i64))
}

fn sum(a: &Value, b: &Value) -> Option<f64> {
    match (float(a), float(b)) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
    }
}

const JOBS: &[Column<JobRow>] = &[
    column("id", Kind::Int8, |r| {
        Cell::Int(Some(r.view.record.id as i64))
    }),
    column("name", Kind::Text, |r| {
        Cell::Text(Some(r.view.record.name.clone()))
    }),
    column("display_name", Kind::Text, |r| {
        Cell::Text(r.view.record.labels.get("display_name").cloned())
    }),
    column("state", Kind::Text, |r| {
        Cell::Text(Some(r.view.record.state.name().to_string()))
    }),
    column("phase", Kind::Text, |r| {
        Cell::Text(r.view.record.phase.clone())
    }),
    column("substate", Kind::Text, |r| text(&r.doc["substate"])),
    column("desired_state", Kind::Text, |r| {
        text(&r.doc["desired_state"])
    }),
    column("source_engine", Kind::Text, |r| {
        text(&r.doc["source"]["engine"])
    }),
    column("source_url", Kind::Text, |r| text(&r.doc["source"]["url"])),
    column("sink_engine", Kind::Text, |r| {
        text(&r.doc["sink"]["engine"])
    }),
    column("sink_url", Kind::Text, |r| text(&r.doc["sink"]["url"])),
    column("types", Kind::Text, |r| {
        let types: Vec<&str> = r.doc["types"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Cell::Text(Some(types.join(",")))
    }),
    column("created_at", Kind::Time, |r| {
        Cell::Time(Some(r.view.record.created_at))
    }),
    column("started_at", Kind::Time, |r| {
        Cell::Time(r.view.record.started_at)
    }),
    column("updated_at", Kind::Time, |r| {
        Cell::Time(Some(r.view.record.updated_at))
    }),
    column("finished_at", Kind::Time, |r| {
        Cell::Time(r.view.record.finished_at)
    }),
    column("precheck_status", Kind::Text, |r| {
        text(&r.doc["precheck"]["status"])
    }),
    column("precheck_failed", Kind::Int4, |r| {
        Cell::Int(int(&r.doc["precheck"]["failed"]))
    }),
    column("schema_percent", Kind::Float8, |r| {
        Cell::Float(float(&r.doc["schema"]["percent"]))
    }),
    column("full_percent", Kind::Float8, |r| {
        Cell::Float(float(&r.doc["full"]["percent"]))
    }),
    column("rows_done", Kind::Int8, |r| {
        Cell::Int(
            sum(
                &r.doc["full"]["rows_done"],
                &r.doc["incremental"]["rows_applied"],
            )
            .map(|f| f as i64),
        )
    }),
    column("rows_total", Kind::Int8, |r| {
        Cell::Int(int(&r.doc["full"]["rows_total_estimate"]))
    }),
    column("bytes_done", Kind::Int8, |r| {
        Cell::Int(int(&r.doc["full"]["bytes_done"]))
    }),
    column("rows_per_sec", Kind::Float8, |r| {
        Cell::Float(sum(
            &r.doc["full"]["rows_per_sec"],
            &r.doc["incremental"]["rows_per_sec"],
        ))
    }),
    column("mb_per_sec", Kind::Float8, |r| {
        Cell::Float(sum(
            &r.doc["full"]["mb_per_sec"],
            &r.doc["incremental"]["mb_per_sec"],
        ))
    }),
    column("lag_seconds", Kind::Float8, |r| {
        Cell::Float(float(&r.doc["incremental"]["lag_seconds"]))
    }),
    column("lag_bytes", Kind::Int8, |r| {
        Cell::Int(int(&r.doc["incremental"]["lag_bytes"]))
    }),
    column("checkpoint", Kind::Text, |r| {
        let checkpoint = &r.doc["incremental"]["checkpoint"];
        match checkpoint.get("position") {
            Some(position) => text(position),
            None => text(checkpoint),
        }
    }),
    column("limit_rows_per_sec", Kind::Int8, |r| {
        Cell::Int(r.view.record.limits.rows_per_sec.map(|n| n as i64))
    }),
    column("limit_mb_per_sec", Kind::Float8, |r| {
        Cell::Float(r.view.record.limits.mb_per_sec)
    }),
    column("error_code", Kind::Text, |r| text(&r.doc["error"]["code"])),
    column("error_message", Kind::Text, |r| {
        text(&r.doc["error"]["message"])
    }),
    column("retries", Kind::Int4, |r| {
        Cell::Int(Some(r.view.retries as i64))
    }),
    column("next_run_at", Kind::Time, |_| Cell::Time(None)),
];

/// One row of `ferry.job_tables`.
struct TableRow {
    job: String,
    table: Value,
}

const JOB_TABLES: &[Column<TableRow>] = &[
    column("job", Kind::Text, |r| Cell::Text(Some(r.job.clone()))),
    column("source_table", Kind::Text, |r| {
        text(&r.table["source_table"])
    }),
    column("status", Kind::Text, |r| text(&r.table["status"])),
    column("rows_done", Kind::Int8, |r| {
        Cell::Int(int(&r.table["rows_done"]))
    }),
    column("rows_total", Kind::Int8, |r| {
        Cell::Int(int(&r.table["rows_total_estimate"]))
    }),
    column("chunks_done", Kind::Int4, |r| {
        Cell::Int(int(&r.table["parts_done"]))
    }),
    column("chunks_total", Kind::Int4, |r| {
        Cell::Int(int(&r.table["parts_total"]))
    }),
];

/// One row of `ferry.precheck_items`.
struct ItemRow {
    job: String,
    item: crate::catalog::ItemRecord,
    checked_at: u64,
}

/// The columns of `ferry.precheck_items` (and of what `PRECHECK JOB` returns).
const PRECHECK_ITEMS: &[Column<ItemRow>] = &[
    column("job", Kind::Text, |r| Cell::Text(Some(r.job.clone()))),
    column("item", Kind::Text, |r| {
        Cell::Text(Some(r.item.name.clone()))
    }),
    column("status", Kind::Text, |r| {
        Cell::Text(Some(r.item.status.clone()))
    }),
    column("blocking", Kind::Bool, |r| {
        Cell::Bool(Some(r.item.blocking))
    }),
    column("object", Kind::Text, |r| Cell::Text(r.item.object.clone())),
    column("message", Kind::Text, |r| {
        Cell::Text(Some(r.item.message.clone()))
    }),
    column("fix", Kind::Text, |r| Cell::Text(Some(r.item.fix.clone()))),
    column("checked_at", Kind::Time, |r| Cell::Time(Some(r.checked_at))),
];

/// One row of `ferry.events`.
struct EventRow {
    job: String,
    event: crate::catalog::EventRecord,
}

const EVENTS: &[Column<EventRow>] = &[
    column("job", Kind::Text, |r| Cell::Text(Some(r.job.clone()))),
    column("seq", Kind::Int8, |r| Cell::Int(Some(r.event.seq as i64))),
    column("at", Kind::Time, |r| Cell::Time(Some(r.event.at))),
    column("level", Kind::Text, |r| {
        Cell::Text(Some(r.event.level.clone()))
    }),
    column("kind", Kind::Text, |r| {
        Cell::Text(Some(r.event.kind.clone()))
    }),
    column("from_state", Kind::Text, |r| {
        Cell::Text(r.event.from_state.map(|s| s.name().to_string()))
    }),
    column("to_state", Kind::Text, |r| {
        Cell::Text(r.event.to_state.map(|s| s.name().to_string()))
    }),
    column("message", Kind::Text, |r| {
        Cell::Text(Some(r.event.message.clone()))
    }),
];

/// The names of the tables, for messages.
pub const TABLES: &[&str] = &["jobs", "job_tables", "precheck_items", "events"];

fn items_of(view: &View) -> Vec<ItemRow> {
    let Some(precheck) = &view.record.precheck else {
        return Vec::new();
    };
    precheck
        .items
        .iter()
        .map(|item| ItemRow {
            job: view.record.name.clone(),
            item: item.clone(),
            checked_at: precheck.checked_at,
        })
        .collect()
}

/// The schema of `ferry.precheck_items` (and of what `PRECHECK JOB` returns).
pub fn precheck_schema() -> SchemaRef {
    schema_of(PRECHECK_ITEMS)
}

/// The precheck items of `view` as a batch of `ferry.precheck_items`' columns.
pub fn precheck_batch(view: &View) -> Result<RecordBatch, DataFusionError> {
    batch_of(PRECHECK_ITEMS, &items_of(view))
}

/// The memory a query over the `ferry.*` tables may use: far more than the tables of a
/// service's jobs hold, far less than would hurt the migrations beside it.
pub const QUERY_MEMORY: usize = 256 << 20;

/// A DataFusion session over the jobs as they are now: the `ferry.*` tables, `version()`.
/// Only the tables `sql` names are filled (the others are there, empty: the query does not
/// name them). No table functions (`range`, `generate_series`), a bounded memory pool and
/// no spilling: a query cannot grow without bound beside the jobs.
pub fn context(service: &Service, sql: &str) -> Result<SessionContext, DataFusionError> {
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(true)
        .with_default_catalog_and_schema("ferry_catalog", SCHEMA)
        .with_information_schema(false);
    let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
        .with_memory_limit(QUERY_MEMORY, 1.0)
        .with_disk_manager_builder(
            datafusion::execution::disk_manager::DiskManagerBuilder::default()
                .with_mode(datafusion::execution::disk_manager::DiskManagerMode::Disabled),
        )
        .build_arc()?;
    let context = SessionContext::new_with_config_rt(config, runtime);
    for function in datafusion::functions_table::all_default_table_functions() {
        context.deregister_udtf(function.name());
    }
    let lower = sql.to_ascii_lowercase();
    let named = |table: &str| lower.contains(table);
    let views =
        if named("jobs") || named("job_tables") || named("precheck_items") || named("events") {
            service.views()
        } else {
            Vec::new()
        };
    let mut items = Vec::new();
    let mut tables = Vec::new();
    let mut events = Vec::new();
    for view in &views {
        if named("precheck_items") {
            items.extend(items_of(view));
        }
        if named("job_tables") {
            if let Some(list) = doc::tables(view)["tables"].as_array() {
                tables.extend(list.iter().map(|table| TableRow {
                    job: view.record.name.clone(),
                    table: table.clone(),
                }));
            }
        }
        let name = &view.record.name;
        if named("events") {
            if let Ok(list) = service.events(name, 0, usize::MAX) {
                events.extend(list.into_iter().map(|event| EventRow {
                    job: name.clone(),
                    event,
                }));
            }
        }
    }
    let jobs: Vec<JobRow> = if named("jobs") {
        views
            .into_iter()
            .map(|view| JobRow {
                doc: doc::document(&view),
                view,
            })
            .collect()
    } else {
        Vec::new()
    };
    register(&context, "jobs", batch_of(JOBS, &jobs)?)?;
    register(&context, "job_tables", batch_of(JOB_TABLES, &tables)?)?;
    register(
        &context,
        "precheck_items",
        batch_of(PRECHECK_ITEMS, &items)?,
    )?;
    register(&context, "events", batch_of(EVENTS, &events)?)?;
    let version_text = version();
    context.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version_text.clone(),
            ))))
        }),
    ));
    for (name, value) in [("current_database", "ferry"), ("current_schema", SCHEMA)] {
        context.register_udf(create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(move |_| {
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                    value.to_string(),
                ))))
            }),
        ));
    }
    Ok(context)
}

fn register(
    context: &SessionContext,
    name: &str,
    batch: RecordBatch,
) -> Result<(), DataFusionError> {
    let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
    context.register_table(format!("{SCHEMA}.{name}"), Arc::new(table))?;
    Ok(())
}
