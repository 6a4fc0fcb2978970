//! `ferry run|check|verify|drop` for a Redis job (`source.url = "redis://…"`): the whole
//! instance moves into the target Redis — full copy, then the command stream when `incremental`
//! is among the types — through the Redis connector ([`ferry_redis::migrate`]).
//!
//! The point reached is kept in the target itself (`__ferry__:checkpoint:<job>`, written in the
//! same transaction as each batch), so a run stopped any way — `ferry stop`, Ctrl-C, `kill -9`
//! — continues where the target stands, applying nothing twice. The job's rules choose keys
//! and commands and move databases ([`crate::redis_rules`]).

use std::sync::Arc;
use std::time::Duration;

use ferry_engine::{Error, RateLimit};
use ferry_redis::copy::{CopyOptions, Limits, StreamPoint};
use ferry_redis::migrate::{migrate, MigrationOptions, ResumeMode};
use ferry_redis::replica::ReplicaConfig;
use ferry_redis::rules::{CommandTable, Rules};
use ferry_redis::sink::{RedisWriter, Reply};
use ferry_redis::status::{MigrationState, MigrationStatus};
use ferry_sql::{JobFile, MigrationType, ResumeModeConfig, SqlError};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::redis_rules::KeyRules;

/// Where a `redis://[user:password@]host:port[/db]` URL points (the database is ignored: the
/// whole instance moves).
pub fn endpoint(url: &str, field: &str) -> Result<ReplicaConfig, Error> {
    let bad = |message: &str| {
        Error::from(SqlError::InvalidField {
            field: field.into(),
            message: format!("{message}; expected redis://[user:password@]host:port"),
        })
    };
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("not a redis:// URL"))?;
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, rest),
    };
    let address = address.split('/').next().unwrap_or_default();
    if !address.contains(':') {
        return Err(bad("the port is missing"));
    }
    let (user, password) = match credentials {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_string()),
                Some(password.to_string()),
            ),
            None => (None, Some(credentials.to_string())),
        },
        None => (None, None),
    };
    Ok(ReplicaConfig {
        address: address.to_string(),
        user,
        password,
    })
}

/// The target key holding job `name`'s point.
pub fn checkpoint_key(name: &str) -> Vec<u8> {
    format!("__ferry__:checkpoint:{name}").into_bytes()
}

