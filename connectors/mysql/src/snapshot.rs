//! MySQL/MariaDB as a snapshot source.
//!
//! One consistent snapshot over several connections: a control connection takes
//! `FLUSH TABLES WITH READ LOCK`, each reading connection starts
//! `START TRANSACTION WITH CONSISTENT SNAPSHOT` while writes are held, the binlog position
//! (file, offset and GTID) is read, and the lock is released — the moment is a few
//! milliseconds of blocked writes, and every connection then sees the same point of the
//! source's history, the one the binlog position names. Tables with a single integer primary
//! key are split into key ranges read in parallel; parts go to whichever connection is free.

use std::sync::Arc;

use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row, Value};
use tokio::sync::{mpsc, Mutex};
use tracing::{debug, info, warn};

use ferry_engine::schema::UNSUPPORTED_KEY;
use ferry_engine::{
    ChangeBatch, ChangeFeed, ChangeRequest, PartRange, Position, Snapshot, SnapshotPart,
    SnapshotRequest, SnapshotTable, Source, TableId, TableSchema,
};

use crate::config::{execute, quote_ident, quote_table, MyEndpoint};
use crate::decode::ColumnBuilder;
use crate::error::MyError;
use crate::types::{source_field, MyType};

/// Databases that hold the server's own tables, never migrated.
/// Databases that are the server's or ferry's own bookkeeping, never a job's tables.
const SYSTEM_DATABASES: &str =
    "'mysql', 'information_schema', 'performance_schema', 'sys', '_ferry'";

/// A column as the catalog lists it: name, carried type (if any), declared type, nullable.
type CatalogColumn = (String, Option<MyType>, String, bool);

/// A MySQL or MariaDB server as a source.
#[derive(Clone, Debug)]
pub struct MysqlSource {
    endpoint: MyEndpoint,
    server_id: u32,
}

/// Where in the binlog a snapshot was taken (empty when it could not be read).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinlogPosition {
    /// The binlog file.
    pub file: String,
    /// The offset in it.
    pub offset: u64,
    /// The GTID position (MariaDB `@@gtid_binlog_pos`, MySQL `@@gtid_executed`), empty when
    /// GTIDs are off.
    pub gtid: String,
}

impl MysqlSource {
    /// A source reading from `endpoint`.
    pub fn new(endpoint: MyEndpoint) -> MysqlSource {
        MysqlSource {
            endpoint,
            server_id: 1 << 30,
        }
    }

    /// The replica id the source knows this reader by while it reads the binlog.
    pub fn with_server_id(mut self, server_id: u32) -> MysqlSource {
        self.server_id = server_id;
        self
    }

    /// The column types of every user table, by table.
    async fn columns(
        &self,
        conn: &mut Conn,
    ) -> Result<Vec<(TableId, Vec<CatalogColumn>)>, MyError> {
        let rows: Vec<Row> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE,
                        IS_NULLABLE = 'YES', NUMERIC_PRECISION, NUMERIC_SCALE
                 FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA NOT IN ({SYSTEM_DATABASES})
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ))
            .await
            .map_err(self.endpoint.error("reading the catalog"))?;
        let mut tables: Vec<(TableId, Vec<CatalogColumn>)> = Vec::new();
        for row in rows {
            let (schema, table, column, data_type, column_type, nullable, precision, scale): (
                String,
                String,
                String,
                String,
                String,
                bool,
                Option<u64>,
                Option<u64>,
            ) = mysql_async::from_row(row);
            let ty = MyType::from_catalog(&data_type, &column_type, precision, scale);
            let id = TableId::new(schema, table);
            if tables.last().is_none_or(|(last, _)| *last != id) {
                tables.push((id, Vec::new()));
            }
            if let Some((_, columns)) = tables.last_mut() {
                columns.push((column, ty, column_type, nullable));
            }
        }
        Ok(tables)
    }
}

