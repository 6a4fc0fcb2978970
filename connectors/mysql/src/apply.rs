//! Applying changes to a MySQL/MariaDB sink: each coalesced segment becomes a few set-based
//! statements of about [`STATEMENT_BYTES`] each — `DELETE … WHERE key IN (…)` for deletes,
//! multi-row `INSERT … ON DUPLICATE KEY UPDATE` for upserts, one `UPDATE` per row for the
//! rare patches (rows whose source sent only some values) — all in one transaction that also
//! records the job's source position in `_ferry.applied`. After a crash the target holds
//! exactly the groups up to the recorded position.
//!
//! A truncate is a `DELETE` of every row: `TRUNCATE TABLE` would commit the open transaction.

use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

use ferry_engine::{ChangeApplier, Patches, Position, PreparedTables, TableChanges, TableId};

use crate::config::{quote_ident, quote_table, MyEndpoint};
use crate::encode::push_literal;
use crate::error::MyError;
use crate::sink::{PreparedTable, STATEMENT_BYTES};

/// Applies change groups of one job over one connection.
pub(crate) struct MysqlApplier {
    endpoint: MyEndpoint,
    conn: Conn,
    job: String,
    prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
    open: bool,
}

impl MysqlApplier {
    pub(crate) fn new(
        endpoint: MyEndpoint,
        conn: Conn,
        job: String,
        prepared: Arc<PreparedTables<Arc<PreparedTable>>>,
    ) -> MysqlApplier {
        MysqlApplier {
            endpoint,
            conn,
            job,
            prepared,
            open: false,
        }
    }

    async fn run(&mut self, statement: String, context: String) -> Result<(), MyError> {
        self.conn
            .query_drop(statement)
            .await
            .map_err(self.endpoint.error(context))
    }

    async fn begin(&mut self) -> Result<(), MyError> {
        if !self.open {
            self.run(
                "START TRANSACTION".into(),
                "starting to apply changes".into(),
            )
            .await?;
            self.open = true;
        }
        Ok(())
    }

    /// Sends statements built row by row by `add` (which appends one row's part to the
    /// statement after `prefix`), starting a new statement whenever one is full.
    async fn send_rows(
        &mut self,
        rows: usize,
        prefix: &str,
        separator: &str,
        suffix: &str,
        context: String,
        mut add: impl FnMut(&mut String, usize) -> Result<(), MyError>,
    ) -> Result<(), MyError> {
        let mut statement = String::new();
        for row in 0..rows {
            if statement.is_empty() {
                statement.push_str(prefix);
            } else {
                statement.push_str(separator);
            }
            add(&mut statement, row)?;
            if statement.len() >= STATEMENT_BYTES || row + 1 == rows {
                statement.push_str(suffix);
                self.run(std::mem::take(&mut statement), context.clone())
                    .await?;
            }
        }
        Ok(())
    }

    async fn apply_segment(&mut self, changes: &TableChanges) -> Result<(), MyError> {
        let target = changes.table.as_ref();
        let table = self.prepared.get(target).map_err(|e| MyError::Target {
            table: target.to_string(),
            message: e.to_string(),
        })?;
        let name = quote_table(target);
        if changes.truncate {
            self.run(format!("DELETE FROM {name}"), format!("emptying {target}"))
                .await?;
        }
        if let Some(patches) = &changes.patches {
            let statements = patch_statements(target, &name, &table, patches)?;
            for statement in statements {
                self.run(statement, format!("updating {target}")).await?;
            }
        }
        if let Some(deletes) = &changes.deletes {
            let columns = deletes.columns().to_vec();
            let names: Vec<String> = if changes.whole_rows {
                deletes
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| quote_ident(f.name()))
                    .collect()
            } else {
                table
                    .key
                    .iter()
                    .map(|&k| quote_ident(&table.columns[k]))
                    .collect()
            };
            if changes.whole_rows {
                // One copy of an equal row per listed row (NULL-safe comparison).
                let prefix = format!("DELETE FROM {name} WHERE ");
                self.send_rows(
                    deletes.num_rows(),
                    "",
                    ";",
                    "",
                    format!("deleting from {target}"),
                    |out, row| {
                        out.push_str(&prefix);
                        for (index, column) in columns.iter().enumerate() {
                            if index > 0 {
                                out.push_str(" AND ");
                            }
                            out.push_str(&names[index]);
                            out.push_str(" <=> ");
                            literal(out, target, deletes, column, index, row)?;
                        }
                        out.push_str(" LIMIT 1");
                        Ok(())
                    },
                )
                .await?;
            } else {
                let prefix = if names.len() == 1 {
                    format!("DELETE FROM {name} WHERE {} IN (", names[0])
                } else {
                    format!("DELETE FROM {name} WHERE ({}) IN (", names.join(", "))
                };
                let composite = names.len() > 1;
                self.send_rows(
                    deletes.num_rows(),
                    &prefix,
                    ",",
                    ")",
                    format!("deleting from {target}"),
                    |out, row| {
                        if composite {
                            out.push('(');
                        }
                        for (index, column) in columns.iter().enumerate() {
                            if index > 0 {
                                out.push(',');
                            }
                            literal(out, target, deletes, column, index, row)?;
                        }
                        if composite {
                            out.push(')');
                        }
                        Ok(())
                    },
                )
                .await?;
            }
        }
        if let Some(upserts) = &changes.upserts {
            let columns = upserts.columns().to_vec();
            let names: Vec<String> = upserts
                .schema()
                .fields()
                .iter()
                .map(|f| quote_ident(f.name()))
                .collect();
            let prefix = format!("INSERT INTO {name} ({}) VALUES ", names.join(", "));
            let suffix = if table.key.is_empty() || changes.whole_rows {
                String::new()
            } else {
                upsert_suffix(&table)
            };
            self.send_rows(
                upserts.num_rows(),
                &prefix,
                ",",
                &suffix,
                format!("writing {target}"),
                |out, row| {
                    out.push('(');
                    for (index, column) in columns.iter().enumerate() {
                        if index > 0 {
                            out.push(',');
                        }
                        literal(out, target, upserts, column, index, row)?;
                    }
                    out.push(')');
                    Ok(())
                },
            )
            .await?;
        }
        Ok(())
    }
}

