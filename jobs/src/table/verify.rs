//! `ferry verify`: compares every target table with what its rule selects from the source,
//! row by row. Both sides are read in primary-key order (one consistent snapshot each) and
//! merged like a sort-merge join: memory stays at a few batches whatever the table sizes, and
//! every difference is found exactly — a row missing in the target, a row the target should
//! not hold, a row whose values differ — not only a count.
//!
//! A target without a primary key is a multiset of rows: it is compared by counting the
//! copies of each distinct row on both sides, which holds one entry per distinct row in memory.
//! Parquet and Arrow files are compared that way too: they have no key order to merge by.
//!
//! Run it when the source is quiet (writers stopped and the job caught up, or stopped): a
//! source still taking writes differs from any copy of it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use ferry_engine::{
    ChangeBatch, Error, Route, Snapshot, SnapshotRequest, SnapshotTable, Source, TableSchema,
};
use tokio::sync::mpsc;

use crate::table::Plan;
use crate::JobError;

/// Differences printed per table at most; the rest are counted.
pub const SHOWN_DIFFERENCES: usize = 20;

/// What verifying one target table found.
#[derive(Debug, Default)]
pub struct TableReport {
    /// The target table.
    pub target: String,
    /// Rows the rule selects at the source.
    pub source_rows: u64,
    /// Rows in the target.
    pub sink_rows: u64,
    /// Rows the target lacks.
    pub missing: u64,
    /// Rows the target holds but should not.
    pub extra: u64,
    /// Rows whose values differ.
    pub different: u64,
    /// The first differences, in words.
    pub shown: Vec<String>,
}

impl TableReport {
    /// Whether the target equals the source.
    pub fn is_equal(&self) -> bool {
        self.missing + self.extra + self.different == 0
    }
}

/// Compares every target of `plan`; returns one report per target, in plan order.
pub async fn verify(plan: &Plan) -> ferry_engine::Result<Vec<TableReport>> {
    let sink_source =
        crate::registry::read_back(&plan.job.sink.url, plan.job.sink.connector_options()?)?;
    let sink_catalog = sink_source.catalog().await?;
    let mut reports = Vec::new();
    for (index, flow) in plan.flows.iter().enumerate() {
        for route in &flow.routes {
            let target = sink_catalog
                .iter()
                .find(|t| t.id == route.target.id)
                .cloned()
                .ok_or_else(|| JobError::NotIncremental {
                    field: "rules".into(),
                    message: format!(
                        "target table {} does not exist; run the job first",
                        route.target.id
                    ),
                })?;
            let report = verify_route(
                plan,
                &plan.request.tables[index],
                route,
                &target,
                sink_source.as_ref(),
            )
            .await?;
            reports.push(report);
        }
    }
    Ok(reports)
}

/// The reading task of one side; its result says whether the side ended or failed.
type ReadTask = tokio::task::JoinHandle<ferry_engine::Result<u64>>;

/// Reads one table of `source` in key order into a channel.
async fn ordered_reader(
    source: &dyn Source,
    table: SnapshotTable,
    batch_size: usize,
) -> ferry_engine::Result<(Arc<dyn Snapshot>, mpsc::Receiver<ChangeBatch>, ReadTask)> {
    let snapshot = source
        .snapshot(SnapshotRequest {
            tables: vec![table],
            batch_size,
            parallelism: 1,
            chunk_rows: u64::MAX,
            parts: None,
            ordered: true,
        })
        .await?;
    let (sender, receiver) = mpsc::channel(4);
    let reader = Arc::clone(&snapshot);
    let task = tokio::spawn(async move {
        match reader.parts().first().cloned() {
            Some(part) => reader.read(&part, sender).await,
            None => Ok(0),
        }
    });
    Ok((snapshot, receiver, task))
}

/// One side of the comparison: batches in key order, with their rows in comparable form.
struct Side {
    receiver: mpsc::Receiver<ChangeBatch>,
    /// The task filling `receiver`: when the channel ends, whether the table did or the
    /// read failed (a connection lost is a failure, never rows "missing").
    reader: Option<ReadTask>,
    batch: Option<(RecordBatch, Rows, Rows)>,
    row: usize,
    rows: u64,
}

