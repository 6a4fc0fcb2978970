//! MySQL/MariaDB as a sink: target databases and tables created to match (or checked).
//! Full migrations write one `LOAD DATA LOCAL INFILE` per batch streamed from memory (any
//! warning fails the part: with LOCAL the server downgrades data errors to warnings), or
//! multi-row `INSERT … VALUES` statements of about [`STATEMENT_BYTES`] each for tables with
//! BIT columns and servers that refuse local files; one transaction per snapshot part, the
//! part recorded in `_ferry.parts` inside that transaction. A part read again after a resume
//! is written with `REPLACE` / `ON DUPLICATE KEY UPDATE`. Changes are applied by
//! [`crate::apply`], their position recorded in `_ferry.applied`.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tracing::{info, warn};

use ferry_engine::{
    ChangeApplier, ChangeBatch, ExistingRows, PrepareOptions, PreparedTables, Sink, SinkWriter,
    TableId, TableSchema, WriterOptions,
};

use crate::config::{execute, quote_ident, quote_table, MyEndpoint};
use crate::encode::{push_field, push_literal, target_declaration};
use crate::error::MyError;

/// Bytes of SQL text per INSERT statement: far below the default `max_allowed_packet`
/// (16 MB), large enough that per-statement costs vanish.
pub const STATEMENT_BYTES: usize = 1 << 20;

/// ferry's bookkeeping in a MySQL sink.
const CREATE_STATE: [&str; 4] = [
    "CREATE DATABASE IF NOT EXISTS _ferry CHARACTER SET utf8mb4",
    "CREATE TABLE IF NOT EXISTS _ferry.parts (
        job varchar(255) NOT NULL, part int NOT NULL,
        target_schema varchar(64) NOT NULL, target_name varchar(64) NOT NULL,
        committed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
        PRIMARY KEY (job, part, target_schema, target_name)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS _ferry.applied (
        job varchar(255) NOT NULL PRIMARY KEY, position text NOT NULL,
        applied_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS _ferry.jobs (
        job varchar(255) NOT NULL PRIMARY KEY, definition text NOT NULL,
        claimed_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)) ENGINE=InnoDB",
];

/// Creates ferry's bookkeeping where it is missing, and adds to a sink an older ferry prepared
/// what it lacks: which table a part record is for (its creation time, so that a table
/// dropped and made anew does not inherit the old one's records). Asked of the catalog, not
/// with `ADD COLUMN IF NOT EXISTS`, which MySQL lacks.
///
/// Run under a server-wide named lock: `_ferry` is one per server, and two jobs starting at
/// once would both find the column missing and one fail adding it (seen with ten jobs in one
/// `ferry serve`). The lock goes with the connection if it breaks.
async fn ensure_state(conn: &mut Conn, endpoint: &MyEndpoint) -> Result<(), MyError> {
    let locked: Option<Option<i64>> = conn
        .query_first("SELECT GET_LOCK('ferry_bookkeeping', 30)")
        .await
        .map_err(endpoint.error("locking ferry's bookkeeping in _ferry"))?;
    let result = create_state(conn, endpoint, locked == Some(Some(1))).await;
    let _: Option<Option<i64>> = conn
        .query_first("SELECT RELEASE_LOCK('ferry_bookkeeping')")
        .await
        .map_err(endpoint.error("unlocking ferry's bookkeeping in _ferry"))?;
    result
}

/// [`ensure_state`]'s work; `locked` says whether the named lock was had (without it, which
/// takes another session holding it 30 s, it runs all the same: `IF NOT EXISTS` still holds
/// for all but the column).
async fn create_state(conn: &mut Conn, endpoint: &MyEndpoint, locked: bool) -> Result<(), MyError> {
    if !locked {
        tracing::warn!(
            "another session held ferry's bookkeeping lock for 30 s; going on without it"
        );
    }
    for statement in CREATE_STATE {
        execute(
            conn,
            endpoint,
            statement,
            "creating ferry's bookkeeping tables in _ferry",
        )
        .await?;
    }
    let has_column: Option<u8> = conn
        .query_first(
            "SELECT 1 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '_ferry' AND TABLE_NAME = 'parts' AND COLUMN_NAME = 'target_created'",
        )
        .await
        .map_err(endpoint.error("reading _ferry.parts"))?;
    if has_column.is_none() {
        execute(
            conn,
            endpoint,
            "ALTER TABLE _ferry.parts ADD COLUMN target_created varchar(32) NULL",
            "adding target_created to _ferry.parts",
        )
        .await?;
    }
    Ok(())
}

