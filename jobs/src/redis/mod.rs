//! Redis jobs (`source.url = "redis://…"`): the whole instance moves into the target Redis —
//! full copy, then the command stream when `incremental` is among the types — through the
//! Redis connector ([`ferry_redis::migrate`]).
//!
//! The point reached is kept in the target itself (`__ferry__:checkpoint:<job>`, written in the
//! same transaction as each batch), so a run stopped any way — `ferry stop`, Ctrl-C, `kill -9`
//! — continues where the target stands, applying nothing twice. The job's rules choose keys
//! and commands and move databases ([`rules`]).

pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_engine::{Error, RetryPolicy, Shape};
use ferry_redis::copy::{CopyOptions, Limits, StreamPoint};
use ferry_redis::migrate::{migrate, MigrationOptions};
use ferry_redis::replica::ReplicaConfig;
use ferry_redis::rules::{CommandTable, Rules};
use ferry_redis::sink::{RedisWriter, Reply};
use ferry_redis::status::{MigrationState, MigrationStatus};
use ferry_sql::{JobFile, MigrationType, SqlError};
use tracing::{info, warn};

use crate::context::RunContext;
use crate::job::{CheckReport, DropReport, Job, RunReport, VerifyReport};
use crate::precheck::{
    answers as answers_with, Precheck, RULES_VALID, SERVER_SETTINGS, SINK_CONNECTIVITY,
    SINK_EVICTION, SOURCE_CONNECTIVITY, SOURCE_REPLICATION,
};
use crate::registry::{self, Side};
use crate::spec::JobSpec;
use crate::status::Counters;
use rules::KeyRules;

/// How often the lag behind the source is asked for while streaming.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// The target key holding job `name`'s point.
pub fn checkpoint_key(name: &str) -> Vec<u8> {
    format!("__ferry__:checkpoint:{name}").into_bytes()
}

/// A job moving one Redis instance into another.
pub struct RedisJob {
    spec: JobSpec,
    source: ReplicaConfig,
    target: ReplicaConfig,
    /// What `resume_mode` asks for.
    retry: RetryPolicy,
}

impl RedisJob {
    /// The Redis job `spec` describes; fails on a sink that is not a Redis, on options the
    /// connector does not take, and without a full copy.
    pub fn new(spec: JobSpec) -> Result<RedisJob, Error> {
        let job = &spec.file;
        registry::connector(&job.sink.url, Side::Sink, Some(Shape::Keyspace))?;
        let (source, retry) =
            ferry_redis::source(&job.source.url, job.source.connector_options()?)?;
        let target = ferry_redis::target(&job.sink.url, job.sink.connector_options()?)?;
        if !job.runs(MigrationType::Full) {
            return Err(SqlError::InvalidField {
                field: "migration.types".into(),
                message: "a Redis job always begins with a full copy (the replication protocol starts with one; a later run continues from the point the target holds): write types = [\"full\"] or [\"full\", \"incremental\"]".into(),
            }
            .into());
        }
        if source.address == target.address {
            return Err(SqlError::InvalidField {
                field: "sink.url".into(),
                message: format!(
                    "is the source itself ({}); a Redis job moves one server into another",
                    source.address
                ),
            }
            .into());
        }
        Ok(RedisJob {
            spec,
            source,
            target,
            retry,
        })
    }
}

/// Refuses a target that is the source server itself under another address: the job would
/// replay its own writes into the source forever.
async fn refuse_same_server(source: &ReplicaConfig, target: &ReplicaConfig) -> Result<(), Error> {
    match ferry_redis::check::same_server(source, target).await? {
        Some(run_id) => Err(SqlError::InvalidField {
            field: "sink.url".into(),
            message: format!(
                "{} is the source server itself (both answer with run id {run_id}); a Redis job moves one server into another: point sink.url at the target server",
                target.address
            ),
        }
        .into()),
        None => Ok(()),
    }
}

/// The databases `source` has (`CONFIG GET databases`; 16, Redis's default, when the
/// command is not allowed).
async fn databases(conn: &mut RedisWriter) -> u64 {
    match conn.request(&[b"CONFIG", b"GET", b"databases"]).await {
        Ok(Reply::Array(parts)) => match parts.get(1) {
            Some(Reply::BulkString(n)) => std::str::from_utf8(n)
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(16),
            _ => 16,
        },
        _ => 16,
    }
}

