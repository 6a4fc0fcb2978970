//! The sink contract: prepare target tables (the `schema` migration type), write batches,
//! commit as the durability barrier.

use async_trait::async_trait;

use crate::batch::ChangeBatch;
use crate::error::Result;
use crate::schema::TableSchema;

/// What to do when a target table already holds rows before a full migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ExistingRows {
    /// Refuse to start (the default: a full migration into a table with rows would mix data).
    #[default]
    Fail,
    /// Keep them and add the migrated rows.
    Append,
    /// Remove them before the first write.
    Truncate,
}

/// How [`Sink::prepare`] treats target tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PrepareOptions {
    /// Create missing schemas and tables (the `schema` migration type). Without it a missing
    /// target table is a user error.
    pub create_missing: bool,
    /// What to do about rows already in a target table.
    pub existing_rows: ExistingRows,
    /// Only check: report what would fail, create and change nothing.
    pub dry_run: bool,
}

/// The sink side of a migration.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Checks every target table against `tables` (columns present with types the batches
    /// can be written as) and, per `options`, creates missing ones and empties full ones.
    /// Runs before any row is written; fails with a user error naming the table and column.
    async fn prepare(&self, tables: &[TableSchema], options: &PrepareOptions) -> Result<()>;

    /// A writer for one prepared target table. Several writers of one table may run at once,
    /// each with its own transaction or file.
    async fn writer(&self, table: &TableSchema) -> Result<Box<dyn SinkWriter>>;
}

/// Writes batches of one target table.
///
/// Rows written are accepted, not durable: only [`SinkWriter::commit`] makes them durable, all
/// at once. A writer dropped without commit discards what it accepted (a rolled-back
/// transaction, a temporary file removed), so a failed part can simply be read again.
#[async_trait]
pub trait SinkWriter: Send {
    /// Accepts a batch whose schema matches the table the writer was opened for. May send it
    /// on at once or buffer it; fails on the first row the sink refuses, naming it.
    async fn write(&mut self, batch: &ChangeBatch) -> Result<()>;

    /// Makes every accepted row durable. After it returns Ok the rows survive a crash of
    /// ferry and of the sink. The writer may not be used afterwards.
    async fn commit(&mut self) -> Result<()>;
}

/// What [`Sink::prepare`] learned about each target table, for its writers to look up.
#[derive(Debug)]
pub struct PreparedTables<T> {
    tables: std::sync::Mutex<std::collections::HashMap<crate::schema::TableId, T>>,
}

impl<T> Default for PreparedTables<T> {
    fn default() -> Self {
        PreparedTables {
            tables: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }
}

impl<T: Clone> PreparedTables<T> {
    /// Records what was prepared for `table`.
    pub fn insert(&self, table: crate::schema::TableId, prepared: T) {
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(table, prepared);
        }
    }

    /// What was prepared for `table`; asking for a table that was not prepared is a bug.
    pub fn get(&self, table: &crate::schema::TableId) -> crate::error::Result<T> {
        self.tables
            .lock()
            .ok()
            .and_then(|tables| tables.get(table).cloned())
            .ok_or_else(|| crate::error::Error::Internal(format!("{table} was not prepared")))
    }
}