impl Side {
    /// Moves to the next row, reading the next batch when needed; false at the end.
    async fn advance(
        &mut self,
        convert: &impl Fn(&RecordBatch) -> ferry_engine::Result<(RecordBatch, Rows, Rows)>,
    ) -> ferry_engine::Result<bool> {
        loop {
            if let Some((batch, _, _)) = &self.batch {
                if self.row < batch.num_rows() {
                    return Ok(true);
                }
            }
            match self.receiver.recv().await {
                Some(batch) => {
                    self.rows += batch.num_rows() as u64;
                    self.batch = Some(convert(&batch.rows)?);
                    self.row = 0;
                }
                None => {
                    self.batch = None;
                    if let Some(reader) = self.reader.take() {
                        reader.await.map_err(|e| {
                            Error::Internal(format!("a verify reader failed: {e}"))
                        })??;
                    }
                    return Ok(false);
                }
            }
        }
    }
}

async fn verify_route(
    plan: &Plan,
    table: &SnapshotTable,
    route: &Route,
    target: &TableSchema,
    sink: &dyn Source,
) -> ferry_engine::Result<TableReport> {
    let schema: SchemaRef = route.target.columns.clone();
    let target_id = route.target.id.to_string();
    // Without a primary key the table is a multiset of rows: compared by counting copies of
    // each distinct row, in memory, instead of merging in key order. So are files, which
    // cannot be read in key order.
    let multiset = route.target.primary_key.is_empty() || !sink.reads_in_key_order();
    let key: Vec<usize> = if multiset {
        (0..schema.fields().len()).collect()
    } else {
        route.target.primary_key.clone()
    };
    let batch_size = plan.job.migration.batch_size.max(1024);
    let (source_snapshot, source_rows, source_reader) =
        ordered_reader(plan.source.as_ref(), table.clone(), batch_size).await?;
    // The target's columns in the order the rule writes them.
    let mut ordered = Vec::new();
    for field in schema.fields() {
        let index = target
            .column_index(field.name())
            .ok_or_else(|| JobError::NotIncremental {
                field: "rules".into(),
                message: format!("target table {target_id} has no column {}", field.name()),
            })?;
        ordered.push(index);
    }
    let mut target_table = target.clone();
    target_table.primary_key = if multiset {
        Vec::new()
    } else {
        key.iter().map(|&k| ordered[k]).collect()
    };
    let (sink_snapshot, sink_rows, sink_reader) = ordered_reader(
        sink,
        SnapshotTable {
            table: target_table,
            columns: ordered,
            filter: None,
        },
        batch_size,
    )
    .await?;

    let internal =
        |e: arrow::error::ArrowError| Error::Internal(format!("verifying {target_id}: {e}"));
    let fields = |indexes: &[usize]| -> Vec<SortField> {
        indexes
            .iter()
            .map(|&i| SortField::new(schema.field(i).data_type().clone()))
            .collect()
    };
    let all: Vec<usize> = (0..schema.fields().len()).collect();
    let key_converter = RowConverter::new(fields(&key)).map_err(internal)?;
    let row_converter = RowConverter::new(fields(&all)).map_err(internal)?;
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let convert = |batch: &RecordBatch| -> ferry_engine::Result<(RecordBatch, Rows, Rows)> {
        let columns = batch
            .columns()
            .iter()
            .zip(schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast_with_options(column, field.data_type(), &options)
                }
            })
            .collect::<Result<Vec<ArrayRef>, _>>()
            .map_err(internal)?;
        let keys: Vec<ArrayRef> = key.iter().map(|&k| Arc::clone(&columns[k])).collect();
        let key_rows = key_converter.convert_columns(&keys).map_err(internal)?;
        let rows = row_converter.convert_columns(&columns).map_err(internal)?;
        let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&schema), columns, &options)
            .map_err(internal)?;
        Ok((batch, key_rows, rows))
    };
    let transform = Arc::clone(&route.transform);
    let convert_source = |batch: &RecordBatch| -> ferry_engine::Result<(RecordBatch, Rows, Rows)> {
        let change = ChangeBatch::snapshot(
            Arc::new(table.table.id.clone()),
            batch.clone(),
            ferry_engine::Position::Snapshot { part: 0, offset: 0 },
            0,
        );
        match transform.apply(&change)? {
            Some(out) => convert(&out.rows),
            None => convert(&RecordBatch::new_empty(Arc::clone(&schema))),
        }
    };

    let mut source = Side {
        receiver: source_rows,
        reader: Some(source_reader),
        batch: None,
        row: 0,
        rows: 0,
    };
    let mut sink = Side {
        receiver: sink_rows,
        reader: Some(sink_reader),
        batch: None,
        row: 0,
        rows: 0,
    };
    let mut report = TableReport {
        target: target_id.clone(),
        ..TableReport::default()
    };
    if multiset {
        let mut copies: HashMap<OwnedRow, i64> = HashMap::new();
        let mut source_kept = 0u64;
        while source.advance(&convert_source).await? {
            if let Some((_, _, rows)) = &source.batch {
                for row in rows.iter().skip(source.row) {
                    *copies.entry(row.owned()).or_default() += 1;
                    source_kept += 1;
                }
                source.row = rows.num_rows();
            }
        }
        while sink.advance(&convert).await? {
            if let Some((_, _, rows)) = &sink.batch {
                for row in rows.iter().skip(sink.row) {
                    *copies.entry(row.owned()).or_default() -= 1;
                }
                sink.row = rows.num_rows();
            }
        }
        // Rows shown back from their comparable form: every column may be NULL there.
        let shown_schema = Arc::new(arrow::datatypes::Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Vec<_>>(),
        ));
        for (row, count) in copies.iter().filter(|(_, &count)| count != 0) {
            let (what, many) = if *count > 0 {
                report.missing += count.unsigned_abs();
                ("missing in target", count.unsigned_abs())
            } else {
                report.extra += count.unsigned_abs();
                ("not at the source", count.unsigned_abs())
            };
            if report.shown.len() < SHOWN_DIFFERENCES {
                let columns = row_converter.convert_rows([row.row()]).map_err(internal)?;
                let batch =
                    RecordBatch::try_new(Arc::clone(&shown_schema), columns).map_err(internal)?;
                let times = if many > 1 {
                    format!(" ×{many}")
                } else {
                    String::new()
                };
                report
                    .shown
                    .push(format!("{what}{times}: ({})", describe_row(&batch, 0)));
            }
        }
        report.source_rows = source_kept;
        report.sink_rows = sink.rows;
        source_snapshot.close().await?;
        sink_snapshot.close().await?;
        return Ok(report);
    }
    let mut source_kept = 0u64;
    let mut more_source = source.advance(&convert_source).await?;
    let mut more_sink = sink.advance(&convert).await?;
    while more_source || more_sink {
        let order = match (&source.batch, &sink.batch) {
            (Some((_, source_keys, _)), Some((_, sink_keys, _))) if more_source && more_sink => {
                source_keys.row(source.row).cmp(&sink_keys.row(sink.row))
            }
            _ if more_source => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                report.missing += 1;
                show(&mut report, "missing in target", &source);
                source.row += 1;
                source_kept += 1;
                more_source = source.advance(&convert_source).await?;
            }
            std::cmp::Ordering::Greater => {
                report.extra += 1;
                show(&mut report, "not at the source", &sink);
                sink.row += 1;
                more_sink = sink.advance(&convert).await?;
            }
            std::cmp::Ordering::Equal => {
                let same = match (&source.batch, &sink.batch) {
                    (Some((_, _, a)), Some((_, _, b))) => a.row(source.row) == b.row(sink.row),
                    _ => false,
                };
                if !same {
                    report.different += 1;
                    if let (Some((a, _, _)), Some((b, _, _))) = (&source.batch, &sink.batch) {
                        if report.shown.len() < SHOWN_DIFFERENCES {
                            report.shown.push(format!(
                                "differs: source ({}) target ({})",
                                describe_row(a, source.row),
                                describe_row(b, sink.row)
                            ));
                        }
                    }
                }
                source.row += 1;
                sink.row += 1;
                source_kept += 1;
                more_source = source.advance(&convert_source).await?;
                more_sink = sink.advance(&convert).await?;
            }
        }
    }
    report.source_rows = source_kept;
    report.sink_rows = sink.rows;
    source_snapshot.close().await?;
    sink_snapshot.close().await?;
    Ok(report)
}

fn show(report: &mut TableReport, what: &str, side: &Side) {
    if report.shown.len() < SHOWN_DIFFERENCES {
        if let Some((batch, _, _)) = &side.batch {
            report
                .shown
                .push(format!("{what}: ({})", describe_row(batch, side.row)));
        }
    }
}

/// `name=value, …` of one row.
fn describe_row(batch: &RecordBatch, row: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    let mut text = String::new();
    for (column, field) in batch.columns().iter().zip(batch.schema().fields()) {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let value = ArrayFormatter::try_new(column.as_ref(), &options)
            .map(|f| f.value(row).to_string())
            .unwrap_or_else(|_| "?".into());
        let _ = write!(text, "{}={}", field.name(), value);
    }
    text
}