/// A prepared target: its column names as written, and the key.
#[derive(Clone, Debug)]
pub(crate) struct PreparedTable {
    pub(crate) columns: Vec<String>,
    pub(crate) key: Vec<usize>,
    /// Rows go by `LOAD DATA LOCAL INFILE` (no BIT column: LOAD DATA reads a BIT field's text
    /// as bytes, not as a number).
    load_data: bool,
}

/// A MySQL or MariaDB server as a sink.
#[derive(Debug)]
pub struct MysqlSink {
    endpoint: MyEndpoint,
    prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
    /// Write with LOAD DATA LOCAL INFILE where a table allows it, else multi-row INSERT:
    /// measured with `ferry bench-mysql` (1 M rows, batch 8192, two pairs of runs), LOAD DATA
    /// took 147 k–165 k rows/s where ~1 MB multi-row INSERTs took 134 k–140 k.
    load_data: bool,
}

impl MysqlSink {
    /// A sink writing to `endpoint`.
    pub fn new(endpoint: MyEndpoint) -> MysqlSink {
        MysqlSink {
            endpoint,
            prepared: Arc::new(PreparedTables::default()),
            load_data: true,
        }
    }

    async fn prepare_table(
        &self,
        conn: &mut Conn,
        table: &TableSchema,
        options: &PrepareOptions,
    ) -> Result<(), MyError> {
        let target = |message: String| MyError::Target {
            table: table.id.to_string(),
            message,
        };
        let existing: Vec<String> = conn
            .exec(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                (&table.id.schema, &table.id.name),
            )
            .await
            .map_err(
                self.endpoint
                    .error(format!("reading target table {}", table.id)),
            )?;
        let name = quote_table(&table.id);
        let columns: Vec<String> = table
            .columns
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if existing.is_empty() {
            if !options.create_missing {
                return Err(target(
                    "does not exist; create it, or add \"schema\" to migration.types".into(),
                ));
            }
            let mut definitions = Vec::new();
            for (index, field) in table.columns.fields().iter().enumerate() {
                let declared = target_declaration(field, table.primary_key.contains(&index))
                    .map_err(|message| target(format!("column {}: {message}", field.name())))?;
                let null = if field.is_nullable() { "" } else { " NOT NULL" };
                definitions.push(format!("{} {declared}{null}", quote_ident(field.name())));
            }
            if !table.primary_key.is_empty() {
                let key: Vec<String> = table
                    .primary_key
                    .iter()
                    .map(|&i| quote_ident(&columns[i]))
                    .collect();
                definitions.push(format!("PRIMARY KEY ({})", key.join(", ")));
            }
            if !options.dry_run {
                execute(
                    conn,
                    &self.endpoint,
                    &format!(
                        "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET utf8mb4",
                        quote_ident(&table.id.schema)
                    ),
                    "creating the target database",
                )
                .await?;
                // utf8mb4_bin: text compares by code point, as in PostgreSQL's "C" order and
                // ferry's own key comparisons, so keys distinct at the source stay distinct.
                execute(
                    conn,
                    &self.endpoint,
                    &format!(
                        "CREATE TABLE {name} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
                        definitions.join(", ")
                    ),
                    &format!("creating target table {}", table.id),
                )
                .await?;
                // Records of a table of this name dropped before are no part of this one.
                conn.exec_drop(
                    "DELETE FROM _ferry.parts WHERE target_schema = ? AND target_name = ?",
                    (&table.id.schema, &table.id.name),
                )
                .await
                .map_err(self.endpoint.error("forgetting parts of an older table"))?;
                info!(table = %table.id, "target table created");
            }
        } else {
            let missing: Vec<&String> = columns.iter().filter(|c| !existing.contains(c)).collect();
            if !missing.is_empty() {
                return Err(target(format!(
                    "has no column {}; add it or change the rule",
                    missing
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            match options.existing_rows {
                ExistingRows::Append => {}
                ExistingRows::Fail => {
                    let any: Option<u8> = conn
                        .query_first(format!("SELECT 1 FROM {name} LIMIT 1"))
                        .await
                        .map_err(self.endpoint.error(format!("reading {}", table.id)))?;
                    if any.is_some() {
                        return Err(target(
                            "already holds rows this job did not write; check that it is the table you mean to fill, then empty it, or set sink.existing_rows = \"append\" to keep them beside the new rows or \"truncate\" to delete them first".into(),
                        ));
                    }
                }
                ExistingRows::Truncate if !options.dry_run => {
                    execute(
                        conn,
                        &self.endpoint,
                        &format!("TRUNCATE TABLE {name}"),
                        &format!("emptying {}", table.id),
                    )
                    .await?;
                    // Emptied, it holds no part of any job any more.
                    conn.exec_drop(
                        "DELETE FROM _ferry.parts WHERE target_schema = ? AND target_name = ?",
                        (&table.id.schema, &table.id.name),
                    )
                    .await
                    .map_err(self.endpoint.error("forgetting parts of an emptied table"))?;
                }
                ExistingRows::Truncate => {}
            }
        }
        let bits: Option<u32> = if options.dry_run {
            None
        } else {
            conn.exec_first(
                "SELECT COUNT(*) FROM information_schema.COLUMNS
                 WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND DATA_TYPE = 'bit'",
                (&table.id.schema, &table.id.name),
            )
            .await
            .map_err(
                self.endpoint
                    .error(format!("reading target table {}", table.id)),
            )?
        };
        self.prepared.insert(
            table.id.clone(),
            Arc::new(PreparedTable {
                columns,
                key: table.primary_key.clone(),
                load_data: self.load_data && bits == Some(0),
            }),
        );
        Ok(())
    }
}

#[async_trait]
impl Sink for MysqlSink {
    async fn identity(&self) -> ferry_engine::Result<ferry_engine::ServerIdentity> {
        Ok(self.endpoint.identity().await?)
    }

    async fn transport(&self) -> ferry_engine::Result<String> {
        Ok(self.endpoint.transport().await?)
    }

    async fn is_empty(&self, table: &TableId) -> ferry_engine::Result<bool> {
        let mut conn = self.endpoint.connect().await?;
        let context = || self.endpoint.error(format!("checking {table} for rows"));
        let exists: Option<u8> = conn
            .exec_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                (&table.schema, &table.name),
            )
            .await
            .map_err(context())?;
        let empty = match exists {
            None => true,
            Some(_) => conn
                .query_first::<u8, _>(format!("SELECT 1 FROM {} LIMIT 1", quote_table(table)))
                .await
                .map_err(context())?
                .is_none(),
        };
        let _ = conn.disconnect().await;
        Ok(empty)
    }

    async fn claim(&self, job: &str, definition: &str, dry_run: bool) -> ferry_engine::Result<()> {
        let mut conn = self.endpoint.connect().await?;
        let context = || {
            self.endpoint
                .error(format!("recording job {job} in the sink"))
        };
        let exists: Option<u8> = conn
            .query_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_ferry' AND TABLE_NAME = 'jobs'",
            )
            .await
            .map_err(context())?;
        if dry_run && exists.is_none() {
            let _ = conn.disconnect().await;
            return Ok(());
        }
        if !dry_run {
            ensure_state(&mut conn, &self.endpoint).await?;
            conn.exec_drop(
                "INSERT IGNORE INTO _ferry.jobs (job, definition) VALUES (?, ?)",
                (job, definition),
            )
            .await
            .map_err(context())?;
        }
        let recorded: Option<String> = conn
            .exec_first("SELECT definition FROM _ferry.jobs WHERE job = ?", (job,))
            .await
            .map_err(context())?;
        let _ = conn.disconnect().await;
        ferry_engine::compare_claim(
            job,
            || format!("the records in the sink ({})", self.endpoint.display()),
            recorded,
            definition,
        )
    }

    fn reserved_schema(&self, schema: &str) -> bool {
        [
            "_ferry",
            "mysql",
            "information_schema",
            "performance_schema",
            "sys",
        ]
        .iter()
        .any(|reserved| reserved.eq_ignore_ascii_case(schema))
    }

    fn name_limit(&self) -> ferry_engine::NameLimit {
        // MySQL and MariaDB refuse longer schema, table and column names.
        ferry_engine::NameLimit::Chars(64)
    }

    async fn lock(
        &self,
        job: &str,
        _holder: &ferry_engine::Holder,
    ) -> ferry_engine::Result<ferry_engine::SinkLock> {
        let mut conn = self.endpoint.connect().await?;
        let name = format!("ferry:{job}");
        let context = || self.endpoint.error(format!("locking job {job}"));
        // The lock lives as long as its connection: keep an idle one from timing out.
        conn.query_drop("SET SESSION wait_timeout = 31536000")
            .await
            .map_err(context())?;
        // A run killed a moment ago holds the lock until the server notices its connection
        // is gone: wait that long before calling the job taken.
        let taken: Option<Option<i64>> = conn
            .exec_first(
                "SELECT GET_LOCK(?, ?)",
                (&name, ferry_engine::sink::LOCK_WAIT.as_secs()),
            )
            .await
            .map_err(context())?;
        if taken.flatten() == Some(1) {
            return Ok(ferry_engine::SinkLock::new(conn));
        }
        let holder: Option<(String, u64)> = conn
            .exec_first(
                "SELECT p.HOST, p.TIME FROM information_schema.PROCESSLIST p WHERE p.ID = IS_USED_LOCK(?)",
                (&name,),
            )
            .await
            .map_err(context())?;
        let _ = conn.disconnect().await;
        Err(ferry_engine::Error::Running {
            job: job.to_string(),
            holder: match holder {
                Some((host, seconds)) => {
                    format!("a connection to the sink from {host}, idle {seconds} s")
                }
                None => "another connection to the sink".into(),
            },
        })
    }

    async fn prepare(
        &self,
        tables: &[TableSchema],
        options: &PrepareOptions,
    ) -> ferry_engine::Result<()> {
        let mut conn = self.endpoint.connect().await?;
        if !options.dry_run {
            ensure_state(&mut conn, &self.endpoint).await?;
        }
        for table in tables {
            self.prepare_table(&mut conn, table, options).await?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn writer(
        &self,
        table: &TableSchema,
        options: &WriterOptions,
    ) -> ferry_engine::Result<Box<dyn SinkWriter>> {
        let prepared = self.prepared.get(&table.id)?;
        let mut conn = self.endpoint.connect().await?;
        execute(
            &mut conn,
            &self.endpoint,
            "START TRANSACTION",
            "starting to write",
        )
        .await?;
        let list: Vec<String> = prepared.columns.iter().map(|c| quote_ident(c)).collect();
        let prefix = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_table(&table.id),
            list.join(", ")
        );
        let suffix = if options.upsert && !prepared.key.is_empty() {
            crate::apply::upsert_suffix(&prepared)
        } else {
            String::new()
        };
        let load = prepared.load_data.then(|| {
            format!(
                "LOAD DATA LOCAL INFILE 'ferry' {}INTO TABLE {} CHARACTER SET binary \
                 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ({})",
                if options.upsert { "REPLACE " } else { "" },
                quote_table(&table.id),
                list.join(", ")
            )
        });
        Ok(Box::new(MysqlWriter {
            endpoint: self.endpoint.clone(),
            load,
            conn,
            table: table.id.clone(),
            prefix,
            suffix,
            statement: String::new(),
            marker: options.marker.clone(),
        }))
    }

    async fn finished_parts(
        &self,
        job: &str,
        _tables: &[TableSchema],
    ) -> ferry_engine::Result<Vec<(u32, TableId)>> {
        let mut conn = self.endpoint.connect().await?;
        let exists: Option<u8> = conn
            .query_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_ferry' AND TABLE_NAME = 'parts'",
            )
            .await
            .map_err(self.endpoint.error("reading _ferry"))?;
        if exists.is_none() {
            let _ = conn.disconnect().await;
            return Ok(Vec::new());
        }
        let rows: Vec<(u32, String, String)> = conn
            .exec(
                // A record counts only for the very table it was committed to.
                "SELECT p.part, p.target_schema, p.target_name FROM _ferry.parts p
                 JOIN information_schema.TABLES t
                   ON t.TABLE_SCHEMA = p.target_schema AND t.TABLE_NAME = p.target_name
                 WHERE p.job = ? AND CAST(t.CREATE_TIME AS CHAR) <=> p.target_created",
                (job,),
            )
            .await
            .map_err(self.endpoint.error("reading _ferry.parts"))?;
        let _ = conn.disconnect().await;
        Ok(rows
            .into_iter()
            .map(|(part, schema, name)| (part, TableId::new(schema, name)))
            .collect())
    }

    async fn applier(&self, job: &str) -> ferry_engine::Result<Box<dyn ChangeApplier>> {
        let conn = self.endpoint.connect().await?;
        Ok(Box::new(crate::apply::MysqlApplier::new(
            self.endpoint.clone(),
            conn,
            job.to_string(),
            Arc::clone(&self.prepared),
        )))
    }

    async fn forget(&self, job: &str) -> ferry_engine::Result<()> {
        let mut conn = self.endpoint.connect().await?;
        let exists: Option<u8> = conn
            .query_first(
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = '_ferry' AND TABLE_NAME = 'parts'",
            )
            .await
            .map_err(self.endpoint.error("reading _ferry"))?;
        if exists.is_some() {
            conn.exec_drop("DELETE FROM _ferry.parts WHERE job = ?", (job,))
                .await
                .map_err(self.endpoint.error("forgetting the job in _ferry.parts"))?;
            // A sink prepared by an older ferry may not have it yet.
            conn.query_drop(CREATE_STATE[2])
                .await
                .map_err(self.endpoint.error("creating _ferry.applied"))?;
            conn.exec_drop("DELETE FROM _ferry.applied WHERE job = ?", (job,))
                .await
                .map_err(self.endpoint.error("forgetting the job in _ferry.applied"))?;
            conn.query_drop(CREATE_STATE[3])
                .await
                .map_err(self.endpoint.error("creating _ferry.jobs"))?;
            conn.exec_drop("DELETE FROM _ferry.jobs WHERE job = ?", (job,))
                .await
                .map_err(self.endpoint.error("forgetting the job in _ferry.jobs"))?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// Writes one part of one table in one transaction.
struct MysqlWriter {
    endpoint: MyEndpoint,
    /// The LOAD DATA statement, when rows go that way.
    load: Option<String>,
    conn: Conn,
    table: TableId,
    prefix: String,
    suffix: String,
    /// The INSERT being built.
    statement: String,
    marker: Option<ferry_engine::PartMarker>,
}

impl MysqlWriter {
    /// One LOAD DATA of the batch's rows. With LOCAL the server turns data errors into
    /// warnings, so any warning fails the part, with the server's first message.
    async fn load_batch(&mut self, load: &str, batch: &ChangeBatch) -> Result<(), MyError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let columns = batch.rows.columns();
        let names = batch.rows.schema();
        let mut data = Vec::with_capacity(batch.num_rows() * 64);
        let mut scratch = String::new();
        for row in 0..batch.num_rows() {
            for (index, column) in columns.iter().enumerate() {
                if index > 0 {
                    data.push(b'\t');
                }
                push_field(&mut data, &mut scratch, column, row).map_err(|message| {
                    MyError::Encode {
                        table: self.table.to_string(),
                        column: names.field(index).name().clone(),
                        message,
                    }
                })?;
            }
            data.push(b'\n');
        }
        let chunk = bytes::Bytes::from(data);
        self.conn
            .set_infile_handler(async move { Ok(futures::stream::iter([Ok(chunk)]).boxed()) });
        let context = format!("loading {}", self.table);
        self.conn
            .query_drop(load)
            .await
            .map_err(self.endpoint.error(context.clone()))?;
        if self.conn.get_warnings() > 0 {
            let warnings: Vec<(String, u32, String)> = self
                .conn
                .query("SHOW WARNINGS LIMIT 3")
                .await
                .map_err(self.endpoint.error(context))?;
            let text: Vec<String> = warnings
                .into_iter()
                .map(|(level, code, message)| format!("{level} {code}: {message}"))
                .collect();
            return Err(MyError::Encode {
                table: self.table.to_string(),
                column: String::new(),
                message: format!(
                    "the server did not take every value as sent: {}",
                    text.join("; ")
                ),
            });
        }
        Ok(())
    }

    async fn send(&mut self) -> Result<(), MyError> {
        if self.statement.is_empty() {
            return Ok(());
        }
        self.statement.push_str(&self.suffix);
        let statement = std::mem::take(&mut self.statement);
        self.conn
            .query_drop(statement)
            .await
            .map_err(self.endpoint.error(format!("writing {}", self.table)))
    }
}

#[async_trait]
impl SinkWriter for MysqlWriter {
    async fn write(&mut self, batch: &ChangeBatch) -> ferry_engine::Result<()> {
        let columns = batch.rows.columns();
        let names = batch.rows.schema();
        if let Some(load) = self.load.clone() {
            match self.load_batch(&load, batch).await {
                // The server does not take local files (local_infile off): INSERT instead.
                Err(MyError::Query {
                    source: mysql_async::Error::Server(error),
                    ..
                }) if [1148, 3948, 4166].contains(&error.code) => {
                    warn!(table = %self.table, "the server refuses LOAD DATA LOCAL INFILE ({}); writing with INSERT", error.message);
                    self.load = None;
                }
                result => return result.map_err(Into::into),
            }
        }
        for row in 0..batch.num_rows() {
            if self.statement.is_empty() {
                self.statement.push_str(&self.prefix);
            } else {
                self.statement.push(',');
            }
            self.statement.push('(');
            for (index, column) in columns.iter().enumerate() {
                if index > 0 {
                    self.statement.push(',');
                }
                push_literal(&mut self.statement, column, row).map_err(|message| {
                    MyError::Encode {
                        table: self.table.to_string(),
                        column: names.field(index).name().clone(),
                        message,
                    }
                })?;
            }
            self.statement.push(')');
            if self.statement.len() >= STATEMENT_BYTES {
                self.send().await?;
            }
        }
        Ok(())
    }

    async fn commit(&mut self) -> ferry_engine::Result<()> {
        self.send().await?;
        if let Some(marker) = &self.marker {
            self.conn
                .exec_drop(
                    "INSERT INTO _ferry.parts (job, part, target_schema, target_name, target_created)
                     SELECT ?, ?, ?, ?, CAST(CREATE_TIME AS CHAR) FROM information_schema.TABLES
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?
                     ON DUPLICATE KEY UPDATE target_created = VALUES(target_created)",
                    (
                        &marker.job,
                        marker.part,
                        &self.table.schema,
                        &self.table.name,
                        &self.table.schema,
                        &self.table.name,
                    ),
                )
                .await
                .map_err(self.endpoint.error("recording the committed part"))?;
        }
        execute(
            &mut self.conn,
            &self.endpoint,
            "COMMIT",
            "committing a part",
        )
        .await?;
        Ok(())
    }
}
