//! The snapshot source: one exported snapshot shared by every worker, tables split into
//! primary-key or block ranges, each part read with `COPY (SELECT …) TO STDOUT (FORMAT binary)`.
//!
//! A coordinator connection opens a `REPEATABLE READ` transaction and exports its snapshot;
//! every part runs in its own `REPEATABLE READ READ ONLY` transaction that adopts it with
//! `SET TRANSACTION SNAPSHOT`, so all parts of all tables see the same instant however many
//! run at once. The coordinator stays open until the snapshot is closed.

use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::Client;
use tracing::{debug, info};

use ferry_engine::schema::UNSUPPORTED_KEY;
use ferry_engine::{
    split_range, ChangeBatch, ChangeFeed, ChangeRequest, Error, PartRange, Position, Snapshot,
    SnapshotPart, SnapshotRequest, SnapshotTable, Source, TableId, TableSchema,
};

use crate::config::{quote_ident, quote_table, PgEndpoint};
use crate::decode::CopyDecoder;
use crate::error::PgError;
use crate::schema::load_catalog;
use crate::types::PgType;

/// A PostgreSQL database as a migration source.
#[derive(Clone, Debug)]
pub struct PostgresSource {
    endpoint: PgEndpoint,
}

impl PostgresSource {
    /// A source reading the database `endpoint` names. Connects only when used.
    pub fn new(endpoint: PgEndpoint) -> PostgresSource {
        PostgresSource { endpoint }
    }
}

/// What a part of one table reads: the query's pieces and the decoder's types.
struct PartTable {
    id: Arc<TableId>,
    schema: SchemaRef,
    types: Vec<PgType>,
    select_list: String,
    filter: Option<String>,
    /// `ORDER BY …` for an ordered read.
    order_by: Option<String>,
    /// The primary key when it is one integer column, quoted: what key ranges bound.
    integer_key: Option<String>,
}

/// The primary key of `table` when it is one integer column (what key ranges split).
fn integer_key(table: &TableSchema) -> Option<&arrow::datatypes::Field> {
    match table.primary_key.as_slice() {
        [key] => Some(table.columns.field(*key)).filter(|f| {
            matches!(
                f.data_type(),
                DataType::Int16 | DataType::Int32 | DataType::Int64
            )
        }),
        _ => None,
    }
}

#[async_trait]
impl Source for PostgresSource {
    fn filter_dialect(&self) -> Option<ferry_engine::FilterDialect> {
        Some(ferry_engine::FilterDialect::Postgres)
    }

    fn reads_in_key_order(&self) -> bool {
        true
    }

    async fn identity(&self) -> ferry_engine::Result<ferry_engine::ServerIdentity> {
        Ok(self.endpoint.identity().await?)
    }

    async fn transport(&self) -> ferry_engine::Result<String> {
        Ok(self.endpoint.transport().await?)
    }

    async fn catalog(&self) -> ferry_engine::Result<Vec<TableSchema>> {
        let client = self.endpoint.connect().await?;
        Ok(load_catalog(&client, &self.endpoint).await?)
    }

    async fn snapshot(&self, request: SnapshotRequest) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        self.open_snapshot(request, None).await
    }

    async fn check_changes(&self, request: &ChangeRequest) -> ferry_engine::Result<()> {
        crate::changes::check(&self.endpoint, request).await
    }

    async fn changes(&self, request: ChangeRequest) -> ferry_engine::Result<Box<dyn ChangeFeed>> {
        crate::changes::open_feed(self.clone(), request).await
    }

    async fn drop_changes(
        &self,
        name: &str,
        definition: Option<&str>,
    ) -> ferry_engine::Result<Vec<String>> {
        crate::changes::drop_feed(&self.endpoint, name, definition).await
    }

    async fn retained_log(&self, name: &str) -> ferry_engine::Result<Option<u64>> {
        crate::changes::retained_log(&self.endpoint, name).await
    }
}

impl PostgresSource {
    /// The endpoint this source reads.
    pub(crate) fn endpoint(&self) -> &PgEndpoint {
        &self.endpoint
    }

