//! The job contract every kind of job implements — check, run under a [`RunContext`], verify,
//! drop — and what each returns. Nothing here prints: a front end renders the reports.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_engine::{Error, Holder, JobLock, Position, Progress, Shape, StreamProgress};
use ferry_sql::MigrationType;

use crate::context::RunContext;
use crate::precheck::Precheck;
use crate::registry::{self, Side};
use crate::spec::JobSpec;
use crate::table::{TableDescription, TableJob};

pub use crate::table::verify::TableReport;
pub use ferry_redis::migrate::MigrationReport;
pub use ferry_redis::verify::VerifyReport as KeyspaceVerifyReport;

/// A job of any kind.
#[async_trait]
pub trait Job: Send + Sync {
    /// What the job is.
    fn spec(&self) -> &JobSpec;

    /// Connects, checks everything the job would do item by item, and, when nothing blocks
    /// it, says what it would move. Writes nothing.
    async fn precheck(&self) -> (Precheck, Option<CheckReport>);

    /// The precheck as one result: what the job would move, or the first blocking failure.
    async fn check(&self) -> Result<CheckReport, Error> {
        let (mut precheck, report) = self.precheck().await;
        match (precheck.take_error(), report) {
            (Some(error), _) => Err(error),
            (None, Some(mut report)) => {
                let found = precheck.connections();
                match &mut report {
                    CheckReport::Tables { connections, .. }
                    | CheckReport::Keyspace { connections, .. } => *connections = found,
                }
                Ok(report)
            }
            (None, None) => Err(Error::Internal(
                "the precheck neither passed nor said what failed".into(),
            )),
        }
    }

    /// Runs the job under `context` until it is done or stopped, resuming from its checkpoint.
    /// Called by [`run`], which holds the job's lock.
    async fn run(&self, context: &RunContext) -> Result<RunReport, Error>;

    /// The job's change feed at the source and the log bytes it keeps the source from
    /// recycling, for a source that keeps feeds (a PostgreSQL replication slot); `None`
    /// otherwise.
    async fn retained_log(&self) -> Result<Option<(String, u64)>, Error>;

    /// Compares the target with what the job's rules select from the source.
    async fn verify(&self) -> Result<VerifyReport, Error>;

    /// Removes the job's change feed, its records in the sink and its checkpoint; the moved
    /// data stays. `force` removes records of another definition under the name too. Called
    /// by [`drop`], which holds the job's lock.
    async fn drop_records(&self, force: bool) -> Result<DropReport, Error>;
}

/// The job `spec` describes, as its source's connector makes it: a table job or a Redis job.
/// Fails on a URL no connector takes, or a job its kind cannot run.
pub fn open(spec: JobSpec) -> Result<Box<dyn Job>, Error> {
    let source = registry::connector(&spec.file.source.url, Side::Source, None)?;
    Ok(match source.shape {
        Shape::Tables => Box::new(TableJob::new(spec)?),
        Shape::Keyspace => Box::new(crate::redis::RedisJob::new(spec)?),
    })
}

/// The exclusive lock of `spec`'s job: one runner (or dropper) at a time, held until dropped.
fn lock(spec: &JobSpec) -> Result<JobLock, Error> {
    JobLock::acquire(&spec.store.lock_path(), &spec.name, &Holder::this_process())
}

/// Whether the job of `spec` runs now (some process holds its lock).
pub fn is_running(spec: &JobSpec) -> bool {
    JobLock::holder(&spec.store.lock_path()).is_some()
}

/// Fails unless the job of `spec` runs now: there is nothing to `action`.
pub fn require_running(spec: &JobSpec, action: &'static str) -> Result<(), Error> {
    if is_running(spec) {
        Ok(())
    } else {
        Err(Error::NotRunning {
            job: spec.name.clone(),
            action,
        })
    }
}

/// Runs `job` under `context`, holding its lock; the context's status records how it ended.
pub async fn run(job: &dyn Job, context: &RunContext) -> Result<RunReport, Error> {
    let _lock = lock(job.spec())?;
    let result = job.run(context).await;
    context.ended(&result);
    result
}

/// Drops `job`'s records (see [`Job::drop_records`]), holding its lock: never under a running
/// job, which would write again what is dropped here.
pub async fn drop(job: &dyn Job, force: bool) -> Result<DropReport, Error> {
    let _lock = lock(job.spec())?;
    job.drop_records(force).await
}

/// What `check` found.
#[derive(Debug)]
pub enum CheckReport {
    /// A table job's plan.
    Tables {
        /// The plan in words.
        plan: PlanSummary,
        /// Things worth knowing that are not warnings (WAL a slot holds).
        notes: Vec<String>,
        /// How each side's connection is secured (`source: the source answers; encrypted …`).
        connections: Vec<String>,
    },
    /// A Redis job.
    Keyspace {
        /// The source's address.
        source: String,
        /// The target's address.
        target: String,
        /// Settings that can spoil the migration.
        warnings: Vec<String>,
        /// How each side's connection is secured.
        connections: Vec<String>,
    },
}

/// A table job's plan in words.
#[derive(Clone, Debug)]
pub struct PlanSummary {
    /// The migration types.
    pub types: Vec<MigrationType>,
    /// Rows per batch.
    pub batch_size: usize,
    /// Parts at once.
    pub parallelism: usize,
    /// Per source table, what is read and where it goes.
    pub tables: Vec<TableDescription>,
    /// Target tables.
    pub targets: usize,
}

/// What a run did.
#[derive(Debug)]
pub enum RunReport {
    /// A table job.
    Tables {
        /// The snapshot's counters, when this run copied one.
        copied: Option<Arc<Progress>>,
        /// Where streaming stopped and its counters, when the job streamed.
        streamed: Option<(Position, Arc<StreamProgress>)>,
        /// Target tables.
        targets: usize,
        /// Whether the job runs a full migration (an earlier run may have done it).
        runs_full: bool,
    },
    /// A Redis job.
    Keyspace {
        /// What the migration did, when it ended by itself.
        migration: Option<MigrationReport>,
        /// Where the target stands (a [`Position::Redis`]), when it ended or was stopped.
        position: Option<Position>,
    },
}

/// What `verify` found.
#[derive(Debug)]
pub enum VerifyReport {
    /// Per target table.
    Tables(Vec<TableReport>),
    /// A Redis job's keys.
    Keyspace(KeyspaceVerifyReport),
}

impl VerifyReport {
    /// Whether the target equals the source.
    pub fn is_equal(&self) -> bool {
        match self {
            VerifyReport::Tables(reports) => reports.iter().all(TableReport::is_equal),
            VerifyReport::Keyspace(report) => report.equal(),
        }
    }
}

/// What `drop` removed.
#[derive(Debug, Default)]
pub struct DropReport {
    /// Each thing removed, in words.
    pub removed: Vec<String>,
}