#[async_trait]
impl Source for MysqlSource {
    fn filter_dialect(&self) -> Option<ferry_engine::FilterDialect> {
        Some(ferry_engine::FilterDialect::Mysql)
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
        let mut conn = self.endpoint.connect().await?;
        let columns = self.columns(&mut conn).await?;
        let base: Vec<(String, String, Option<u64>)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES
                 WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({SYSTEM_DATABASES})"
            ))
            .await
            .map_err(self.endpoint.error("reading the catalog"))?;
        let keys: Vec<(String, String, String)> = conn
            .query(format!(
                "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
                 WHERE CONSTRAINT_NAME = 'PRIMARY' AND TABLE_SCHEMA NOT IN ({SYSTEM_DATABASES})
                 ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION"
            ))
            .await
            .map_err(self.endpoint.error("reading the primary keys"))?;
        let _ = conn.disconnect().await;
        let mut tables = Vec::new();
        for (id, columns) in columns {
            let Some((_, _, rows)) = base
                .iter()
                .find(|(schema, name, _)| *schema == id.schema && *name == id.name)
            else {
                continue; // a view
            };
            let fields: Vec<_> = columns
                .iter()
                .map(|(name, ty, declared, nullable)| source_field(name, *ty, declared, *nullable))
                .collect();
            let primary_key = keys
                .iter()
                .filter(|(schema, name, _)| *schema == id.schema && *name == id.name)
                .filter_map(|(_, _, column)| columns.iter().position(|(c, ..)| c == column))
                .collect();
            tables.push(TableSchema {
                id,
                columns: Arc::new(Schema::new(fields)),
                primary_key,
                estimated_rows: *rows,
            });
        }
        Ok(tables)
    }

    async fn snapshot(&self, request: SnapshotRequest) -> ferry_engine::Result<Arc<dyn Snapshot>> {
        Ok(Arc::new(
            MysqlSnapshot::open(self.endpoint.clone(), request).await?,
        ))
    }

    async fn check_changes(&self, request: &ChangeRequest) -> ferry_engine::Result<()> {
        crate::changes::check(&self.endpoint, request).await
    }

    async fn changes(&self, request: ChangeRequest) -> ferry_engine::Result<Box<dyn ChangeFeed>> {
        crate::changes::open_feed(self.endpoint.clone(), self.server_id, request).await
    }

    async fn drop_changes(
        &self,
        _name: &str,
        _definition: Option<&str>,
    ) -> ferry_engine::Result<Vec<String>> {
        // The server keeps nothing for a feed.
        Ok(Vec::new())
    }

    async fn retained_log(&self, _name: &str) -> ferry_engine::Result<Option<u64>> {
        crate::changes::retained_log(&self.endpoint).await
    }

    fn keeps_feeds(&self) -> bool {
        false
    }
}

/// What a part reads: the table's columns and the SELECT that reads them.
struct PartTable {
    id: TableId,
    types: Vec<MyType>,
    names: Vec<String>,
    schema: SchemaRef,
    select: String,
    filter: Option<String>,
    order_by: Option<String>,
    /// Indexes into `types` of the primary key (for naming a bad row).
    key: Vec<usize>,
    /// The primary key when it is one integer column, quoted: what key ranges bound.
    integer_key: Option<String>,
}

/// An open consistent snapshot: its reading connections, each inside the same snapshot.
pub struct MysqlSnapshot {
    endpoint: MyEndpoint,
    tables: Vec<PartTable>,
    parts: Vec<SnapshotPart>,
    batch_size: usize,
    /// Free reading connections.
    free: Mutex<mpsc::UnboundedReceiver<Conn>>,
    give_back: mpsc::UnboundedSender<Conn>,
    position: BinlogPosition,
}

