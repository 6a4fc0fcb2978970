//! Applying changes to a PostgreSQL sink: each coalesced segment is copied with binary COPY
//! into session-private staging tables and merged into the target with one set-based
//! statement per kind of change (an UPDATE for patches, a DELETE … USING for deletes, an
//! INSERT … ON CONFLICT DO UPDATE for upserts), all inside one transaction that also records
//! the job's source position in `_ferry.applied`. After a crash the target holds exactly the
//! groups up to the recorded position.
//!
//! The same staging serves snapshot parts written as upserts (a part read again after a
//! resume), and `_ferry.parts` records each snapshot part committed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray};
use arrow::datatypes::{Field, Schema};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use async_trait::async_trait;
use bytes::BytesMut;
use futures::SinkExt;
use tokio_postgres::{Client, Statement};

use ferry_engine::{ChangeApplier, Patches, Position, PreparedTables, TableChanges, TableId};

use crate::config::{quote_ident, quote_literal, quote_table, PgEndpoint};
use crate::encode::{CopyEncoder, TargetColumn};
use crate::error::PgError;
use crate::types::PgType;

/// The schema holding ferry's own bookkeeping in a sink database.
pub(crate) const STATE_SCHEMA: &str = "_ferry";

/// Taken (for the transaction) before ferry creates schemas or its bookkeeping tables in a
/// sink database: PostgreSQL's `IF NOT EXISTS` is not safe under concurrency — two jobs
/// starting at once into one database both find `_ferry` missing, and one fails on the
/// catalog's unique index (seen with ten jobs in one `ferry serve`). A one-key advisory lock
/// (`ferrySCH` in ASCII), apart from the two-key job locks.
pub(crate) const DDL_LOCK: &str = "SELECT pg_advisory_xact_lock(7378429400503763784)";

/// Creates the bookkeeping tables (idempotent; run once per run, before any writer). One
/// simple query: its statements run in one transaction, under [`DDL_LOCK`].
pub(crate) const CREATE_STATE: &str = "
SELECT pg_advisory_xact_lock(7378429400503763784);
CREATE SCHEMA IF NOT EXISTS _ferry;
CREATE TABLE IF NOT EXISTS _ferry.applied (
    job text PRIMARY KEY,
    position jsonb NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS _ferry.parts (
    job text NOT NULL,
    part integer NOT NULL,
    target_schema text NOT NULL,
    target_name text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, part, target_schema, target_name));
ALTER TABLE _ferry.parts ADD COLUMN IF NOT EXISTS target_oid oid;
CREATE TABLE IF NOT EXISTS _ferry.jobs (
    job text PRIMARY KEY,
    definition text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now())";

/// A prepared target table: its columns as written and its primary key.
#[derive(Clone, Debug)]
pub(crate) struct PreparedTable {
    pub(crate) columns: Vec<TargetColumn>,
    /// Indexes into `columns`.
    pub(crate) key: Vec<usize>,
}

impl PreparedTable {
    fn names(&self, indexes: impl IntoIterator<Item = usize>) -> Vec<String> {
        indexes
            .into_iter()
            .map(|i| quote_ident(&self.columns[i].name))
            .collect()
    }

    /// `INSERT … ON CONFLICT (key) DO UPDATE` from `stage` into `target`; a plain insert for
    /// a table without a key.
    pub(crate) fn upsert_statement(&self, target: &TableId, stage: &str) -> String {
        let all = self.names(0..self.columns.len()).join(", ");
        let mut statement = format!(
            "INSERT INTO {} ({all}) SELECT {all} FROM {stage}",
            quote_table(target)
        );
        if !self.key.is_empty() {
            let key = self.names(self.key.iter().copied()).join(", ");
            let updates: Vec<String> = (0..self.columns.len())
                .filter(|i| !self.key.contains(i))
                .map(|i| {
                    let name = quote_ident(&self.columns[i].name);
                    format!("{name} = EXCLUDED.{name}")
                })
                .collect();
            if updates.is_empty() {
                statement.push_str(&format!(" ON CONFLICT ({key}) DO NOTHING"));
            } else {
                statement.push_str(&format!(
                    " ON CONFLICT ({key}) DO UPDATE SET {}",
                    updates.join(", ")
                ));
            }
        }
        statement
    }
}

/// Which staging table of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum StageKind {
    Rows,
    Keys,
    Patches,
}

/// One staging table: its name, columns and prepared COPY.
struct Stage {
    name: String,
    columns: Vec<TargetColumn>,
    copy: Statement,
}

