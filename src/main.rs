//! The `ferry` command: `check` and `run` a job file, `demo` on local servers, `bench`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ferry::report::{describe_plan, summary, ProgressDisplay};
use ferry::run::progress_for;
use ferry_engine::{Error, ErrorClass};
use ferry_sql::JobFile;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// ferry moves databases: schema and full migration with SQL rules.
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
    /// Run a job: create target tables, copy a consistent snapshot.
    Run {
        /// The job file (TOML).
        job: PathBuf,
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

fn read_job(path: &Path) -> Result<JobFile, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Connector(Box::new(ferry_sql::SqlError::JobFile {
            message: format!("cannot read {}: {e}", path.display()),
        }))
    })?;
    JobFile::parse(&text).map_err(Error::from)
}

async fn check(path: &Path) -> Result<(), Error> {
    let plan = ferry::plan(read_job(path)?).await?;
    plan.sink
        .prepare(&plan.targets, &plan.prepare_options(true))
        .await?;
    print!("{}", describe_plan(&plan));
    println!(
        "check passed: {} source tables, {} target tables",
        plan.tables.len(),
        plan.targets.len()
    );
    Ok(())
}

/// Runs a job with progress display and Ctrl-C handling; prints the summary.
pub async fn run_job(job: JobFile, interactive: bool) -> Result<(), Error> {
    let plan = ferry::plan(job).await?;
    info!(
        tables = plan.tables.len(),
        targets = plan.targets.len(),
        "plan checked"
    );
    let progress = progress_for(&plan);
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("stopping: committed parts stay, the rest is rolled back");
            on_signal.cancel();
        }
    });
    let display = ProgressDisplay::start(progress.clone(), interactive, Duration::from_secs(5));
    let result = ferry::run(&plan, progress.clone(), stop).await;
    display.finish().await;
    let outcome = result?;
    if outcome.copied_rows {
        print!("{}", summary(&progress));
    } else {
        println!(
            "schema migration done: {} target tables ready",
            plan.targets.len()
        );
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
    let result = runtime.block_on(async {
        match cli.command {
            Command::Check { job } => check(&job).await,
            Command::Run { job } => run_job(read_job(&job)?, bars).await,
            Command::Demo { rows } => ferry::demo::run(rows, |job| run_job(job, bars)).await,
            Command::Bench(args) => ferry::bench::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(class = %e.class(), "{e}");
            eprintln!("ferry: {e}");
            exit_code(&e)
        }
    }
}
