//! The PostgreSQL sink: creates target schemas and tables (the `schema` migration type), checks
//! existing ones against the rows, and writes with binary `COPY … FROM STDIN`, one transaction
//! per writer, committed as a whole.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::SinkExt;
use tokio_postgres::{Client, CopyInSink};
use tracing::info;

use ferry_engine::{
    ChangeApplier, ChangeBatch, ExistingRows, PartMarker, PrepareOptions, PreparedTables, Sink,
    SinkWriter, TableId, TableSchema, WriterOptions,
};

use crate::apply::{applied_position, PgApplier, PreparedTable, CREATE_STATE, DDL_LOCK};
use crate::config::{quote_ident, quote_table, PgEndpoint};
use crate::encode::{wire_type, CopyEncoder, TargetColumn};
use crate::error::PgError;
use crate::types::{target_declaration, PgType};

/// A PostgreSQL database as a migration sink.
#[derive(Debug)]
pub struct PostgresSink {
    endpoint: PgEndpoint,
    prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
}

impl PostgresSink {
    /// A sink writing into the database `endpoint` names. Connects only when used.
    pub fn new(endpoint: PgEndpoint) -> PostgresSink {
        PostgresSink {
            endpoint,
            prepared: Arc::new(PreparedTables::default()),
        }
    }
}

/// The first key of the advisory locks that keep one runner per job (`ferr` in ASCII); the
/// second is the hash of the job's name.
const JOB_LOCK_CLASS: i32 = 0x6665_7272;

/// The target's columns: name, type oid and typmod (domains resolved to their base type).
const TARGET_COLUMNS: &str = "
SELECT a.attname::text,
       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum";