fn endpoints(job: &JobFile) -> Result<(ReplicaConfig, ReplicaConfig), Error> {
    if !job.sink.url.starts_with("redis://") {
        return Err(SqlError::InvalidField {
            field: "sink.url".into(),
            message: "a Redis source moves into a Redis target (redis://host:port)".into(),
        }
        .into());
    }
    let (source, target) = (
        endpoint(&job.source.url, "source.url")?,
        endpoint(&job.sink.url, "sink.url")?,
    );
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
    Ok((source, target))
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
pub async fn rules(job: &JobFile, source: &ReplicaConfig) -> Result<Option<KeyRules>, Error> {
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

/// `ferry check`: both servers answer; the rules compile; warnings about settings that can
/// spoil the migration.
pub async fn check(job: &JobFile) -> Result<(), Error> {
    let (source, target) = endpoints(job)?;
    refuse_same_server(&source, &target).await?;
    migration_rules(job, &source).await?;
    let warnings = ferry_redis::check::check(&source, &target).await?;
    for warning in &warnings {
        warn!("{warning}");
    }
    println!(
        "check passed: Redis {} into Redis {} ({} warnings)",
        source.address,
        target.address,
        warnings.len()
    );
    Ok(())
}

/// `ferry run`: the migration, until done (`full` only) or stopped. With `bars` (a terminal),
/// progress is a bar; otherwise a log line every two seconds.
pub async fn run(
    job: &JobFile,
    name: &str,
    limits_file: std::path::PathBuf,
    stop: CancellationToken,
    bars: bool,
) -> Result<(), Error> {
    let (source, target) = endpoints(job)?;
    refuse_same_server(&source, &target).await?;
    for warning in ferry_redis::check::check(&source, &target).await? {
        warn!("{warning}");
    }
    let follow = job.runs(MigrationType::Incremental);
    let rules = migration_rules(job, &source).await?;
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
        resume: match job.migration.resume_mode {
            ResumeModeConfig::Auto => ResumeMode::Auto,
            ResumeModeConfig::Manual => ResumeMode::Manual,
        },
        checkpoint_key: Some(checkpoint_key(name)),
        ..MigrationOptions::default()
    };
    let limits = Limits {
        bytes: Arc::new(
            RateLimit::new(job.migration.bandwidth_limit_mb * 1_000_000)
                .with_burst(Duration::from_millis(100)),
        ),
        rows: Arc::new(RateLimit::new(job.migration.max_rows_per_second)),
        status: Arc::new(MigrationStatus::default()),
    };
    crate::run::watch_limits_file(
        limits_file,
        Arc::clone(&limits.rows),
        Arc::clone(&limits.bytes),
        stop.clone(),
    );
    let keys_total = keys_in(&source).await.unwrap_or(0);
    let reporter = tokio::spawn(report(
        bars,
        source.clone(),
        Arc::clone(&limits.status),
        keys_total,
    ));
    info!(job = name, source = %source.address, target = %target.address, follow, "Redis migration");
    let stopping = stop.clone();
    let done = move |_: &StreamPoint| !follow || stopping.is_cancelled();
    let mut last = None;
    let mut record = |point: &StreamPoint| last = Some(point.clone());
    let migration = migrate(
        &source,
        &target,
        &options,
        &limits,
        None,
        &mut record,
        &done,
    );
    // A stop may cut the migration anywhere: the target holds whole batches and their point.
    let report = tokio::select! {
        report = migration => Some(report),
        _ = stop.cancelled() => None,
    };
    reporter.abort();
    if report.is_none() {
        limits.status.set_state(MigrationState::Terminated);
    }
    info!(
        state = limits.status.state().name(),
        keys = limits.status.keys(),
        commands = limits.status.commands(),
        "Redis migration ended"
    );
    let report = report.transpose()?;
    match report {
        Some(report) => {
            println!(
                "Redis migration: {} keys copied in {} full copies, {} commands replayed, {} partial resyncs",
                report.keys_copied, report.full_copies, report.commands_replayed, report.partial_resyncs
            );
            if let Some(point) = report.point {
                println!(
                    "the target holds the source up to offset {} of {}",
                    point.offset, point.replid
                );
            }
        }
        None => println!(
            "stopped; the target holds the source up to {}; `ferry run` continues from there",
            last.map_or("the last batch".to_string(), |p| format!(
                "offset {} of {}",
                p.offset, p.replid
            ))
        ),
    }
    Ok(())
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

/// Reports the state, keys done of total, commands, MB/s and the lag in bytes: on a bar
/// redrawn five times a second (`bars`), or in a log line every two seconds. The lag asks the
/// source, at most every two seconds.
async fn report(bars: bool, source: ReplicaConfig, status: Arc<MigrationStatus>, keys_total: u64) {
    const EVERY: Duration = Duration::from_secs(2);
    let tick = if bars {
        Duration::from_millis(200)
    } else {
        EVERY
    };
    let bar = bars.then(|| {
        let bar = indicatif::ProgressBar::with_draw_target(
            Some(keys_total),
            indicatif::ProgressDrawTarget::stderr(),
        );
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{msg} [{bar:25}] {pos}/{len} keys")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let (mut last_bytes, mut last_at) = (status.bytes(), std::time::Instant::now());
    let mut rate = 0.0;
    let mut lag: Option<u64> = None;
    let mut lag_at: Option<std::time::Instant> = None;
    let mut incremental = false;
    loop {
        tokio::time::sleep(tick).await;
        let state = status.state();
        if last_at.elapsed() >= EVERY {
            let bytes = status.bytes();
            rate = bytes.saturating_sub(last_bytes) as f64 / last_at.elapsed().as_secs_f64() / 1e6;
            (last_bytes, last_at) = (bytes, std::time::Instant::now());
        }
        if state == MigrationState::IncrMigrating && lag_at.is_none_or(|at| at.elapsed() >= EVERY) {
            lag = source_offset(&source)
                .await
                .map(|end| end.saturating_sub(status.offset()));
            lag_at = Some(std::time::Instant::now());
        }
        let lag_text = lag.map_or("-".to_string(), |l| l.to_string());
        match &bar {
            Some(bar) => {
                if state == MigrationState::IncrMigrating && !incremental {
                    incremental = true;
                    if let Ok(style) =
                        indicatif::ProgressStyle::with_template("{spinner} {wide_msg}")
                    {
                        bar.set_style(style);
                    }
                }
                bar.set_position(status.keys());
                bar.set_message(if incremental {
                    format!(
                        "{} · {} commands · {rate:.2} MB/s · lag {lag_text} bytes · {} keys copied",
                        state.name(),
                        status.commands(),
                        status.keys()
                    )
                } else {
                    format!("{} {rate:>6.2} MB/s", state.name())
                });
                bar.tick();
            }
            None => info!(
                state = state.name(),
                keys = status.keys(),
                keys_total,
                commands = status.commands(),
                mb_per_second = format!("{rate:.2}"),
                lag_bytes = lag_text,
                "Redis migration"
            ),
        }
    }
}

/// `ferry verify`: every key compared; `Ok(true)` when equal.
pub async fn verify(job: &JobFile) -> Result<bool, Error> {
    let (source, target) = endpoints(job)?;
    refuse_same_server(&source, &target).await?;
    let rules = rules(job, &source).await?;
    let report = ferry_redis::verify::verify_selected(
        &source,
        &target,
        1,
        rules
            .as_ref()
            .map(|r| r as &dyn ferry_redis::rules::Selector),
    )
    .await?;
    for line in &report.details {
        println!("  {line}");
    }
    if report.equal() {
        println!(
            "verify passed: {} keys equal ({} expired or deleted during the comparison)",
            report.compared, report.vanished
        );
    } else {
        println!(
            "DIFFERENT: {} missing in the target, {} in the target only, {} with another type, value or expiry (of {} compared)",
            report.missing, report.extra, report.different, report.compared
        );
    }
    Ok(report.equal())
}

/// `ferry drop`: the target forgets the job's point (the migrated keys stay).
pub async fn drop_job(job: &JobFile, name: &str) -> Result<(), Error> {
    let (_, target) = endpoints(job)?;
    let mut writer = RedisWriter::connect(&target).await?;
    writer.select(0);
    writer.command(&[b"DEL", &checkpoint_key(name)]);
    writer.flush().await?;
    println!(
        "removed the job's point in the target ({})",
        String::from_utf8_lossy(&checkpoint_key(name))
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn urls_give_address_user_and_password() {
        let e = endpoint("redis://127.0.0.1:6379/0", "source.url").unwrap();
        assert_eq!(
            (e.address.as_str(), e.user, e.password),
            ("127.0.0.1:6379", None, None)
        );
        let e = endpoint("redis://:secret@h:1", "source.url").unwrap();
        assert_eq!((e.user, e.password.as_deref()), (None, Some("secret")));
        let e = endpoint("redis://ann:pw@h:1", "source.url").unwrap();
        assert_eq!(
            (e.user.as_deref(), e.password.as_deref()),
            (Some("ann"), Some("pw"))
        );
        assert!(endpoint("redis://host", "source.url").is_err());
        assert!(endpoint("http://h:1", "source.url").is_err());
    }
}
