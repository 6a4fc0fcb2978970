//! The sink contract: prepare target tables (the `schema` migration type), write batches,
//! commit as the durability barrier.

use async_trait::async_trait;

use crate::batch::ChangeBatch;
use crate::coalesce::TableChanges;
use crate::error::Result;
use crate::identity::ServerIdentity;
use crate::lock::Holder;
use crate::position::Position;
use crate::schema::{TableId, TableSchema};

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
    /// The server and database this sink writes, as the server reports it (see
    /// [`ServerIdentity`]): a job whose sink has its source's identity must not write the
    /// tables it reads. Connects; changes nothing.
    async fn identity(&self) -> Result<ServerIdentity>;

    /// Whether a connection to the sink is encrypted and how the server's certificate is
    /// checked, in words, for `ferry check`. Connects; changes nothing.
    async fn transport(&self) -> Result<String> {
        Ok("local files (no network connection)".into())
    }

    /// The longest schema, table and column name the sink keeps whole. Longer names are
    /// refused before anything is written: a sink that cut them (PostgreSQL keeps 63
    /// bytes) could make two targets one table.
    fn name_limit(&self) -> NameLimit;

    /// Whether `schema` is the server's own or ferry's bookkeeping (`_ferry`), which no rule
    /// may write: a target there could forge ferry's records or break the server.
    fn reserved_schema(&self, schema: &str) -> bool;

    /// Takes job `job`'s exclusive lock in the sink for `holder`, kept until the guard is
    /// dropped (or the process or its connection ends): a second runner of a job of the same
    /// name — from another directory or host — fails with [`crate::Error::Running`] naming
    /// the first as far as the sink knows it. Writes nothing.
    async fn lock(&self, job: &str, holder: &Holder) -> Result<SinkLock>;

    /// Records in the sink that job `job` is `definition`, or with `dry_run` only checks
    /// (writes nothing): records of another definition under the same name fail with
    /// [`crate::Error::NameTaken`] — two job files share the name, and one would take the
    /// other's parts and position. Runs before the job's first write.
    async fn claim(&self, job: &str, definition: &str, dry_run: bool) -> Result<()>;

    /// Whether target table `table` holds no rows (a table that does not exist holds none).
    /// Reads only.
    async fn is_empty(&self, table: &TableId) -> Result<bool>;

    /// Checks every target table against `tables` (columns present with types the batches
    /// can be written as) and, per `options`, creates missing ones and empties full ones.
    /// Runs before any row is written; fails with a user error naming the table and column.
    async fn prepare(&self, tables: &[TableSchema], options: &PrepareOptions) -> Result<()>;

    /// A writer for one prepared target table. Several writers of one table may run at once,
    /// each with its own transaction or file.
    async fn writer(
        &self,
        table: &TableSchema,
        options: &WriterOptions,
    ) -> Result<Box<dyn SinkWriter>>;

    /// The snapshot parts recorded as committed for job `job` (see [`PartMarker`]), as
    /// (part index, target table), among the prepared `tables`.
    async fn finished_parts(
        &self,
        job: &str,
        tables: &[TableSchema],
    ) -> Result<Vec<(u32, TableId)>>;

    /// An applier of changes for job `job` to the prepared tables. Fails with a user error
    /// when the sink cannot apply changes (a file sink takes snapshots only).
    async fn applier(&self, job: &str) -> Result<Box<dyn ChangeApplier>>;

    /// Removes what the sink recorded for job `job` (part markers, applied position); the
    /// migrated rows stay.
    async fn forget(&self, job: &str) -> Result<()>;
}

/// The answer to [`Sink::claim`] once the sink has read what it records for `job` at
/// `place`: fine when nothing or the same `definition` is recorded, else
/// [`crate::Error::NameTaken`].
pub fn compare_claim(
    job: &str,
    place: impl FnOnce() -> String,
    recorded: Option<String>,
    definition: &str,
) -> Result<()> {
    match recorded {
        Some(theirs) if theirs != definition => Err(crate::Error::NameTaken {
            job: job.to_string(),
            place: place(),
            theirs,
            ours: definition.to_string(),
        }),
        _ => Ok(()),
    }
}

/// How long taking a job's lock in the sink waits for a holder that may be going away (a run
/// killed a moment ago: its server session lingers until the server notices): long enough
/// for that, short enough that a second runner is refused promptly.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a name a sink keeps whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameLimit {
    /// At most this many bytes of UTF-8.
    Bytes(usize),
    /// At most this many characters.
    Chars(usize),
}

impl NameLimit {
    /// Whether `name` is kept whole.
    pub fn fits(self, name: &str) -> bool {
        match self {
            NameLimit::Bytes(limit) => name.len() <= limit,
            NameLimit::Chars(limit) => name.chars().count() <= limit,
        }
    }
}

impl std::fmt::Display for NameLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameLimit::Bytes(limit) => write!(f, "{limit} bytes"),
            NameLimit::Chars(limit) => write!(f, "{limit} characters"),
        }
    }
}

/// A job's lock in a sink (see [`Sink::lock`]): whatever holds it (a connection, a file),
/// released when dropped.
pub struct SinkLock(#[allow(dead_code)] Box<dyn std::any::Any + Send>);

impl SinkLock {
    /// A lock held by `guard`.
    pub fn new(guard: impl std::any::Any + Send) -> SinkLock {
        SinkLock(Box::new(guard))
    }
}

impl std::fmt::Debug for SinkLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SinkLock")
    }
}

/// How a [`SinkWriter`] writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriterOptions {
    /// Replace a row that has the same primary key instead of failing on it: for snapshot
    /// parts read again after a resume, whose rows the target may already hold.
    pub upsert: bool,
    /// Record, in the same commit, that this part is done for this job.
    pub marker: Option<PartMarker>,
}

/// The record that snapshot part `part` of job `job` is committed to a target table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartMarker {
    /// The job.
    pub job: String,
    /// The part's index in the snapshot plan.
    pub part: u32,
}

/// Applies coalesced changes to the sink, a group of whole source transactions at a time.
///
/// Changes are accepted into one open sink transaction (begun by the first apply after a
/// commit) and become durable only with [`ChangeApplier::commit`], which records the source
/// position in the same transaction: after a crash the sink holds every group up to the
/// position it reports, and none after.
#[async_trait]
pub trait ChangeApplier: Send {
    /// The position of the last group committed for this job, `None` before the first.
    async fn applied_position(&mut self) -> Result<Option<Position>>;

    /// Applies the segments of one target table, in order, in the open transaction.
    async fn apply(&mut self, changes: &[TableChanges]) -> Result<()>;

    /// Commits the open transaction together with `position`. With nothing applied since
    /// the last commit it still records the position.
    async fn commit(&mut self, position: &Position) -> Result<()>;
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