impl PostgresSink {
    async fn prepare_table(
        &self,
        client: &Client,
        table: &TableSchema,
        options: &PrepareOptions,
    ) -> Result<Vec<TargetColumn>, PgError> {
        let name = quote_table(&table.id);
        let target_error = |message: String| PgError::Target {
            table: table.id.to_string(),
            message,
        };
        let rows = client.query(TARGET_COLUMNS, &[&name]).await.map_err(
            self.endpoint
                .query_error(format!("reading the columns of {}", table.id)),
        )?;
        if rows.is_empty() {
            if !options.create_missing {
                return Err(target_error(
                    "does not exist; create it, or add \"schema\" to migration.types so ferry creates it".into(),
                ));
            }
            let mut definitions = Vec::new();
            let mut columns = Vec::new();
            for field in table.columns.fields() {
                let declared = target_declaration(field).ok_or_else(|| {
                    target_error(format!(
                        "column {} has type {}, which has no PostgreSQL equivalent; cast it in the rule",
                        field.name(),
                        field.data_type()
                    ))
                })?;
                let (ty, _) = PgType::for_arrow_field(field).expect("a declaration implies a type");
                definitions.push(format!(
                    "{} {declared}{}",
                    quote_ident(field.name()),
                    if field.is_nullable() { "" } else { " NOT NULL" }
                ));
                columns.push(TargetColumn {
                    name: field.name().clone(),
                    ty,
                });
            }
            if !table.primary_key.is_empty() {
                let key: Vec<String> = table
                    .primary_key
                    .iter()
                    .map(|&i| quote_ident(table.columns.field(i).name()))
                    .collect();
                definitions.push(format!("PRIMARY KEY ({})", key.join(", ")));
            }
            if !options.dry_run {
                // One simple query, so one transaction, under the DDL lock.
                let statement = format!(
                    "{DDL_LOCK}; CREATE SCHEMA IF NOT EXISTS {}; CREATE TABLE {name} ({})",
                    quote_ident(&table.id.schema),
                    definitions.join(", ")
                );
                client
                    .batch_execute(&statement)
                    .await
                    .map_err(self.endpoint.query_error(format!("creating {}", table.id)))?;
                forget_parts_of(client, &self.endpoint, &table.id).await?;
                info!(table = %table.id, "target table created");
            }
            return Ok(columns);
        }

        let existing: HashMap<String, (u32, i32, String)> = rows
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
            .collect();
        let mut columns = Vec::new();
        for field in table.columns.fields() {
            let Some((type_oid, typmod, declared)) = existing.get(field.name()) else {
                let mut names: Vec<_> = existing.keys().cloned().collect();
                names.sort();
                return Err(target_error(format!(
                    "has no column {}; its columns are {}",
                    field.name(),
                    names.join(", ")
                )));
            };
            let ty = PgType::from_oid(*type_oid, *typmod).ok_or_else(|| {
                target_error(format!(
                    "column {} has type {declared}, which ferry cannot write yet",
                    field.name()
                ))
            })?;
            if wire_type(ty, field.data_type()).is_none() {
                return Err(target_error(format!(
                    "column {} has type {declared}, but the rows carry {}; change the column or cast in the rule",
                    field.name(),
                    field.data_type()
                )));
            }
            columns.push(TargetColumn {
                name: field.name().clone(),
                ty,
            });
        }
        let has_rows: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])
            .await
            .map_err(
                self.endpoint
                    .query_error(format!("checking {} for rows", table.id)),
            )?
            .get(0);
        if has_rows {
            match options.existing_rows {
                ExistingRows::Fail => {
                    return Err(target_error(
                        "already has rows this job did not write; check that it is the table you mean to fill, then empty it, or set sink.existing_rows = \"append\" to keep them beside the new rows or \"truncate\" to delete them first".into(),
                    ))
                }
                ExistingRows::Truncate if !options.dry_run => {
                    client
                        .batch_execute(&format!("TRUNCATE {name}"))
                        .await
                        .map_err(self.endpoint.query_error(format!("truncating {}", table.id)))?;
                    forget_parts_of(client, &self.endpoint, &table.id).await?;
                    info!(table = %table.id, "target table truncated");
                }
                ExistingRows::Truncate | ExistingRows::Append => {}
            }
        }
        Ok(columns)
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn identity(&self) -> ferry_engine::Result<ferry_engine::ServerIdentity> {
        Ok(self.endpoint.identity().await?)
    }

    async fn transport(&self) -> ferry_engine::Result<String> {
        Ok(self.endpoint.transport().await?)
    }

    async fn is_empty(&self, table: &TableId) -> ferry_engine::Result<bool> {
        let client = self.endpoint.connect().await?;
        let name = quote_table(table);
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
            .await
            .map_err(self.endpoint.query_error(format!("looking for {table}")))?
            .get(0);
        if !exists {
            return Ok(true);
        }
        let rows: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])
            .await
            .map_err(
                self.endpoint
                    .query_error(format!("checking {table} for rows")),
            )?
            .get(0);
        Ok(!rows)
    }

    async fn claim(&self, job: &str, definition: &str, dry_run: bool) -> ferry_engine::Result<()> {
        let client = self.endpoint.connect().await?;
        let context = || {
            self.endpoint
                .query_error(format!("recording job {job} in the sink"))
        };
        if dry_run {
            let exists: bool = client
                .query_one("SELECT to_regclass('_ferry.jobs') IS NOT NULL", &[])
                .await
                .map_err(context())?
                .get(0);
            if !exists {
                return Ok(());
            }
        } else {
            client
                .batch_execute(CREATE_STATE)
                .await
                .map_err(context())?;
            client
                .execute(
                    "INSERT INTO _ferry.jobs (job, definition) VALUES ($1, $2) ON CONFLICT (job) DO NOTHING",
                    &[&job, &definition],
                )
                .await
                .map_err(context())?;
        }
        let recorded = client
            .query_opt("SELECT definition FROM _ferry.jobs WHERE job = $1", &[&job])
            .await
            .map_err(context())?;
        ferry_engine::compare_claim(
            job,
            || format!("the records in the sink ({})", self.endpoint.display()),
            recorded.map(|row| row.get::<_, String>(0)),
            definition,
        )
    }

    fn reserved_schema(&self, schema: &str) -> bool {
        // PostgreSQL reserves every schema name beginning with pg_.
        schema == "_ferry" || schema == "information_schema" || schema.starts_with("pg_")
    }

    fn name_limit(&self) -> ferry_engine::NameLimit {
        // NAMEDATALEN - 1: PostgreSQL cuts longer names (with a notice).
        ferry_engine::NameLimit::Bytes(63)
    }

    async fn lock(
        &self,
        job: &str,
        holder: &ferry_engine::Holder,
    ) -> ferry_engine::Result<ferry_engine::SinkLock> {
        let client = self.endpoint.connect().await?;
        let context = || self.endpoint.query_error(format!("locking job {job}"));
        client
            .execute(
                "SELECT set_config('application_name', $1, false)",
                &[&format!(
                    "ferry {job} pid {} on {}",
                    holder.pid, holder.host
                )],
            )
            .await
            .map_err(context())?;
        // A run killed a moment ago holds the lock until its server session notices the
        // client is gone: wait that long before calling the job taken.
        let deadline = std::time::Instant::now() + ferry_engine::sink::LOCK_WAIT;
        loop {
            let taken: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    &[&JOB_LOCK_CLASS, &job],
                )
                .await
                .map_err(context())?
                .get(0);
            if taken {
                return Ok(ferry_engine::SinkLock::new(client));
            }
            if std::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let row = client
            .query_opt(
                "SELECT a.application_name, coalesce(host(a.client_addr), 'a local socket'), a.backend_start::text
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::int4::oid
                   AND l.objid = (hashtext($2)::int8 & 4294967295)::oid AND l.objsubid = 2",
                &[&JOB_LOCK_CLASS, &job],
            )
            .await
            .map_err(context())?;
        let holder = match row {
            Some(row) => format!(
                "{} from {}, connected to the sink since {}",
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, String>(2)
            ),
            None => "another session of the sink".into(),
        };
        Err(ferry_engine::Error::Running {
            job: job.to_string(),
            holder,
        })
    }

    async fn prepare(
        &self,
        tables: &[TableSchema],
        options: &PrepareOptions,
    ) -> ferry_engine::Result<()> {
        let client = self.endpoint.connect().await?;
        if !options.dry_run {
            client.batch_execute(CREATE_STATE).await.map_err(
                self.endpoint
                    .query_error("creating ferry's bookkeeping tables"),
            )?;
        }
        for table in tables {
            let columns = self.prepare_table(&client, table, options).await?;
            self.prepared.insert(
                table.id.clone(),
                Arc::new(PreparedTable {
                    columns,
                    key: table.primary_key.clone(),
                }),
            );
        }
        Ok(())
    }

    async fn writer(
        &self,
        table: &TableSchema,
        options: &WriterOptions,
    ) -> ferry_engine::Result<Box<dyn SinkWriter>> {
        let prepared = self.prepared.get(&table.id)?;
        let client = self.endpoint.connect().await?;
        let column_list: Vec<String> = prepared
            .columns
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect();
        // An upserting writer copies into a staging table and merges it at commit.
        let into = if options.upsert {
            let stage = "ferry_part_stage";
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE {stage} AS SELECT {} FROM {} WITH NO DATA",
                    column_list.join(", "),
                    quote_table(&table.id)
                ))
                .await
                .map_err(
                    self.endpoint
                        .query_error(format!("staging rows of {}", table.id)),
                )?;
            stage.to_string()
        } else {
            quote_table(&table.id)
        };
        let statement = format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            column_list.join(", ")
        );
        let merge = options
            .upsert
            .then(|| prepared.upsert_statement(&table.id, &into));
        Ok(Box::new(PostgresWriter {
            endpoint: self.endpoint.clone(),
            table: table.id.clone(),
            client,
            encoder: CopyEncoder::new(table.id.to_string(), prepared.columns.clone()),
            statement,
            merge,
            marker: options.marker.clone(),
            copy: None,
            buffer: BytesMut::new(),
        }))
    }

    async fn finished_parts(
        &self,
        job: &str,
        _tables: &[TableSchema],
    ) -> ferry_engine::Result<Vec<(u32, TableId)>> {
        let client = self.endpoint.connect().await?;
        if !state_exists(&client, &self.endpoint).await? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                // A record counts only for the very table it was committed to: one dropped
                // and made anew (another oid) holds none of its rows.
                "SELECT part, target_schema, target_name FROM _ferry.parts
                 WHERE job = $1 AND target_oid = to_regclass(format('%I.%I', target_schema, target_name))::oid",
                &[&job],
            )
            .await
            .map_err(
                self.endpoint
                    .query_error("reading the parts already committed"),
            )?;
        Ok(rows
            .iter()
            .map(|row| {
                let part: i32 = row.get(0);
                (
                    part as u32,
                    TableId::new(row.get::<_, String>(1), row.get::<_, String>(2)),
                )
            })
            .collect())
    }

    async fn applier(&self, job: &str) -> ferry_engine::Result<Box<dyn ChangeApplier>> {
        let client = self.endpoint.connect().await?;
        Ok(Box::new(PgApplier::new(
            self.endpoint.clone(),
            client,
            job.to_string(),
            Arc::clone(&self.prepared),
        )))
    }

    async fn forget(&self, job: &str) -> ferry_engine::Result<()> {
        let client = self.endpoint.connect().await?;
        if state_exists(&client, &self.endpoint).await? {
            client
                .execute("DELETE FROM _ferry.parts WHERE job = $1", &[&job])
                .await
                .map_err(self.endpoint.query_error("forgetting the job's parts"))?;
            client
                .execute("DELETE FROM _ferry.applied WHERE job = $1", &[&job])
                .await
                .map_err(self.endpoint.query_error("forgetting the job's position"))?;
            // A sink prepared by an older ferry has no _ferry.jobs yet.
            client
                .batch_execute(CREATE_STATE)
                .await
                .map_err(self.endpoint.query_error("forgetting the job"))?;
            client
                .execute("DELETE FROM _ferry.jobs WHERE job = $1", &[&job])
                .await
                .map_err(self.endpoint.query_error("forgetting the job"))?;
        }
        Ok(())
    }
}