    /// Opens a snapshot: a new exported one, or with `imported`, the snapshot a replication
    /// slot exported when it was created.
    pub(crate) async fn open_snapshot(
        &self,
        request: SnapshotRequest,
        imported: Option<String>,
    ) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        let mut tables = Vec::with_capacity(request.tables.len());
        for table in &request.tables {
            let (schema, types) = column_types(table)?;
            let select_list = schema
                .fields()
                .iter()
                .map(|f| quote_ident(f.name()))
                .collect::<Vec<_>>()
                .join(", ");
            let order_by = request.ordered.then(|| {
                table
                    .table
                    .primary_key
                    .iter()
                    .map(|&i| {
                        let field = table.table.columns.field(i);
                        let collate = if matches!(field.data_type(), DataType::Utf8) {
                            " COLLATE \"C\""
                        } else {
                            ""
                        };
                        format!("{}{collate}", quote_ident(field.name()))
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            tables.push(PartTable {
                id: Arc::new(table.table.id.clone()),
                schema,
                types,
                select_list,
                filter: table.filter.clone(),
                order_by: order_by.filter(|o| !o.is_empty()),
                integer_key: integer_key(&table.table).map(|f| quote_ident(f.name())),
            });
        }

        let coordinator = self.endpoint.connect().await?;
        coordinator
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(
                self.endpoint
                    .query_error("starting the snapshot transaction"),
            )?;
        let snapshot_name = match imported {
            Some(name) => {
                coordinator
                    .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{name}'"))
                    .await
                    .map_err(
                        self.endpoint
                            .query_error("adopting the replication slot's snapshot"),
                    )?;
                name
            }
            None => {
                let row = coordinator
                    .query_one("SELECT pg_export_snapshot()", &[])
                    .await
                    .map_err(self.endpoint.query_error("exporting the snapshot"))?;
                row.get(0)
            }
        };

        let parts = match request.parts.clone() {
            Some(parts) => parts,
            None if request.ordered => (0..request.tables.len())
                .map(|table| SnapshotPart {
                    index: table as u32,
                    table,
                    description: "whole table, in key order".into(),
                    range: None,
                })
                .collect(),
            None => {
                let mut parts = Vec::new();
                for (index, table) in request.tables.iter().enumerate() {
                    for range in
                        plan_ranges(&coordinator, &self.endpoint, &table.table, &request).await?
                    {
                        let key = integer_key(&table.table).map_or("key", |f| f.name().as_str());
                        parts.push(SnapshotPart {
                            index: parts.len() as u32,
                            table: index,
                            description: match range {
                                Some(PartRange::Key { .. }) => {
                                    range.map(|r| r.describe(key)).unwrap_or_default()
                                }
                                Some(PartRange::Blocks { .. }) => {
                                    range.map(|r| r.describe("block")).unwrap_or_default()
                                }
                                None => "whole table".into(),
                            },
                            range,
                        });
                    }
                }
                parts
            }
        };
        info!(snapshot = %snapshot_name, parts = parts.len(), tables = tables.len(), "snapshot opened");
        Ok(Arc::new(PgSnapshot {
            endpoint: self.endpoint.clone(),
            snapshot_name,
            coordinator: tokio::sync::Mutex::new(Some(coordinator)),
            idle: Mutex::new(Vec::new()),
            parts,
            tables,
            batch_size: request.batch_size,
        }))
    }
}

/// The schema of a table's batches and the PostgreSQL type of each column read; a user error
/// naming the column when one cannot be carried.
pub(crate) fn column_types(table: &SnapshotTable) -> Result<(SchemaRef, Vec<PgType>), PgError> {
    let mut types = Vec::with_capacity(table.columns.len());
    let schema = table.batch_schema();
    for field in schema.fields() {
        let unsupported = |message: String| PgError::UnsupportedColumn {
            table: table.table.id.to_string(),
            column: field.name().clone(),
            message,
        };
        if let Some(reason) = field.metadata().get(UNSUPPORTED_KEY) {
            return Err(unsupported(format!(
                "{reason}; leave it out of the rule's SELECT list"
            )));
        }
        let (ty, _) = PgType::for_arrow_field(field)
            .ok_or_else(|| unsupported(format!("type {} is not carried", field.data_type())))?;
        types.push(ty);
    }
    Ok((schema, types))
}

/// The conditions splitting a table into parts of about `chunk_rows` rows, `None` for a
/// part that is the whole table. Runs inside the coordinator's snapshot, so every bound is
/// read at the snapshot's instant.
///
/// A table whose primary key is one integer column is split into key ranges (stable across
/// snapshots, served by the key's index); any other table with statistics into ranges of
/// physical blocks (`ctid`, a TID range scan): within one snapshot each row version visible to
/// it sits in exactly one block. A partitioned parent has no blocks of its own and is read
/// whole unless its key is an integer.
async fn plan_ranges(
    coordinator: &Client,
    endpoint: &PgEndpoint,
    table: &TableSchema,
    request: &SnapshotRequest,
) -> Result<Vec<Option<PartRange>>, PgError> {
    let whole = vec![None];
    if table
        .estimated_rows
        .is_some_and(|rows| rows <= request.chunk_rows)
    {
        return Ok(whole);
    }
    let integer_key = integer_key(table);
    let parts_for = |rows: i128, units: i128| {
        // Never more parts than keys or blocks: stale statistics can claim more rows.
        ((rows + request.chunk_rows as i128 - 1) / request.chunk_rows as i128)
            .clamp(1, 4096)
            .min(units)
    };
    if let Some(field) = integer_key {
        let column = quote_ident(field.name());
        let row = coordinator
            .query_one(
                &format!(
                    "SELECT min({column})::int8, max({column})::int8 FROM {}",
                    quote_table(&table.id)
                ),
                &[],
            )
            .await
            .map_err(endpoint.query_error(format!("reading the key range of {}", table.id)))?;
        let (Some(min), Some(max)) = (row.get::<_, Option<i64>>(0), row.get::<_, Option<i64>>(1))
        else {
            return Ok(whole);
        };
        let span = max as i128 - min as i128 + 1;
        // Without statistics the key span bounds the row count.
        let rows = table.estimated_rows.map_or(span, |rows| rows as i128);
        let parts = parts_for(rows, span);
        debug!(table = %table.id, parts, "split by primary key");
        return Ok(split_range(min as i128, span, parts)
            .into_iter()
            .map(|range| range.map(|(from, to)| PartRange::Key { from, to }))
            .collect());
    }
    let Some(rows) = table.estimated_rows else {
        return Ok(whole);
    };
    let row = coordinator
        .query_one(
            "SELECT pg_relation_size(to_regclass($1)) / current_setting('block_size')::int8",
            &[&quote_table(&table.id)],
        )
        .await
        .map_err(endpoint.query_error(format!("reading the size of {}", table.id)))?;
    let blocks: i64 = row.get(0);
    let parts = parts_for(rows as i128, blocks as i128);
    debug!(table = %table.id, parts, blocks, "split by block ranges");
    let block = |bound: Option<i128>| bound.map(|b| u32::try_from(b).unwrap_or(u32::MAX));
    Ok(split_range(0, blocks as i128, parts)
        .into_iter()
        .map(|range| {
            range.map(|(from, to)| PartRange::Blocks {
                from: block(from),
                to: block(to),
            })
        })
        .collect())
}

/// An open snapshot: the coordinator holding it, plus a pool of worker connections.
struct PgSnapshot {
    endpoint: PgEndpoint,
    snapshot_name: String,
    coordinator: tokio::sync::Mutex<Option<Client>>,
    idle: Mutex<Vec<Client>>,
    parts: Vec<SnapshotPart>,
    tables: Vec<PartTable>,
    batch_size: usize,
}

impl PgSnapshot {
    async fn worker(&self) -> Result<Client, PgError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self.endpoint.connect().await,
        }
    }

    /// The table a part reads; a part of a table the snapshot does not have (a damaged
    /// checkpoint) is refused, never guessed at.
    fn part_table(&self, part: &SnapshotPart) -> ferry_engine::Result<&PartTable> {
        self.tables
            .get(part.table)
            .ok_or_else(|| part.unknown_table(self.tables.len()))
    }

    /// The COPY reading `part`: its range rendered from typed bounds, never SQL text from a
    /// checkpoint.
    fn part_query(&self, part: &SnapshotPart) -> ferry_engine::Result<String> {
        let table = self.part_table(part)?;
        let mut conditions = Vec::new();
        match (&part.range, &table.integer_key) {
            (None, _) => {}
            (Some(range @ PartRange::Key { .. }), Some(key)) => {
                conditions.push(range.condition(key, |bound| bound.to_string()));
            }
            (Some(range @ PartRange::Blocks { .. }), _) => {
                conditions.push(range.condition("ctid", |block| format!("'({block},0)'::tid")));
            }
            (Some(PartRange::Key { .. }), None) => {
                return Err(Error::Checkpoint {
                    path: "the job's checkpoint".into(),
                    message: format!(
                        "part {} is a key range, but {} has no single integer primary key any more; `ferry drop` the job and run it again",
                        part.index, table.id
                    ),
                })
            }
        }
        if let Some(filter) = &table.filter {
            conditions.push(format!("({filter})"));
        }
        let mut query = format!(
            "SELECT {} FROM {}",
            table.select_list,
            quote_table(&table.id)
        );
        if !conditions.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&conditions.join(" AND "));
        }
        if let Some(order_by) = &table.order_by {
            query.push_str(" ORDER BY ");
            query.push_str(order_by);
        }
        Ok(format!("COPY ({query}) TO STDOUT (FORMAT binary)"))
    }
}