impl MysqlSnapshot {
    pub(crate) async fn open(
        endpoint: MyEndpoint,
        request: SnapshotRequest,
    ) -> Result<MysqlSnapshot, MyError> {
        let mut tables = Vec::new();
        for table in &request.tables {
            let mut types = Vec::new();
            let mut names = Vec::new();
            for &index in &table.columns {
                types.push(selected_type(table, index)?);
                names.push(table.table.columns.field(index).name().clone());
            }
            let list: Vec<String> = names.iter().map(|n| quote_ident(n)).collect();
            let key: Vec<usize> = table
                .table
                .primary_key
                .iter()
                .filter_map(|k| table.columns.iter().position(|c| c == k))
                .collect();
            let order_by = request.ordered.then(|| {
                table
                    .table
                    .primary_key
                    .iter()
                    .map(|&k| {
                        let field = table.table.columns.field(k);
                        let column = quote_ident(field.name());
                        if field.data_type() == &DataType::Utf8 {
                            // Byte order, as ferry compares keys.
                            format!("CONVERT({column} USING utf8mb4) COLLATE utf8mb4_bin")
                        } else {
                            column
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            tables.push(PartTable {
                id: table.table.id.clone(),
                types,
                names,
                schema: table.batch_schema(),
                select: format!(
                    "SELECT {} FROM {}",
                    list.join(", "),
                    quote_table(&table.table.id)
                ),
                filter: table.filter.clone(),
                order_by: order_by.filter(|o| !o.is_empty()),
                key,
                integer_key: integer_key(&table.table).map(|f| quote_ident(f.name())),
            });
        }

        // The consistent moment: every reader starts its snapshot while writes are held.
        let readers = request.parallelism.max(1);
        let mut control = endpoint.connect().await?;
        execute(
            &mut control,
            &endpoint,
            "FLUSH TABLES WITH READ LOCK",
            "holding writes for a consistent snapshot (needs the RELOAD privilege: GRANT RELOAD ON *.* TO …)",
        )
        .await?;
        let mut connections = Vec::with_capacity(readers);
        let opened = async {
            for _ in 0..readers {
                let mut conn = endpoint.connect().await?;
                execute(
                    &mut conn,
                    &endpoint,
                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "starting a snapshot",
                )
                .await?;
                execute(
                    &mut conn,
                    &endpoint,
                    "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                    "starting a snapshot",
                )
                .await?;
                connections.push(conn);
            }
            // The position only matters for following changes; a full migration goes on
            // without it when the account may not read it.
            Ok::<_, MyError>(match binlog_position(&mut control, &endpoint).await {
                Ok(position) => position,
                Err(error) => {
                    warn!(%error, "the binlog position of the snapshot cannot be read (the account needs REPLICATION CLIENT, on MariaDB ≥ 10.5 BINLOG MONITOR); continuing without it");
                    BinlogPosition::default()
                }
            })
        }
        .await;
        let unlocked = execute(&mut control, &endpoint, "UNLOCK TABLES", "releasing writes").await;
        let position = opened?;
        unlocked?;
        let _ = control.disconnect().await;
        info!(
            file = %position.file,
            offset = position.offset,
            gtid = %position.gtid,
            readers,
            "snapshot taken at binlog position"
        );

        let parts = match request.parts.clone() {
            Some(parts) => parts,
            None => {
                let first = connections
                    .first_mut()
                    .ok_or_else(|| MyError::Unsupported {
                        message: "no reading connection".into(),
                    })?;
                plan_parts(first, &endpoint, &request).await?
            }
        };
        let (give_back, free) = mpsc::unbounded_channel();
        for conn in connections {
            let _ = give_back.send(conn);
        }
        Ok(MysqlSnapshot {
            endpoint,
            tables,
            parts,
            batch_size: request.batch_size.max(1),
            free: Mutex::new(free),
            give_back,
            position,
        })
    }

    /// Where in the binlog the snapshot stands.
    pub fn position(&self) -> &BinlogPosition {
        &self.position
    }

    async fn read_part(
        &self,
        conn: &mut Conn,
        part: &SnapshotPart,
        out: &mpsc::Sender<ChangeBatch>,
    ) -> Result<u64, ferry_engine::Error> {
        let table = self
            .tables
            .get(part.table)
            .ok_or_else(|| part.unknown_table(self.tables.len()))?;
        let mut conditions: Vec<String> = Vec::new();
        // The range is rendered from typed bounds: nothing from a checkpoint runs as SQL.
        match (&part.range, &table.integer_key) {
            (None, _) => {}
            (Some(range @ PartRange::Key { .. }), Some(key)) => {
                conditions.push(range.condition(key, |bound| bound.to_string()));
            }
            (Some(range), _) => {
                return Err(ferry_engine::Error::Checkpoint {
                    path: "the job's checkpoint".into(),
                    message: format!(
                        "part {} is {range:?}, which {} cannot be split by; `ferry drop` the job and run it again",
                        part.index, table.id
                    ),
                })
            }
        }
        if let Some(filter) = &table.filter {
            conditions.push(format!("({filter})"));
        }
        let mut query = table.select.clone();
        if !conditions.is_empty() {
            query.push_str(" WHERE ");
            query.push_str(&conditions.join(" AND "));
        }
        if let Some(order_by) = &table.order_by {
            query.push_str(" ORDER BY ");
            query.push_str(order_by);
        }
        debug!(table = %table.id, part = part.index, %query, "reading part");
        let context = format!("reading {}", table.id);
        let mut result = conn
            .exec_iter(query.as_str(), ())
            .await
            .map_err(self.endpoint.error(context.clone()))?;
        let mut stream = result
            .stream::<Row>()
            .await
            .map_err(self.endpoint.error(context.clone()))?
            .ok_or_else(|| MyError::Unsupported {
                message: format!("{context}: the server sent no result set"),
            })?;
        let id = Arc::new(table.id.clone());
        let capacity = self.batch_size.min(1 << 14);
        let mut builders: Vec<ColumnBuilder> = table
            .types
            .iter()
            .map(|ty| ColumnBuilder::new(*ty, capacity))
            .collect();
        let mut rows_in_batch = 0usize;
        let mut total = 0u64;
        let mut bytes = 0u64;
        let mut offset = 0u64;
        loop {
            let next = stream.next().await;
            let done = next.is_none();
            if let Some(row) = next {
                let values = row.map_err(self.endpoint.error(context.clone()))?.unwrap();
                for (column, value) in values.iter().enumerate() {
                    if let Value::Bytes(b) = value {
                        bytes += b.len() as u64;
                    } else {
                        bytes += 8;
                    }
                    let Some(builder) = builders.get_mut(column) else {
                        continue;
                    };
                    builder.append(value).map_err(|message| MyError::Decode {
                        table: table.id.to_string(),
                        column: table.names[column].clone(),
                        message: format!("{message} (row {})", describe_key(table, &values)),
                    })?;
                }
                rows_in_batch += 1;
            }
            // A full batch, or the last rows.
            if rows_in_batch >= self.batch_size || (done && rows_in_batch > 0) {
                let batch = finish(
                    table,
                    &id,
                    &mut builders,
                    rows_in_batch,
                    part,
                    offset,
                    bytes,
                )?;
                offset += rows_in_batch as u64;
                total += rows_in_batch as u64;
                rows_in_batch = 0;
                bytes = 0;
                if out.send(batch).await.is_err() {
                    return Ok(total);
                }
            }
            if done {
                return Ok(total);
            }
        }
    }
}

/// The batch of the rows built so far.
fn finish(
    table: &PartTable,
    id: &Arc<TableId>,
    builders: &mut [ColumnBuilder],
    rows: usize,
    part: &SnapshotPart,
    offset: u64,
    bytes: u64,
) -> Result<ChangeBatch, MyError> {
    let mut columns = Vec::with_capacity(builders.len());
    for (index, builder) in builders.iter_mut().enumerate() {
        columns.push(builder.finish().map_err(|message| MyError::Decode {
            table: table.id.to_string(),
            column: table.names[index].clone(),
            message,
        })?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    let batch = RecordBatch::try_new_with_options(Arc::clone(&table.schema), columns, &options)
        .map_err(|e| MyError::Decode {
            table: table.id.to_string(),
            column: String::new(),
            message: e.to_string(),
        })?;
    Ok(ChangeBatch::snapshot(
        Arc::clone(id),
        batch,
        Position::Snapshot {
            part: part.index,
            offset,
        },
        bytes,
    ))
}

/// `key=value, …` of a row, to name it in an error.
fn describe_key(table: &PartTable, values: &[Value]) -> String {
    if table.key.is_empty() {
        return "of a table without a primary key".into();
    }
    table
        .key
        .iter()
        .map(|&k| {
            let value = values
                .get(k)
                .map(|v| v.as_sql(false))
                .unwrap_or_else(|| "?".into());
            format!("{}={value}", table.names[k])
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The type a catalog field was read as, from its declared type.
/// The type of column `index` of a selected table; a user error naming the column when
/// ferry cannot carry it.
pub(crate) fn selected_type(table: &SnapshotTable, index: usize) -> Result<MyType, MyError> {
    let field = table.table.columns.field(index);
    let unsupported = |message: String| MyError::UnsupportedColumn {
        table: table.table.id.to_string(),
        column: field.name().clone(),
        message,
    };
    if let Some(reason) = field.metadata().get(UNSUPPORTED_KEY) {
        return Err(unsupported(format!(
            "{reason}; leave it out of the rule's SELECT list"
        )));
    }
    let declared = field
        .metadata()
        .get(ferry_engine::schema::SOURCE_TYPE_KEY)
        .cloned()
        .unwrap_or_default();
    type_of(field.data_type(), &declared)
        .ok_or_else(|| unsupported(format!("type {declared} cannot be carried by ferry yet")))
}

fn type_of(data_type: &DataType, declared: &str) -> Option<MyType> {
    let ty = MyType::from_declared(declared)?;
    // The catalog's own precision wins for decimals (DATA_TYPE and the field agree).
    match (ty, data_type) {
        (MyType::Decimal { .. }, DataType::Decimal128(p, s) | DataType::Decimal256(p, s)) => {
            Some(MyType::Decimal {
                precision: *p,
                scale: *s,
            })
        }
        (MyType::Bit { .. }, DataType::Boolean) => Some(MyType::Bit { width: 1 }),
        _ => Some(ty),
    }
}

/// The binlog position of the moment (the caller holds writes).
pub(crate) async fn binlog_position(
    conn: &mut Conn,
    endpoint: &MyEndpoint,
) -> Result<BinlogPosition, MyError> {
    let status: Option<Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(endpoint.error("reading the binlog position"))?;
    let (file, offset) = match status {
        Some(row) => {
            let file: Option<String> = row.get(0);
            let offset: Option<u64> = row.get(1);
            (file.unwrap_or_default(), offset.unwrap_or(0))
        }
        // The binlog is off: a full migration still works; changes cannot follow.
        None => (String::new(), 0),
    };
    let gtid: Option<String> = conn
        .query_first("SELECT @@GLOBAL.gtid_binlog_pos")
        .await
        .or_else(|_| Ok::<_, mysql_async::Error>(None))
        .unwrap_or(None);
    Ok(BinlogPosition {
        file,
        offset,
        gtid: gtid.unwrap_or_default(),
    })
}

/// The primary key of `table` when it is one integer column (what key ranges split).
fn integer_key(table: &TableSchema) -> Option<&arrow::datatypes::Field> {
    match table.primary_key.as_slice() {
        [key] => Some(table.columns.field(*key)).filter(|f| {
            matches!(
                f.data_type(),
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
            )
        }),
        _ => None,
    }
}

/// Splits tables with a single integer primary key into ranges of about `chunk_rows` rows.
async fn plan_parts(
    conn: &mut Conn,
    endpoint: &MyEndpoint,
    request: &SnapshotRequest,
) -> Result<Vec<SnapshotPart>, MyError> {
    let mut parts = Vec::new();
    for (index, table) in request.tables.iter().enumerate() {
        let whole = |parts: &mut Vec<SnapshotPart>| {
            parts.push(SnapshotPart {
                index: parts.len() as u32,
                table: index,
                description: "whole table".into(),
                range: None,
            })
        };
        let estimated = table.table.estimated_rows.unwrap_or(0);
        let key = integer_key(&table.table);
        let (Some(key), true) = (key, !request.ordered && estimated > request.chunk_rows) else {
            whole(&mut parts);
            continue;
        };
        let column = quote_ident(key.name());
        let bounds: Option<(Option<i128>, Option<i128>)> = conn
            .query_first(format!(
                "SELECT CAST(MIN({column}) AS CHAR), CAST(MAX({column}) AS CHAR) FROM {}",
                quote_table(&table.table.id)
            ))
            .await
            .map_err(endpoint.error(format!("planning parts of {}", table.table.id)))?
            .map(|(min, max): (Option<String>, Option<String>)| {
                (
                    min.and_then(|m| m.parse().ok()),
                    max.and_then(|m| m.parse().ok()),
                )
            });
        let Some((Some(min), Some(max))) = bounds else {
            whole(&mut parts);
            continue;
        };
        let count = estimated.div_ceil(request.chunk_rows.max(1)).max(1) as i128;
        let step = ((max - min) / count).max(1) + 1;
        let mut from = min;
        while from <= max {
            let to = from + step;
            // Open at both ends, as every source's parts: together they cover any key.
            let range = PartRange::Key {
                from: (from > min).then_some(from),
                to: (to <= max).then_some(to),
            };
            parts.push(SnapshotPart {
                index: parts.len() as u32,
                table: index,
                description: range.describe(key.name()),
                range: Some(range),
            });
            from = to;
        }
    }
    Ok(parts)
}

#[async_trait]
impl Snapshot for MysqlSnapshot {
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
        let conn = self.free.lock().await.recv().await;
        let Some(mut conn) = conn else {
            return Err(MyError::Unsupported {
                message: "the snapshot is closed".into(),
            }
            .into());
        };
        let result = self.read_part(&mut conn, part, &out).await;
        // A connection that failed mid-read is dropped, not reused.
        if result.is_ok() {
            let _ = self.give_back.send(conn);
        }
        result
    }

    async fn close(&self) -> ferry_engine::Result<()> {
        let mut free = self.free.lock().await;
        free.close();
        while let Ok(conn) = free.try_recv() {
            let _ = conn.disconnect().await;
        }
        Ok(())
    }
}
