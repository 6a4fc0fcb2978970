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
use crate::precheck::{
    answers, Item, Precheck, CHECKPOINT, RULES_VALID, SINK_CONFLICTS, SINK_CONNECTIVITY,
    SOURCE_CDC, SOURCE_CONNECTIVITY, SOURCE_LOG_RETENTION,
};
use crate::registry;
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
        // Rules that do not parse are refused here, before any server is asked.
        for (index, rule) in spec.file.rules.iter().enumerate() {
            ferry_sql::Rule::parse(index, &rule.sql)?;
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

    async fn precheck(&self) -> (Precheck, Option<CheckReport>) {
        let mut items = Precheck::default();
        let job = &self.spec.file;
        let source = async {
            let options = job.source.connector_options()?;
            let opened = registry::open_source(&job.source.url, options, &self.spec.name)?;
            opened.source.identity().await?;
            opened.source.transport().await
        };
        let source = source.await;
        let source = items.record(
            SOURCE_CONNECTIVITY,
            Some(registry::place(&job.source.url)),
            &answers("source", &source),
            source,
        );
        let sink = async {
            let sink = registry::open_sink(&job.sink.url, job.sink.connector_options()?)?;
            sink.identity().await?;
            sink.transport().await
        };
        let sink = sink.await;
        let sink = items.record(
            SINK_CONNECTIVITY,
            Some(registry::place(&job.sink.url)),
            &answers("sink", &sink),
            sink,
        );
        let incremental = job.runs(MigrationType::Incremental);
        let mut later = vec![RULES_VALID, SINK_CONFLICTS];
        if incremental {
            later.push(SOURCE_CDC);
        }
        let skip_later = |items: &mut Precheck, later: &[Item], why: &str| {
            for item in later {
                items.skip(*item, why);
            }
        };
        if source.is_none() || sink.is_none() {
            skip_later(&mut items, &later, "a server cannot be reached");
            return (items, None);
        }
        let plan = match self.plan().await {
            Ok(plan) => plan,
            Err(error) => {
                items.fail(RULES_VALID, None, error);
                skip_later(&mut items, &later[1..], "the rules are not valid");
                return (items, None);
            }
        };
        items.pass(
            RULES_VALID,
            None,
            format!(
                "{} rules select {} source tables into {} targets",
                job.rules.len(),
                plan.tables.len(),
                plan.targets.len()
            ),
        );
        let conflicts = async {
            plan.sink
                .claim(&plan.name, &plan.definition(), true)
                .await?;
            plan.sink
                .prepare(&plan.targets, &plan.prepare_options(true))
                .await
        };
        if items
            .record(
                SINK_CONFLICTS,
                Some(registry::place(&job.sink.url)),
                "the targets can take what the rules write",
                conflicts.await,
            )
            .is_none()
        {
            skip_later(&mut items, &later[2..], "the sink's targets conflict");
            return (items, None);
        }
        let mut notes = Vec::new();
        if incremental {
            let cdc = async {
                plan.source.check_changes(&plan.change_request()).await?;
                if plan.source.keeps_feeds() {
                    plan.source.retained_log(&plan.feed_name()).await
                } else {
                    Ok(None)
                }
            };
            let held = match cdc.await {
                Ok(held) => held,
                Err(error) => {
                    items.fail(SOURCE_CDC, Some(registry::place(&job.source.url)), error);
                    return (items, None);
                }
            };
            items.pass(
                SOURCE_CDC,
                Some(registry::place(&job.source.url)),
                "the source keeps a change log the job can follow",
            );
            if let Some(bytes) = held {
                let held = format!(
                    "replication slot {} holds {:.1} MB of WAL on the source",
                    plan.feed_name(),
                    bytes as f64 / 1e6
                );
                let checkpoint = match self.spec.store.load() {
                    Ok(state) => state,
                    Err(error) => {
                        items.fail(CHECKPOINT, None, error);
                        return (items, None);
                    }
                };
                if checkpoint.is_none() {
                    let message = format!("{held}, but this job has no checkpoint: if no job uses the slot any more, remove it with `ferry drop`");
                    warn!("{message}");
                    items.warn(SOURCE_LOG_RETENTION, Some(plan.feed_name()), message);
                } else if bytes > RETAINED_WAL_WARNING {
                    let message = format!("{held} and cannot recycle it until the job runs and catches up; run the job, or `ferry drop` it if it is abandoned");
                    warn!("{message}");
                    items.warn(SOURCE_LOG_RETENTION, Some(plan.feed_name()), message);
                } else {
                    notes.push(held);
                }
            }
        }
        let report = CheckReport::Tables {
            connections: Vec::new(),
            plan: plan.summary(),
            notes,
        };
        (items, Some(report))
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

    async fn retained_log(&self) -> Result<Option<(String, u64)>, Error> {
        if !self.spec.file.runs(MigrationType::Incremental) {
            return Ok(None);
        }
        let plan = self.plan().await?;
        if !plan.source.keeps_feeds() {
            return Ok(None);
        }
        let feed = plan.feed_name();
        Ok(plan
            .source
            .retained_log(&feed)
            .await?
            .map(|bytes| (feed, bytes)))
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
            removed.push(format!("checkpoint {}", store.describe()));
        }
        Ok(DropReport { removed })
    }
}