/// Forgets every job's part records of `table`, just created or emptied: it holds none of
/// their rows (a TRUNCATE keeps the table's oid, so its records would still count).
async fn forget_parts_of(
    client: &Client,
    endpoint: &PgEndpoint,
    table: &TableId,
) -> Result<(), PgError> {
    client
        .execute(
            "DELETE FROM _ferry.parts WHERE target_schema = $1 AND target_name = $2",
            &[&table.schema, &table.name],
        )
        .await
        .map_err(endpoint.query_error(format!("forgetting the parts of {table}")))?;
    Ok(())
}

/// Whether the bookkeeping tables exist (a sink ferry never ran against has none).
async fn state_exists(client: &Client, endpoint: &PgEndpoint) -> Result<bool, PgError> {
    let row = client
        .query_one("SELECT to_regclass('_ferry.applied') IS NOT NULL AND to_regclass('_ferry.parts') IS NOT NULL", &[])
        .await
        .map_err(endpoint.query_error("looking for ferry's bookkeeping tables"))?;
    Ok(row.get(0))
}

/// The position `job` recorded in this sink (for `ferry status` and tests).
pub async fn recorded_position(
    endpoint: &PgEndpoint,
    job: &str,
) -> ferry_engine::Result<Option<ferry_engine::Position>> {
    let client = endpoint.connect().await?;
    if !state_exists(&client, endpoint).await? {
        return Ok(None);
    }
    applied_position(&client, endpoint, job).await
}