/// The job's rules compiled for `source`; `None` when it has none (everything moves).
pub async fn selector(job: &JobFile, source: &ReplicaConfig) -> Result<Option<KeyRules>, Error> {
    if job.rules.is_empty() {
        return Ok(None);
    }
    let mut conn = RedisWriter::connect(source).await?;
    compile_rules(job, &mut conn).await.map(Some)
}

/// The job's rules compiled for the source `conn` is connected to.
async fn compile_rules(job: &JobFile, conn: &mut RedisWriter) -> Result<KeyRules, Error> {
    KeyRules::compile(&job.rules, databases(conn).await)
}

/// The rules as a migration applies them: with the source's command table.
async fn migration_rules(job: &JobFile, source: &ReplicaConfig) -> Result<Option<Rules>, Error> {
    if job.rules.is_empty() {
        return Ok(None);
    }
    // One connection for both: the databases the rules may name, and the commands.
    let mut conn = RedisWriter::connect(source).await?;
    let selector = compile_rules(job, &mut conn).await?;
    let commands = CommandTable::fetch(&mut conn).await?;
    if commands.is_empty() {
        return Err(SqlError::InvalidField {
            field: "rules".into(),
            message: format!(
                "the source ({}) did not list its commands (COMMAND), which rules need to find the keys of each command; allow COMMAND for ferry's user, or remove the rules",
                source.address
            ),
        }
        .into());
    }
    Ok(Some(Rules {
        selector: Arc::new(selector),
        commands: Arc::new(commands),
    }))
}

