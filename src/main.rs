//! The `ferry` command: `check` and `run` a job file, `demo` on local servers, `bench`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use std::sync::Arc;

use ferry::report::{describe_plan, stream_summary, summary, ProgressDisplay};
use ferry::run::{limits_file, progress_for, stop_file, watch_stop_file};
use ferry_engine::{CheckpointStore, Error, ErrorClass, Holder, JobLock, StreamProgress};
use ferry_sql::{JobFile, MigrationType};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// ferry moves databases: schema, full and incremental migration with SQL rules.
#[derive(Parser)]
#[command(name = "ferry", version, about)]
struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a job file, connect, check every rule against the source and the targets, and
    /// print what would move. Writes nothing.
    Check {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Run a job: create target tables, copy a consistent snapshot, follow the source's
    /// changes; resumes from the job's checkpoint.
    Run {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Compare every target table with what its rule selects from the source, row by row
    /// in key order; print the differences; exit 1 when there are any.
    Verify {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Change the limits of a running Redis job (read within a second).
    Limit {
        /// The job file (TOML).
        job: PathBuf,
        /// Source megabytes a second (0: no limit).
        #[arg(long)]
        bandwidth_mb: Option<u64>,
        /// Keys, then commands, a second (0: no limit).
        #[arg(long)]
        rows_per_second: Option<u64>,
    },
    /// Ask the running job to stop cleanly (it commits what it has read, then exits).
    Stop {
        /// The job file (TOML).
        job: PathBuf,
    },
    /// Remove the job's change feed at the source (replication slot and publication), its
    /// records in the sink and its checkpoint. The migrated rows stay.
    Drop {
        /// The job file (TOML).
        job: PathBuf,
        /// Remove the records under the job's name even when they name another definition
        /// (another job file of the same name, or this one before an edit).
        #[arg(long)]
        force: bool,
    },
    /// Start two local PostgreSQL servers, load a sample shop, migrate it with filters and
    /// renames, print the summary, stop the servers.
    Demo {
        /// Orders in the sample data.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
    },
    /// PostgreSQL → PostgreSQL load benchmark across batch sizes, beside psql COPY pipes.
    Bench(ferry::bench::BenchArgs),
    /// Change-apply benchmark: a pgbench write load applied by ferry at several batch sizes,
    /// beside pg_recvlogical decoding the same WAL.
    BenchCdc(ferry::bench_cdc::BenchCdcArgs),
    /// Full-migration benchmark out of MariaDB (into MariaDB and PostgreSQL) across batch
    /// sizes, beside mariadb-dump | mariadb.
    BenchMysql(ferry::bench_mysql::BenchMysqlArgs),
    /// Binlog-apply benchmark: a MariaDB write load applied by ferry into MariaDB and
    /// PostgreSQL at several batch sizes, beside mariadb-binlog decoding the same binlog.
    BenchBinlog(ferry::bench_binlog::BenchBinlogArgs),
    /// Redis full-sync benchmark: ferry's Redis connector beside redis-cli --pipe, and the
    /// bandwidth limit's accuracy.
    BenchRedis(ferry::bench_redis::BenchRedisArgs),
}

/// Exit codes: 0 done; 2 the user must fix something; 3 a server or the network failed;
/// 4 a bug in ferry; 130 stopped by Ctrl-C.
fn exit_code(error: &Error) -> ExitCode {
    match error {
        Error::Stopped => ExitCode::from(130),
        other => match other.class() {
            ErrorClass::User => ExitCode::from(2),
            ErrorClass::External => ExitCode::from(3),
            ErrorClass::Internal => ExitCode::from(4),
        },
    }
}

fn init_logging(verbose: u8, quiet_for_bars: bool) {
    let default = match (verbose, quiet_for_bars) {
        (0, true) => "warn",
        (0, false) => "info",
        (1, _) => "info,ferry=debug,ferry_engine=debug,ferry_postgres=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The job file at `path` and the job's name.
fn read_job(path: &Path) -> Result<(JobFile, String), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Connector(Box::new(ferry_sql::SqlError::JobFile {
            message: format!("cannot read {}: {e}", path.display()),
        }))
    })?;
    let job = JobFile::parse(&text)?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = job.job_name(&stem)?;
    Ok((job, name))
}

async fn check(path: &Path) -> Result<(), Error> {
    let (job, name) = read_job(path)?;
    if job.is_redis() {
        return ferry::redis_job::check(&job).await;
    }
    let plan = ferry::plan(job, name).await?;
    plan.sink
        .claim(&plan.name, &plan.definition(), true)
        .await?;
    plan.sink
        .prepare(&plan.targets, &plan.prepare_options(true))
        .await?;
    if plan.job.runs(MigrationType::Incremental) {
        plan.source.check_changes(&plan.change_request()).await?;
        let held = if plan.source.keeps_feeds() {
            plan.source.retained_log(&plan.feed_name()).await?
        } else {
            None
        };
        if let Some(bytes) = held {
            let state = CheckpointStore::beside(path, &plan.name).load()?;
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
                println!("{held}");
            }
        }
    }
    print!("{}", describe_plan(&plan));
    println!(
        "check passed: {} source tables, {} target tables",
        plan.tables.len(),
        plan.targets.len()
    );
    Ok(())
}