/// ` ON DUPLICATE KEY UPDATE c = VALUES(c), …` for every column outside the key.
pub(crate) fn upsert_suffix(table: &PreparedTable) -> String {
    let updates: Vec<String> = (0..table.columns.len())
        .filter(|i| !table.key.contains(i))
        .map(|i| {
            let c = quote_ident(&table.columns[i]);
            format!("{c} = VALUES({c})")
        })
        .collect();
    if updates.is_empty() {
        let c = quote_ident(&table.columns[table.key[0]]);
        format!(" ON DUPLICATE KEY UPDATE {c} = {c}")
    } else {
        format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", "))
    }
}

/// Appends the SQL literal of `batch`'s value at (`row`, `index`), naming the column if it
/// cannot be written.
fn literal(
    out: &mut String,
    target: &TableId,
    batch: &RecordBatch,
    column: &ArrayRef,
    index: usize,
    row: usize,
) -> Result<(), MyError> {
    push_literal(out, column, row).map_err(|message| MyError::Encode {
        table: target.to_string(),
        column: batch.schema().field(index).name().clone(),
        message,
    })
}

/// One `UPDATE … SET (sent values) WHERE key = (old key)` per patched row, several per
/// statement text.
fn patch_statements(
    target: &TableId,
    name: &str,
    table: &PreparedTable,
    patches: &Patches,
) -> Result<Vec<String>, MyError> {
    let mut statements = Vec::new();
    let mut statement = String::new();
    let rows = &patches.rows;
    let keys = &patches.keys;
    for row in 0..rows.num_rows() {
        let mut sets = String::new();
        for (index, column) in rows.columns().iter().enumerate() {
            if patches.unchanged.is_unchanged(index, row) {
                continue;
            }
            if !sets.is_empty() {
                sets.push_str(", ");
            }
            sets.push_str(&quote_ident(rows.schema().field(index).name()));
            sets.push_str(" = ");
            literal(&mut sets, target, rows, column, index, row)?;
        }
        if sets.is_empty() {
            continue;
        }
        if !statement.is_empty() {
            statement.push(';');
        }
        statement.push_str(&format!("UPDATE {name} SET {sets} WHERE "));
        for (position, column) in keys.columns().iter().enumerate() {
            if position > 0 {
                statement.push_str(" AND ");
            }
            let key_name = table
                .key
                .get(position)
                .map(|&k| table.columns[k].clone())
                .unwrap_or_else(|| keys.schema().field(position).name().clone());
            statement.push_str(&quote_ident(&key_name));
            statement.push_str(" = ");
            literal(&mut statement, target, keys, column, position, row)?;
        }
        if statement.len() >= STATEMENT_BYTES {
            statements.push(std::mem::take(&mut statement));
        }
    }
    if !statement.is_empty() {
        statements.push(statement);
    }
    Ok(statements)
}

#[async_trait]
impl ChangeApplier for MysqlApplier {
    async fn applied_position(&mut self) -> ferry_engine::Result<Option<Position>> {
        let text: Option<String> = self
            .conn
            .exec_first(
                "SELECT position FROM _ferry.applied WHERE job = ?",
                (&self.job,),
            )
            .await
            .map_err(self.endpoint.error("reading _ferry.applied"))?;
        let Some(text) = text else {
            return Ok(None);
        };
        serde_json::from_str(&text).map(Some).map_err(|e| {
            MyError::Target {
                table: "_ferry.applied".into(),
                message: format!(
                    "the position recorded for job {} cannot be read ({e}): {text}",
                    self.job
                ),
            }
            .into()
        })
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
            .map_err(|e| ferry_engine::Error::Internal(format!("a position as JSON: {e}")))?;
        self.conn
            .exec_drop(
                "INSERT INTO _ferry.applied (job, position) VALUES (?, ?)
                 ON DUPLICATE KEY UPDATE position = VALUES(position), applied_at = CURRENT_TIMESTAMP(6)",
                (&self.job, text),
            )
            .await
            .map_err(self.endpoint.error("recording the applied position"))?;
        self.run("COMMIT".into(), "committing applied changes".into())
            .await?;
        self.open = false;
        Ok(())
    }
}