/// Keys the source holds in all its databases (`INFO keyspace`).
async fn keys_in(source: &ReplicaConfig) -> Result<u64, Error> {
    let mut conn = RedisWriter::connect(source).await?;
    Ok(conn
        .info("keyspace")
        .await?
        .lines()
        .filter_map(|line| {
            line.split("keys=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum())
}

/// The source's replication offset now.
async fn source_offset(source: &ReplicaConfig) -> Option<u64> {
    let mut conn = RedisWriter::connect(source).await.ok()?;
    ferry_redis::check::info_field(&mut conn, "replication", "master_repl_offset")
        .await
        .ok()??
        .parse()
        .ok()
}

/// Keeps the status board's lag (source offset − applied offset) current while streaming.
async fn sample_lag(
    source: ReplicaConfig,
    status: Arc<MigrationStatus>,
    context: Arc<crate::status::StatusBoard>,
) {
    loop {
        tokio::time::sleep(LAG_EVERY).await;
        if status.state() == MigrationState::IncrMigrating {
            let lag = source_offset(&source)
                .await
                .map(|end| end.saturating_sub(status.offset()));
            context.set_lag_bytes(lag);
        }
    }
}

#[async_trait]
impl Job for RedisJob {
    fn spec(&self) -> &JobSpec {
        &self.spec
    }

    /// Both servers answer; the rules compile; warnings about settings that can spoil the
    /// migration.
    async fn precheck(&self) -> (Precheck, Option<CheckReport>) {
        let mut items = Precheck::default();
        let answers = |config: &ReplicaConfig| {
            let config = config.clone();
            async move {
                let mut conn = RedisWriter::connect(&config).await?;
                conn.info("server").await?;
                Ok::<_, Error>(config.tls_settings.describe(conn.negotiated().as_deref()))
            }
        };
        let source = answers(&self.source).await;
        let source = items.record(
            SOURCE_CONNECTIVITY,
            Some(self.source.address.clone()),
            &answers_with("source", &source),
            source,
        );
        let target = answers(&self.target).await;
        let target = items.record(
            SINK_CONNECTIVITY,
            Some(self.target.address.clone()),
            &answers_with("target", &target),
            target,
        );
        if source.is_none() || target.is_none() {
            items.skip(RULES_VALID, "a server cannot be reached");
            return (items, None);
        }
        let valid = async {
            refuse_same_server(&self.source, &self.target).await?;
            migration_rules(&self.spec.file, &self.source).await?;
            Ok::<_, Error>(())
        };
        if items
            .record(
                RULES_VALID,
                None,
                "the rules and target are valid",
                valid.await,
            )
            .is_none()
        {
            return (items, None);
        }
        let warnings = match ferry_redis::check::check(&self.source, &self.target).await {
            Ok(warnings) => warnings,
            Err(error) => {
                items.fail(SERVER_SETTINGS, None, error.into());
                return (items, None);
            }
        };
        for warning in &warnings {
            warn!("{warning}");
            if warning.contains("maxmemory-policy") {
                items.warn(SINK_EVICTION, Some(self.target.address.clone()), warning);
            } else {
                items.warn(
                    SOURCE_REPLICATION,
                    Some(self.source.address.clone()),
                    warning,
                );
            }
        }
        if !warnings.iter().any(|w| w.contains("maxmemory-policy")) {
            items.pass(
                SINK_EVICTION,
                Some(self.target.address.clone()),
                "the target does not evict keys",
            );
        }
        let report = CheckReport::Keyspace {
            connections: Vec::new(),
            source: self.source.address.clone(),
            target: self.target.address.clone(),
            warnings,
        };
        (items, Some(report))
    }

    /// The migration, until done (`full` only) or stopped.
    async fn run(&self, context: &RunContext) -> Result<RunReport, Error> {
        let (source, target, job, name) =
            (&self.source, &self.target, &self.spec.file, &self.spec.name);
        refuse_same_server(source, target).await?;
        for warning in ferry_redis::check::check(source, target).await? {
            warn!("{warning}");
        }
        let follow = job.runs(MigrationType::Incremental);
        let rules = migration_rules(job, source).await?;
        if let Some(rules) = &rules {
            info!(
                source_databases = ?rules.selector.source_dbs(),
                target_databases = ?rules.selector.target_dbs(),
                "rules select keys"
            );
        }
        let options = MigrationOptions {
            copy: CopyOptions {
                batch: job.migration.batch_size.clamp(1, 10_000),
                target_empty: false,
                rules,
            },
            retry: context.retry.unwrap_or(self.retry),
            checkpoint_key: Some(checkpoint_key(name)),
        };
        let limits = Limits {
            bytes: Arc::clone(&context.limits.bytes),
            rows: Arc::clone(&context.limits.rows),
            status: Arc::new(MigrationStatus::default()),
        };
        let keys_total = keys_in(source).await.unwrap_or(0);
        context.counters(Counters::Keys {
            status: Arc::clone(&limits.status),
            keys_total,
        });
        let lag = tokio::spawn(sample_lag(
            source.clone(),
            Arc::clone(&limits.status),
            context.status_board(),
        ));
        info!(job = %name, source = %source.address, target = %target.address, follow, "Redis migration");
        let stopping = context.stop.clone();
        let done = move |_: &StreamPoint| !follow || stopping.is_cancelled();
        let mut last = None;
        let mut record = |point: &StreamPoint| last = Some(point.clone());
        let migration = migrate(source, target, &options, &limits, None, &mut record, &done);
        // A stop may cut the migration anywhere: the target holds whole batches and their point.
        let report = tokio::select! {
            report = migration => Some(report),
            _ = context.stop.cancelled() => None,
        };
        lag.abort();
        if report.is_none() {
            limits.status.set_state(MigrationState::Terminated);
        }
        info!(
            state = limits.status.state().name(),
            keys = limits.status.keys(),
            commands = limits.status.commands(),
            "Redis migration ended"
        );
        Ok(match report.transpose()? {
            Some(report) => RunReport::Keyspace {
                position: report.point.as_ref().map(StreamPoint::position),
                migration: Some(report),
            },
            None => RunReport::Keyspace {
                migration: None,
                position: last.as_ref().map(StreamPoint::position),
            },
        })
    }

    /// Every key compared.
    /// A Redis source keeps no feed for the job: its backlog is the source's own.
    async fn retained_log(&self) -> Result<Option<(String, u64)>, Error> {
        Ok(None)
    }

    async fn verify(&self) -> Result<VerifyReport, Error> {
        refuse_same_server(&self.source, &self.target).await?;
        let rules = selector(&self.spec.file, &self.source).await?;
        let report = ferry_redis::verify::verify_selected(
            &self.source,
            &self.target,
            1,
            rules
                .as_ref()
                .map(|r| r as &dyn ferry_redis::rules::Selector),
        )
        .await?;
        Ok(VerifyReport::Keyspace(report))
    }

    /// The target forgets the job's point (the migrated keys stay).
    async fn drop_records(&self, _force: bool) -> Result<DropReport, Error> {
        let mut writer = RedisWriter::connect(&self.target).await?;
        writer.select(0);
        writer.command(&[b"DEL", &checkpoint_key(&self.spec.name)]);
        writer.flush().await?;
        Ok(DropReport {
            removed: vec![format!(
                "the job's point in the target ({})",
                String::from_utf8_lossy(&checkpoint_key(&self.spec.name))
            )],
        })
    }
}