/// A replication slot holding more WAL than this is worth a warning in `ferry check`.
const RETAINED_WAL_WARNING: u64 = 1 << 30;

/// Runs the job file at `path` with progress display, Ctrl-C and `ferry stop` handling;
/// prints the summary.
pub async fn run_job(path: &Path, interactive: bool) -> Result<(), Error> {
    let (job, name) = read_job(path)?;
    // One runner per job file: held until this process ends, however it ends.
    let _lock = lock_job(path, &name)?;
    if job.is_redis() {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                warn!("stopping: the target keeps every whole batch and its point");
                on_signal.cancel();
            }
        });
        watch_stop_file(stop_file(path, &name), stop.clone());
        let bars = std::io::stderr().is_terminal();
        return ferry::redis_job::run(&job, &name, limits_file(path, &name), stop, bars).await;
    }
    let plan = ferry::plan(job, name).await?;
    info!(
        job = %plan.name,
        tables = plan.tables.len(),
        targets = plan.targets.len(),
        "plan checked"
    );
    let progress = progress_for(&plan);
    let streaming = Arc::new(StreamProgress::default());
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("stopping: what is committed stays, the rest is rolled back");
            on_signal.cancel();
        }
    });
    watch_stop_file(stop_file(path, &plan.name), stop.clone());
    let display = ProgressDisplay::start(
        progress.clone(),
        streaming.clone(),
        interactive,
        Duration::from_secs(5),
    );
    let store = CheckpointStore::beside(path, &plan.name);
    let result = ferry::run(
        &plan,
        &store,
        progress.clone(),
        streaming.clone(),
        stop.clone(),
    )
    .await;
    display.finish().await;
    stop.cancel();
    let outcome = result?;
    if outcome.copied_rows {
        print!("{}", summary(&progress));
    }
    if let Some(position) = &outcome.streamed_to {
        print!("{}", stream_summary(&streaming));
        println!("stopped; the sink holds every change up to {position}; `ferry run` continues from there");
    } else if !outcome.copied_rows {
        println!(
            "nothing to copy: {} target tables ready{}",
            plan.targets.len(),
            if plan.job.runs(MigrationType::Full) {
                " (the full migration was completed by an earlier run; `ferry drop` the job to start over)"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// The exclusive lock of job `name` (file `path`), or the error naming who holds it.
fn lock_job(path: &Path, name: &str) -> Result<JobLock, Error> {
    let store = CheckpointStore::beside(path, name);
    JobLock::acquire(&store.lock_path(), name, &Holder::this_process())
}

/// Fails unless job `name` (file `path`) is running now: there is nothing to `action`.
fn require_running(path: &Path, name: &str, action: &'static str) -> Result<(), Error> {
    match JobLock::holder(&CheckpointStore::beside(path, name).lock_path()) {
        Some(_) => Ok(()),
        None => Err(Error::NotRunning {
            job: name.to_string(),
            action,
        }),
    }
}

/// Verifies the job at `path`; true when every target equals the source.
async fn verify(path: &Path) -> Result<bool, Error> {
    let (job, name) = read_job(path)?;
    if job.is_redis() {
        return ferry::redis_job::verify(&job).await;
    }
    let plan = ferry::plan(job, name).await?;
    let reports = ferry::verify::verify(&plan).await?;
    let mut equal = true;
    for report in &reports {
        let verdict = if report.is_equal() {
            "equal".to_string()
        } else {
            equal = false;
            format!(
                "DIFFERENT: {} missing in the target, {} not at the source, {} with other values",
                report.missing, report.extra, report.different
            )
        };
        println!(
            "{:<32} source {:>10} rows · target {:>10} rows · {verdict}",
            report.target, report.source_rows, report.sink_rows
        );
        for line in &report.shown {
            println!("    {line}");
        }
    }
    if equal {
        println!(
            "verify passed: {} target tables equal the source",
            reports.len()
        );
    } else {
        println!("verify failed: the target differs from the source");
    }
    Ok(equal)
}

/// Asks the run of the job at `path` to stop.
fn stop(path: &Path) -> Result<(), Error> {
    let (_, name) = read_job(path)?;
    require_running(path, &name, "stop")?;
    let file = stop_file(path, &name);
    std::fs::write(&file, b"stop\n").map_err(|e| Error::Checkpoint {
        path: file.display().to_string(),
        message: format!("cannot write the stop request: {e}"),
    })?;
    println!(
        "asked the job to stop ({}); it commits what it has read and exits",
        file.display()
    );
    Ok(())
}

/// Writes new limits for the running job to read.
fn limit(
    path: &Path,
    bandwidth_mb: Option<u64>,
    rows_per_second: Option<u64>,
) -> Result<(), Error> {
    let (_, name) = read_job(path)?;
    require_running(path, &name, "limit")?;
    let file = limits_file(path, &name);
    // Keep what an earlier `ferry limit` set and this one does not change.
    let (old_rows, old_bandwidth) =
        ferry::run::parse_limits(&std::fs::read_to_string(&file).unwrap_or_default());
    let mut text = String::new();
    if let Some(rows) = rows_per_second.or(old_rows) {
        text.push_str(&format!("rows_per_second = {rows}\n"));
    }
    if let Some(mb) = bandwidth_mb.or(old_bandwidth) {
        text.push_str(&format!("bandwidth_mb = {mb}\n"));
    }
    std::fs::write(&file, &text).map_err(|e| Error::Checkpoint {
        path: file.display().to_string(),
        message: format!("cannot write the new limits: {e}"),
    })?;
    print!("the running job reads within a second:\n{text}");
    Ok(())
}

/// Removes the job's feed, sink records and checkpoint.
async fn drop_job(path: &Path, force: bool) -> Result<(), Error> {
    let (job, name) = read_job(path)?;
    // Never under a running job: it would write again the records dropped here.
    let _lock = lock_job(path, &name)?;
    if job.is_redis() {
        return ferry::redis_job::drop_job(&job, &name).await;
    }
    let plan = ferry::plan(job, name).await?;
    let _sink_lock = plan.sink.lock(&plan.name, &Holder::this_process()).await?;
    // Only this job's records go: another job of the same name keeps its own. This job is
    // its file as it is now, or as it was when it wrote the checkpoint beside it (edited
    // since); a checkpoint ferry cannot read (of an older format) is removed all the same.
    let store = CheckpointStore::beside(path, &plan.name);
    let (had_checkpoint, recorded) = match store.load() {
        // The checkpoint's definition is this file's only if this file wrote it: another job
        // file of the same name in this directory shares the checkpoint's name.
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
    for thing in removed {
        println!("removed {thing}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let interactive = std::io::stderr().is_terminal();
    let bars = interactive && matches!(cli.command, Command::Run { .. } | Command::Demo { .. });
    init_logging(cli.verbose, bars);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ferry: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    // Ok(false): the command ran and found differences (`ferry verify`).
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check { job } => check(&job).await.map(|()| true),
            Command::Run { job } => run_job(&job, bars).await.map(|()| true),
            Command::Stop { job } => stop(&job).map(|()| true),
            Command::Limit {
                job,
                bandwidth_mb,
                rows_per_second,
            } => limit(&job, bandwidth_mb, rows_per_second).map(|()| true),
            Command::Verify { job } => verify(&job).await,
            Command::Drop { job, force } => drop_job(&job, force).await.map(|()| true),
            Command::Demo { rows } => {
                ferry::demo::run(
                    rows,
                    |job: PathBuf| async move { run_job(&job, bars).await },
                )
                .await
                .map(|()| true)
            }
            Command::Bench(args) => ferry::bench::run(args).await.map(|()| true),
            Command::BenchCdc(args) => ferry::bench_cdc::run(args).await.map(|()| true),
            Command::BenchMysql(args) => ferry::bench_mysql::run(args).await.map(|()| true),
            Command::BenchBinlog(args) => ferry::bench_binlog::run(args).await.map(|()| true),
            Command::BenchRedis(args) => ferry::bench_redis::run(args).await.map(|()| true),
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // Once: a refusal is the user's to read, not a log line and then the same again.
            match e.class() {
                ErrorClass::User => eprintln!("ferry: {e}"),
                class => eprintln!("ferry: {e} ({class})"),
            }
            exit_code(&e)
        }
    }
}