/// Writes one target table through one COPY in one transaction.
struct PostgresWriter {
    endpoint: PgEndpoint,
    table: TableId,
    client: Client,
    encoder: CopyEncoder,
    statement: String,
    /// For an upserting writer: the statement merging the staged rows at commit.
    merge: Option<String>,
    marker: Option<PartMarker>,
    copy: Option<Pin<Box<CopyInSink<Bytes>>>>,
    buffer: BytesMut,
}

impl PostgresWriter {
    fn copy_error(&self) -> impl FnOnce(tokio_postgres::Error) -> PgError + '_ {
        self.endpoint.query_error(format!("writing {}", self.table))
    }
}

#[async_trait]
impl SinkWriter for PostgresWriter {
    async fn write(&mut self, batch: &ChangeBatch) -> ferry_engine::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.copy.is_none() {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(self.copy_error())?;
            let copy = self
                .client
                .copy_in(&self.statement)
                .await
                .map_err(self.copy_error())?;
            self.copy = Some(Box::pin(copy));
            CopyEncoder::header(&mut self.buffer);
        }
        self.encoder.encode(&batch.rows, &mut self.buffer)?;
        let data = self.buffer.split().freeze();
        let result = match self.copy.as_mut() {
            Some(copy) => copy.send(data).await,
            None => return Err(ferry_engine::Error::Internal("COPY not started".into())),
        };
        result.map_err(self.copy_error())?;
        Ok(())
    }

    async fn commit(&mut self) -> ferry_engine::Result<()> {
        match self.copy.take() {
            Some(mut copy) => {
                CopyEncoder::trailer(&mut self.buffer);
                let data = self.buffer.split().freeze();
                copy.send(data).await.map_err(self.copy_error())?;
                copy.as_mut().finish().await.map_err(self.copy_error())?;
                if let Some(merge) = &self.merge {
                    self.client
                        .batch_execute(merge)
                        .await
                        .map_err(self.copy_error())?;
                }
            }
            // Nothing written: only a marker, if any, needs a transaction.
            None if self.marker.is_some() => self
                .client
                .batch_execute("BEGIN")
                .await
                .map_err(self.copy_error())?,
            None => return Ok(()),
        }
        if let Some(marker) = &self.marker {
            self.client
                .execute(
                    "INSERT INTO _ferry.parts (job, part, target_schema, target_name, target_oid)
                     VALUES ($1, $2, $3, $4, to_regclass($5)::oid)
                     ON CONFLICT (job, part, target_schema, target_name)
                     DO UPDATE SET target_oid = EXCLUDED.target_oid, committed_at = now()",
                    &[
                        &marker.job,
                        &(marker.part as i32),
                        &self.table.schema,
                        &self.table.name,
                        &quote_table(&self.table),
                    ],
                )
                .await
                .map_err(self.endpoint.query_error("recording the committed part"))?;
        }
        self.client
            .batch_execute("COMMIT")
            .await
            .map_err(self.copy_error())?;
        Ok(())
    }
}
