//! Table jobs: rows between PostgreSQL, MySQL/MariaDB and files, through SQL rules —
//! [`plan`] (checked without writing), [`run`] (schema, snapshot, change stream, each resumed
//! from the checkpoint), [`verify`] (row by row).

pub mod plan;
pub mod run;
pub mod verify;

use async_trait::async_trait;
use ferry_engine::{Error, Holder};
use ferry_sql::{MigrationType, SqlError};
use tracing::warn;

use crate::context::RunContext;
use crate::job::{CheckReport, DropReport, Job, PlanSummary, RunReport, VerifyReport};
use crate::spec::JobSpec;

pub use plan::{plan, Plan, RouteDescription, TableDescription};

/// A replication slot holding more WAL than this is worth a warning in `ferry check`.
pub const RETAINED_WAL_WARNING: u64 = 1 << 30;

/// A job moving tables.
pub struct TableJob {
    spec: JobSpec,
}

impl TableJob {
    /// The table job `spec` describes; fails when it has no rules.
    pub fn new(spec: JobSpec) -> Result<TableJob, Error> {
        if spec.file.rules.is_empty() {
            return Err(SqlError::InvalidField {
                field: "rules".into(),
                message: "no rules: only tables that a rule selects are moved; add one, e.g.\n  [[rules]]\n  sql = \"SELECT * FROM public.*\"".into(),
            }
            .into());
        }
        Ok(TableJob { spec })
    }

    async fn plan(&self) -> Result<Plan, Error> {
        plan(self.spec.file.clone(), self.spec.name.clone()).await
    }
}

impl Plan {
    /// The plan in words.
    pub fn summary(&self) -> PlanSummary {
        PlanSummary {
            types: self.job.migration.types.clone(),
            batch_size: self.job.migration.batch_size,
            parallelism: self.job.migration.parallelism,
            tables: self.tables.clone(),
            targets: self.targets.len(),
        }
    }
}

#[async_trait]
impl Job for TableJob {
    fn spec(&self) -> &JobSpec {
        &self.spec
    }

    async fn check(&self) -> Result<CheckReport, Error> {
        let plan = self.plan().await?;
        plan.sink
            .claim(&plan.name, &plan.definition(), true)
            .await?;
        plan.sink
            .prepare(&plan.targets, &plan.prepare_options(true))
            .await?;
        let mut notes = Vec::new();
        if plan.job.runs(MigrationType::Incremental) {
            plan.source.check_changes(&plan.change_request()).await?;
            let held = if plan.source.keeps_feeds() {
                plan.source.retained_log(&plan.feed_name()).await?
            } else {
                None
            };
            if let Some(bytes) = held {
                let state = self.spec.store.load()?;
                let held = format!(
                    "replication slot {} holds {:.1} MB of WAL on the source",
                    plan.feed_name(),
                    bytes as f64 / 1e6
                );
                if state.is_none() {
                    warn!("{held}, but this job has no checkpoint: if no job uses the slot any more, remove it with `ferry drop`");
                } else if bytes > RETAINED_WAL_WARNING {
                    warn!("{held} and cannot recycle it until the job runs and catches up; run the job, or `ferry drop` it if it is abandoned");
                } else {
                    notes.push(held);
                }
            }
        }
        Ok(CheckReport::Tables {
            plan: plan.summary(),
            notes,
        })
    }

    async fn run(&self, context: &RunContext) -> Result<RunReport, Error> {
        let plan = self.plan().await?;
        tracing::info!(
            job = %plan.name,
            tables = plan.tables.len(),
            targets = plan.targets.len(),
            "plan checked"
        );
        run::run(&plan, &self.spec.store, context).await
    }

    async fn verify(&self) -> Result<VerifyReport, Error> {
        let plan = self.plan().await?;
        Ok(VerifyReport::Tables(verify::verify(&plan).await?))
    }

    async fn drop_records(&self, force: bool) -> Result<DropReport, Error> {
        let plan = self.plan().await?;
        let _sink_lock = plan.sink.lock(&plan.name, &Holder::this_process()).await?;
        // Only this job's records go: another job of the same name keeps its own. This job is
        // its file as it is now, or as it was when it wrote the checkpoint beside it (edited
        // since); a checkpoint ferry cannot read (of an older format) is removed all the same.
        let store = &self.spec.store;
        let (had_checkpoint, recorded) = match store.load() {
            // The checkpoint's definition is this file's only if this file wrote it: another
            // job file of the same name in this directory shares the checkpoint's name.
            Ok(state) => (
                state.is_some(),
                state
                    .filter(|s| s.job_file.is_some() && s.job_file == store.job_file())
                    .and_then(|s| s.definition),
            ),
            Err(error) => {
                warn!("{error}; it is removed with the job");
                (true, None)
            }
        };
        let current = plan.definition();
        let mut definition = None;
        if !force {
            for candidate in [Some(current.clone()), recorded].into_iter().flatten() {
                match plan.sink.claim(&plan.name, &candidate, true).await {
                    Ok(()) => {
                        definition = Some(candidate);
                        break;
                    }
                    Err(Error::NameTaken { .. }) => continue,
                    Err(other) => return Err(other),
                }
            }
            if definition.is_none() {
                // Neither is what the sink records: say so with this file's definition.
                plan.sink.claim(&plan.name, &current, true).await?;
            }
        }
        let mut removed = plan
            .source
            .drop_changes(&plan.feed_name(), definition.as_deref())
            .await?;
        plan.sink.forget(&plan.name).await?;
        removed.push(format!("ferry's records of job {} in the sink", plan.name));
        if had_checkpoint {
            store.remove()?;
            removed.push(format!("checkpoint {}", store.path().display()));
        }
        Ok(DropReport { removed })
    }
}