/// Staging tables of one session, created on first use. They empty themselves at each commit
/// (`ON COMMIT DELETE ROWS`: a truncation in place, far cheaper than a TRUNCATE, which makes
/// new files); one filled twice in a transaction is emptied by TRUNCATE in between.
#[derive(Default)]
pub(crate) struct Stages {
    stages: HashMap<(TableId, StageKind), Stage>,
    /// Filled in the open transaction.
    filled: HashSet<(TableId, StageKind)>,
}

impl Stages {
    /// Copies `batch` (columns as `columns`) into the staging table `kind` of `target`,
    /// created with `definition` (a SELECT list over the target) on first use; returns its
    /// name.
    #[allow(clippy::too_many_arguments)]
    async fn fill(
        &mut self,
        client: &Client,
        endpoint: &PgEndpoint,
        target: &TableId,
        kind: StageKind,
        definition: impl FnOnce() -> (String, Vec<TargetColumn>),
        batch: &RecordBatch,
    ) -> Result<String, PgError> {
        let error = || endpoint.query_error(format!("staging changes of {target}"));
        let key = (target.clone(), kind);
        if !self.stages.contains_key(&key) {
            let name = format!("ferry_stage_{}", self.stages.len());
            let (select_list, columns) = definition();
            client
                .batch_execute(&format!(
                    "CREATE TEMP TABLE {name} ON COMMIT DELETE ROWS AS SELECT {select_list} FROM {} WITH NO DATA",
                    quote_table(target)
                ))
                .await
                .map_err(error())?;
            let list: Vec<String> = columns.iter().map(|c| quote_ident(&c.name)).collect();
            let copy = client
                .prepare(&format!(
                    "COPY {name} ({}) FROM STDIN (FORMAT binary)",
                    list.join(", ")
                ))
                .await
                .map_err(error())?;
            self.stages.insert(
                key.clone(),
                Stage {
                    name,
                    columns,
                    copy,
                },
            );
        }
        let stage = &self.stages[&key];
        if !self.filled.insert(key) {
            client
                .batch_execute(&format!("TRUNCATE {}", stage.name))
                .await
                .map_err(error())?;
        }
        copy_into(client, endpoint, target, stage, batch).await?;
        Ok(stage.name.clone())
    }

    /// The transaction ended: every staging table is empty again.
    fn transaction_ended(&mut self) {
        self.filled.clear();
    }
}

/// Writes `batch` into `stage` with one binary COPY.
async fn copy_into(
    client: &Client,
    endpoint: &PgEndpoint,
    target: &TableId,
    stage: &Stage,
    batch: &RecordBatch,
) -> Result<(), PgError> {
    let mut encoder = CopyEncoder::new(target.to_string(), stage.columns.clone());
    let mut buffer = BytesMut::new();
    CopyEncoder::header(&mut buffer);
    encoder.encode(batch, &mut buffer)?;
    CopyEncoder::trailer(&mut buffer);
    let error = endpoint.query_error(format!("staging changes of {target}"));
    let sink = client.copy_in(&stage.copy).await;
    let result = async {
        let sink = sink?;
        futures::pin_mut!(sink);
        sink.send(buffer.freeze()).await?;
        sink.finish().await
    }
    .await;
    result.map(|_| ()).map_err(error)
}

/// Applies changes for one job over one connection.
pub(crate) struct PgApplier {
    endpoint: PgEndpoint,
    client: Client,
    job: String,
    prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
    stages: Stages,
    /// Merge statements, prepared once per session.
    statements: HashMap<String, Statement>,
    open: bool,
}

impl PgApplier {
    pub(crate) fn new(
        endpoint: PgEndpoint,
        client: Client,
        job: String,
        prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
    ) -> PgApplier {
        PgApplier {
            endpoint,
            client,
            job,
            prepared,
            stages: Stages::default(),
            statements: HashMap::new(),
            open: false,
        }
    }

    async fn execute(&self, statement: &str, context: String) -> Result<u64, PgError> {
        self.client
            .execute(statement, &[])
            .await
            .map_err(self.endpoint.query_error(context))
    }

    /// Runs `statement`, prepared on its first use in this session.
    async fn execute_prepared(
        &mut self,
        statement: String,
        context: String,
    ) -> Result<u64, PgError> {
        if !self.statements.contains_key(&statement) {
            let prepared = self
                .client
                .prepare(&statement)
                .await
                .map_err(self.endpoint.query_error(context.clone()))?;
            self.statements.insert(statement.clone(), prepared);
        }
        self.client
            .execute(&self.statements[&statement], &[])
            .await
            .map_err(self.endpoint.query_error(context))
    }