#[async_trait]
impl Snapshot for PgSnapshot {
    fn parts(&self) -> &[SnapshotPart] {
        &self.parts
    }

    fn batch_schema(&self, table: usize) -> SchemaRef {
        Arc::clone(&self.tables[table].schema)
    }

    async fn read(
        &self,
        part: &SnapshotPart,
        out: mpsc::Sender<ChangeBatch>,
    ) -> ferry_engine::Result<u64> {
        let table = self.part_table(part)?;
        let client = self.worker().await?;
        let endpoint = &self.endpoint;
        client
            .batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT '{}'",
                self.snapshot_name
            ))
            .await
            .map_err(endpoint.query_error(format!("joining the snapshot to read {}", table.id)))?;
        let query = self.part_query(part)?;
        debug!(table = %table.id, part = part.index, %query, "reading part");
        let stream = client
            .copy_out(&query)
            .await
            .map_err(endpoint.query_error(format!("reading {}", table.id)))?;
        futures::pin_mut!(stream);
        let mut decoder = CopyDecoder::new(
            table.id.to_string(),
            Arc::clone(&table.schema),
            &table.types,
            self.batch_size,
        );
        let mut ready = Vec::new();
        let mut rows = 0u64;
        let send = |batch: arrow::record_batch::RecordBatch, bytes: u64, offset: u64| {
            ChangeBatch::snapshot(
                Arc::clone(&table.id),
                batch,
                Position::Snapshot {
                    part: part.index,
                    offset,
                },
                bytes,
            )
        };
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(endpoint.query_error(format!("reading {}", table.id)))?;
            decoder.feed(&chunk, &mut ready)?;
            for (batch, bytes) in ready.drain(..) {
                let count = batch.num_rows() as u64;
                out.send(send(batch, bytes, rows)).await.map_err(|_| {
                    Error::Internal(format!("the writer of part {} stopped", part.index))
                })?;
                rows += count;
            }
        }
        if let Some((batch, bytes)) = decoder.finish()? {
            let count = batch.num_rows() as u64;
            out.send(send(batch, bytes, rows)).await.map_err(|_| {
                Error::Internal(format!("the writer of part {} stopped", part.index))
            })?;
            rows += count;
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(endpoint.query_error("ending the snapshot transaction"))?;
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(client);
        }
        Ok(rows)
    }

    async fn close(&self) -> ferry_engine::Result<()> {
        if let Some(coordinator) = self.coordinator.lock().await.take() {
            coordinator
                .batch_execute("COMMIT")
                .await
                .map_err(self.endpoint.query_error("closing the snapshot"))?;
        }
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ferry_engine::{split_range, PartRange};

    #[test]
    fn ranges_cover_every_value_once_with_open_ends() {
        let parts: Vec<String> = split_range(-5, 11, 3)
            .into_iter()
            .map(|range| {
                let (from, to) = range.unwrap();
                PartRange::Key { from, to }.condition("\"k\"", |b| b.to_string())
            })
            .collect();
        assert_eq!(
            parts,
            ["\"k\" < -1", "\"k\" >= -1 AND \"k\" < 3", "\"k\" >= 3"]
        );
        assert_eq!(split_range(0, 100, 1), [None]);
        let blocks = PartRange::Blocks {
            from: Some(4),
            to: None,
        };
        assert_eq!(
            blocks.condition("ctid", |b| format!("'({b},0)'::tid")),
            "ctid >= '(4,0)'::tid"
        );
    }
}