    async fn begin(&mut self) -> Result<(), PgError> {
        if !self.open {
            self.client
                .batch_execute("BEGIN")
                .await
                .map_err(self.endpoint.query_error("starting to apply changes"))?;
            self.open = true;
        }
        Ok(())
    }

    /// Copies `batch` into `target`'s staging table `kind` (created from `definition` on first
    /// use) and runs the merge `statement` builds from the staging table's name.
    async fn merge(
        &mut self,
        target: &TableId,
        kind: StageKind,
        definition: impl FnOnce() -> (String, Vec<TargetColumn>),
        batch: &RecordBatch,
        statement: impl FnOnce(&str) -> String,
        doing: &str,
    ) -> Result<(), PgError> {
        let stage = self
            .stages
            .fill(
                &self.client,
                &self.endpoint,
                target,
                kind,
                definition,
                batch,
            )
            .await?;
        self.execute_prepared(statement(&stage), format!("{doing} {target}"))
            .await?;
        Ok(())
    }

    async fn apply_segment(&mut self, changes: &TableChanges) -> Result<(), PgError> {
        let target = changes.table.as_ref();
        let table = self.prepared.get(target).map_err(|e| PgError::Target {
            table: target.to_string(),
            message: e.to_string(),
        })?;
        let name = quote_table(target);
        if changes.truncate {
            self.execute(&format!("TRUNCATE {name}"), format!("truncating {target}"))
                .await?;
        }
        let key_condition = |stage_prefix: &str| -> String {
            table
                .key
                .iter()
                .enumerate()
                .map(|(position, &i)| {
                    let column = quote_ident(&table.columns[i].name);
                    let staged = if stage_prefix.is_empty() {
                        column.clone()
                    } else {
                        quote_ident(&format!("{stage_prefix}{position}"))
                    };
                    format!("t.{column} = s.{staged}")
                })
                .collect::<Vec<_>>()
                .join(" AND ")
        };
        if let Some(patches) = &changes.patches {
            let sets: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let name = quote_ident(&column.name);
                    let flag = quote_ident(&format!("ferry_unchanged_{i}"));
                    format!("{name} = CASE WHEN s.{flag} THEN t.{name} ELSE s.{name} END")
                })
                .collect();
            let statement = |stage: &str| {
                format!(
                    "UPDATE {name} t SET {} FROM {stage} s WHERE {}",
                    sets.join(", "),
                    key_condition("ferry_key_")
                )
            };
            let batch = patch_batch(&table, patches)?;
            self.merge(
                target,
                StageKind::Patches,
                || patch_stage(&table),
                &batch,
                statement,
                "updating",
            )
            .await?;
        }
        if let (Some(deletes), true) = (&changes.deletes, changes.whole_rows) {
            let columns = table.names(0..table.columns.len());
            let image = |alias: &str| {
                let list: Vec<String> = columns.iter().map(|c| format!("{alias}.{c}")).collect();
                format!("ROW({})::text", list.join(", "))
            };
            // One copy of an equal row per staged row. Rows compare by their text form:
            // NULL-safe, defined for every type (json too), and hashable, so the target is
            // scanned once per segment, not once per row.
            let statement = |stage: &str| {
                format!(
                    "DELETE FROM {name} WHERE ctid = ANY (ARRAY(
                       SELECT m.row_id FROM (
                         SELECT t.ctid AS row_id, s.copies,
                                row_number() OVER (PARTITION BY s.image ORDER BY t.ctid) AS n
                         FROM (SELECT {} AS image, count(*) AS copies FROM {stage} s GROUP BY 1) s
                         JOIN {name} t ON {} = s.image) m
                       WHERE m.n <= m.copies))",
                    image("s"),
                    image("t"),
                )
            };
            self.merge(
                target,
                StageKind::Keys,
                || (columns.join(", "), table.columns.clone()),
                deletes,
                statement,
                "deleting from",
            )
            .await?;
        } else if let Some(deletes) = &changes.deletes {
            let definition = || {
                (
                    table.names(table.key.iter().copied()).join(", "),
                    table
                        .key
                        .iter()
                        .map(|&i| table.columns[i].clone())
                        .collect(),
                )
            };
            let statement = |stage: &str| {
                format!(
                    "DELETE FROM {name} t USING {stage} s WHERE {}",
                    key_condition("")
                )
            };
            self.merge(
                target,
                StageKind::Keys,
                definition,
                deletes,
                statement,
                "deleting from",
            )
            .await?;
        }
        if let Some(upserts) = &changes.upserts {
            let definition = || {
                (
                    table.names(0..table.columns.len()).join(", "),
                    table.columns.clone(),
                )
            };
            let statement = |stage: &str| table.upsert_statement(target, stage);
            self.merge(
                target,
                StageKind::Rows,
                definition,
                upserts,
                statement,
                "writing",
            )
            .await?;
        }
        Ok(())
    }
}

/// The staging table for patches: the old key (`ferry_key_<n>`), every column, and a flag per
/// column (`ferry_unchanged_<i>`) saying whether the target keeps its value.
fn patch_stage(table: &PreparedTable) -> (String, Vec<TargetColumn>) {
    let mut select = Vec::new();
    let mut columns = Vec::new();
    for (position, &i) in table.key.iter().enumerate() {
        let name = format!("ferry_key_{position}");
        select.push(format!(
            "{} AS {}",
            quote_ident(&table.columns[i].name),
            quote_ident(&name)
        ));
        columns.push(TargetColumn {
            name,
            ty: table.columns[i].ty,
        });
    }
    for column in &table.columns {
        select.push(quote_ident(&column.name));
        columns.push(column.clone());
    }
    for i in 0..table.columns.len() {
        let name = format!("ferry_unchanged_{i}");
        select.push(format!("NULL::boolean AS {}", quote_ident(&name)));
        columns.push(TargetColumn {
            name,
            ty: PgType::Bool,
        });
    }
    (select.join(", "), columns)
}

/// The rows of `patches` laid out as [`patch_stage`]'s columns.
fn patch_batch(table: &PreparedTable, patches: &Patches) -> Result<RecordBatch, PgError> {
    let rows = patches.rows.num_rows();
    let mut arrays: Vec<ArrayRef> = patches.keys.columns().to_vec();
    arrays.extend(patches.rows.columns().iter().cloned());
    for i in 0..table.columns.len() {
        let flags: ArrayRef = match patches.unchanged.column(i) {
            Some(mask) => Arc::new(mask.clone()),
            None => Arc::new(BooleanArray::from(vec![false; rows])),
        };
        arrays.push(flags);
    }
    let fields: Vec<Field> = arrays
        .iter()
        .enumerate()
        .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(
        |e| PgError::Encode {
            table: String::new(),
            column: String::new(),
            message: format!("laying out patches: {e}"),
        },
    )
}

#[async_trait]
impl ChangeApplier for PgApplier {
    async fn applied_position(&mut self) -> ferry_engine::Result<Option<Position>> {
        applied_position(&self.client, &self.endpoint, &self.job).await
    }

    async fn apply(&mut self, changes: &[TableChanges]) -> ferry_engine::Result<()> {
        self.begin().await?;
        for segment in changes {
            self.apply_segment(segment).await?;
        }
        Ok(())
    }

    async fn commit(&mut self, position: &Position) -> ferry_engine::Result<()> {
        self.begin().await?;
        let text = serde_json::to_string(position)
            .map_err(|e| ferry_engine::Error::Internal(format!("position as JSON: {e}")))?;
        // One round trip: the position and the commit in one simple query.
        let statement = format!(
            "INSERT INTO _ferry.applied (job, position) VALUES ({}, {}::jsonb)
             ON CONFLICT (job) DO UPDATE SET position = EXCLUDED.position, applied_at = now();
             COMMIT",
            quote_literal(&self.job),
            quote_literal(&text)
        );
        let result = self.client.batch_execute(&statement).await;
        self.open = false;
        self.stages.transaction_ended();
        result.map_err(self.endpoint.query_error("committing applied changes"))?;
        Ok(())
    }
}

/// The position recorded for `job`, `None` before its first commit.
pub(crate) async fn applied_position(
    client: &Client,
    endpoint: &PgEndpoint,
    job: &str,
) -> ferry_engine::Result<Option<Position>> {
    let row = client
        .query_opt(
            "SELECT position::text FROM _ferry.applied WHERE job = $1",
            &[&job],
        )
        .await
        .map_err(endpoint.query_error("reading the applied position"))?;
    row.map(|row| {
        let text: String = row.get(0);
        serde_json::from_str(&text).map_err(|e| {
            ferry_engine::Error::Internal(format!(
                "the position recorded in {STATE_SCHEMA}.applied for job {job} cannot be read: {e}"
            ))
        })
    })
    .transpose()
}
