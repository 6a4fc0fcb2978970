//! The `ferry` command: a thin front end over the job runtime (`ferry-jobs`) — arguments,
//! terminal rendering, exit codes.

mod demo;
mod remote;
mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ferry_jobs::{
    CheckReport, ControlFiles, Error, ErrorClass, JobSpec, RunContext, RunReport, VerifyReport,
};
use tracing::warn;

use render::{describe_plan, stream_summary, summary, Follower};

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
    /// Change the limits of a running job (read within a second).
    Limit {
        /// The job file (TOML).
        job: PathBuf,
        /// Source megabytes a second (0: no limit).
        #[arg(long)]
        bandwidth_mb: Option<u64>,
        /// Rows (Redis: keys, then commands) a second (0: no limit).
        #[arg(long)]
        rows_per_second: Option<u64>,
    },
    /// Ask the job running in the foreground (`ferry run job.toml`) to stop cleanly: it
    /// commits what it has read and exits; the next `ferry run` resumes it. (A job on a
    /// server is paused with `ferry pause NAME`; `ferry terminate NAME` ends it for good.)
    Stop {
        /// The job file (TOML).
        job: PathBuf,
        /// Refused: on a server, use `ferry pause NAME` (resumable) or `ferry terminate NAME`
        /// (final).
        #[arg(long, hide = true)]
        server: Option<String>,
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
    /// Run ferry as a service holding many jobs, driven over HTTP (`/v1`), with metrics
    /// (`/metrics`) and a status page (`/`). Jobs that were running resume on start.
    Serve(ServeFlags),
    /// List the jobs of a ferry server.
    Jobs {
        /// The server (default $FERRY_SERVER, else http://127.0.0.1:8470).
        #[arg(long)]
        server: Option<String>,
    },
    /// Show a server job's status: state, phases, lag, precheck findings, errors.
    Status {
        /// The job's name.
        name: String,
        /// The server (default $FERRY_SERVER, else http://127.0.0.1:8470).
        #[arg(long)]
        server: Option<String>,
        /// Print the status document as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Pause a server job: it commits what it read and keeps its position.
    Pause {
        /// The job's name.
        name: String,
        /// The server (default $FERRY_SERVER, else http://127.0.0.1:8470).
        #[arg(long)]
        server: Option<String>,
    },
    /// Resume a paused server job from its position.
    Resume {
        /// The job's name.
        name: String,
        /// The server (default $FERRY_SERVER, else http://127.0.0.1:8470).
        #[arg(long)]
        server: Option<String>,
    },
    /// Stop a server job for good (the service's "stop"; it cannot be resumed).
    Terminate {
        /// The job's name.
        name: String,
        /// The server (default $FERRY_SERVER, else http://127.0.0.1:8470).
        #[arg(long)]
        server: Option<String>,
    },
    /// Start two local PostgreSQL servers, load a sample shop, migrate it with filters and
    /// renames, print the summary, stop the servers.
    Demo {
        /// Orders in the sample data.
        #[arg(long, default_value_t = 200_000)]
        rows: u64,
    },
}

/// Exit codes: 0 done; 1 `ferry verify` found differences; otherwise
/// [`ferry_jobs::exit_code`] (2 the user's to fix, 3 a server or the network, 4 a bug, 130
/// stopped by Ctrl-C).
fn exit_code(error: &Error) -> ExitCode {
    ExitCode::from(ferry_jobs::exit_code(error))
}

fn init_logging(verbose: u8, quiet_for_bars: bool) {
    let default = match (verbose, quiet_for_bars) {
        (0, true) => "warn",
        (0, false) => "info",
        (1, _) => "info,ferry=debug,ferry_jobs=debug,ferry_engine=debug,ferry_postgres=debug",
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

async fn check(path: &Path) -> Result<(), Error> {
    let job = ferry_jobs::open(JobSpec::read(path)?)?;
    match job.check().await? {
        CheckReport::Tables {
            plan,
            notes,
            connections,
        } => {
            for line in connections.iter().chain(&notes) {
                println!("{line}");
            }
            print!("{}", describe_plan(&plan));
            println!(
                "check passed: {} source tables, {} target tables",
                plan.tables.len(),
                plan.targets
            );
        }
        CheckReport::Keyspace {
            source,
            target,
            warnings,
            connections,
        } => {
            for line in connections {
                println!("{line}");
            }
            println!(
                "check passed: Redis {source} into Redis {target} ({} warnings)",
                warnings.len()
            )
        }
    }
    Ok(())
}

/// Runs the job file at `path` with progress display, Ctrl-C and `ferry stop` handling;
/// prints the summary.
pub async fn run_job(path: &Path, interactive: bool) -> Result<(), Error> {
    let spec = JobSpec::read(path)?;
    let control = ControlFiles::beside(path, &spec.name);
    let job = ferry_jobs::open(spec)?;
    let (context, events) = RunContext::new(job.spec());
    let on_signal = context.controls();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            warn!("stopping: what is committed stays, the rest is rolled back");
            on_signal.request_stop();
        }
    });
    let _watch = control.watch(&context);
    let follower = Follower::start(events, context.status_board(), interactive);
    let result = ferry_jobs::run(job.as_ref(), &context).await;
    follower.finish().await;
    context.stop.cancel();
    match result? {
        RunReport::Tables {
            copied,
            streamed,
            targets,
            runs_full,
        } => {
            if let Some(progress) = &copied {
                print!("{}", summary(progress));
            }
            if let Some((position, streaming)) = &streamed {
                print!("{}", stream_summary(streaming));
                println!("stopped; the sink holds every change up to {position}; `ferry run` continues from there");
            } else if copied.is_none() {
                println!(
                    "nothing to copy: {targets} target tables ready{}",
                    if runs_full {
                        " (the full migration was completed by an earlier run; `ferry drop` the job to start over)"
                    } else {
                        ""
                    }
                );
            }
        }
        RunReport::Keyspace {
            migration: Some(report),
            position,
        } => {
            println!(
                "Redis migration: {} keys copied in {} full copies, {} commands replayed, {} partial resyncs",
                report.keys_copied, report.full_copies, report.commands_replayed, report.partial_resyncs
            );
            if let Some(position) = position {
                println!("the target holds the source up to {position}");
            }
        }
        RunReport::Keyspace {
            migration: None,
            position,
        } => println!(
            "stopped; the target holds the source up to {}; `ferry run` continues from there",
            position.map_or("the last batch".to_string(), |p| p.to_string())
        ),
    }
    Ok(())
}

/// Verifies the job at `path`; true when every target equals the source.
async fn verify(path: &Path) -> Result<bool, Error> {
    let job = ferry_jobs::open(JobSpec::read(path)?)?;
    let report = job.verify().await?;
    match &report {
        VerifyReport::Tables(reports) => {
            for report in reports {
                let verdict = if report.is_equal() {
                    "equal".to_string()
                } else {
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
            if report.is_equal() {
                println!(
                    "verify passed: {} target tables equal the source",
                    reports.len()
                );
            } else {
                println!("verify failed: the target differs from the source");
            }
        }
        VerifyReport::Keyspace(report) => {
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
        }
    }
    Ok(report.is_equal())
}

/// Asks the run of the job at `path` to stop.
fn stop(path: &Path) -> Result<(), Error> {
    let spec = JobSpec::read(path)?;
    ferry_jobs::require_running(&spec, "stop")?;
    let control = ControlFiles::beside(path, &spec.name);
    control.request_stop()?;
    println!(
        "asked the job to stop ({}); it commits what it has read and exits",
        control.stop.display()
    );
    Ok(())
}

/// Writes new limits for the running job to read.
fn limit(
    path: &Path,
    bandwidth_mb: Option<u64>,
    rows_per_second: Option<u64>,
) -> Result<(), Error> {
    let spec = JobSpec::read(path)?;
    ferry_jobs::require_running(&spec, "limit")?;
    let text =
        ControlFiles::beside(path, &spec.name).request_limits(rows_per_second, bandwidth_mb)?;
    print!("the running job reads within a second:\n{text}");
    Ok(())
}

/// Removes the job's feed, sink records and checkpoint.
async fn drop_job(path: &Path, force: bool) -> Result<(), Error> {
    let job = ferry_jobs::open(JobSpec::read(path)?)?;
    let report = ferry_jobs::drop(job.as_ref(), force).await?;
    for thing in report.removed {
        println!("removed {thing}");
    }
    Ok(())
}

fn finish(result: Result<(), remote::RemoteError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => error.exit(),
    }
}

/// What `ferry serve --config FILE` may set.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    data_dir: Option<PathBuf>,
    http: Option<std::net::SocketAddr>,
    pg: Option<std::net::SocketAddr>,
    token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// `[endpoints.<instance id>] url = "…"`: what the cloud APIs' instance ids stand for.
    #[serde(default)]
    endpoints: std::collections::BTreeMap<String, EndpointEntry>,
}

/// One `[endpoints.<id>]` of the serve config.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointEntry {
    url: String,
}

/// `ferry serve`'s flags.
#[derive(clap::Args)]
struct ServeFlags {
    /// Where the job catalog and the jobs' checkpoints live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The HTTP address (default 127.0.0.1:8470; another than loopback needs a token).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// The SQL control plane's address (PostgreSQL wire protocol: psql, drivers), e.g.
    /// 127.0.0.1:6470; off unless given.
    #[arg(long)]
    pg: Option<std::net::SocketAddr>,
    /// A file holding the access token HTTP requests must carry and SQL clients give as
    /// their password (else $FERRY_TOKEN).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// The SQL control plane's TLS certificate (PEM); with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The SQL control plane's TLS private key (PEM); with --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// A TOML file with `data_dir`, `http`, `pg`, `token_file`, `tls_cert`, `tls_key` (flags
    /// win) and `[endpoints.<instance id>] url = "…"` for the cloud APIs.
    #[arg(long)]
    config: Option<PathBuf>,
}

async fn serve(flags: ServeFlags) -> ExitCode {
    let ServeFlags {
        data_dir,
        http,
        pg,
        token_file,
        tls_cert,
        tls_key,
        config,
    } = flags;
    let refuse = |message: String| {
        eprintln!("ferry serve: {message}");
        ExitCode::from(2)
    };
    let file = match &config {
        None => ServeFile::default(),
        Some(path) => match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| toml::from_str::<ServeFile>(&text).map_err(|e| e.to_string()))
        {
            Ok(file) => file,
            Err(e) => return refuse(format!("config {}: {e}", path.display())),
        },
    };
    let Some(data_dir) = data_dir.or(file.data_dir) else {
        return refuse(
            "name the data dir: --data-dir DIR (the job catalog and checkpoints live there)".into(),
        );
    };
    let listen = http.or(file.http).unwrap_or_else(|| {
        ferry_server::DEFAULT_LISTEN
            .parse()
            .expect("the default address parses")
    });
    let token = match token_file.or(file.token_file) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
            Ok(_) => return refuse(format!("token file {} is empty", path.display())),
            Err(e) => return refuse(format!("token file {}: {e}", path.display())),
        },
        None => std::env::var("FERRY_TOKEN").ok().filter(|t| !t.is_empty()),
    };
    let tls = match (tls_cert.or(file.tls_cert), tls_key.or(file.tls_key)) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        _ => return refuse("TLS needs both a certificate and a key: tls_cert and tls_key".into()),
    };
    let config = ferry_server::ServeConfig {
        data_dir,
        listen,
        token,
        sql: pg.or(file.pg),
        tls,
        endpoints: ferry_server::cloud::Endpoints(
            file.endpoints
                .into_iter()
                .map(|(id, entry)| (id, entry.url))
                .collect(),
        ),
    };
    let shutdown = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        warn!("shutting down: the jobs' runs commit what they read and resume on the next start");
    };
    match ferry_server::serve(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferry serve: {error}");
            ExitCode::from(match error {
                ferry_server::ServeError::NoToken(_)
                | ferry_server::ServeError::Bind { .. }
                | ferry_server::ServeError::Tls(_) => 2,
                _ => 3,
            })
        }
    }
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
    let command = match cli.command {
        Command::Serve(flags) => return runtime.block_on(serve(flags)),
        Command::Jobs { server } => return finish(remote::jobs(&remote::server(server))),
        Command::Status { name, server, json } => {
            return finish(remote::status(&remote::server(server), &name, json))
        }
        Command::Pause { name, server } => {
            return finish(remote::act(&remote::server(server), &name, "pause"))
        }
        Command::Resume { name, server } => {
            return finish(remote::act(&remote::server(server), &name, "resume"))
        }
        Command::Terminate { name, server } => {
            return finish(remote::act(&remote::server(server), &name, "stop"))
        }
        Command::Stop {
            server: Some(_), ..
        } => {
            eprintln!("ferry: `ferry stop` ends a job run in the foreground with `ferry run job.toml`; a job on a server is paused with `ferry pause NAME --server URL` (it resumes with `ferry resume`) or ended for good with `ferry terminate NAME --server URL`");
            return ExitCode::from(2);
        }
        other => other,
    };
    // Ok(false): the command ran and found differences (`ferry verify`).
    let result = runtime.block_on(async {
        match command {
            Command::Check { job } => check(&job).await.map(|()| true),
            Command::Run { job } => run_job(&job, bars).await.map(|()| true),
            Command::Stop { job, .. } => stop(&job).map(|()| true),
            Command::Limit {
                job,
                bandwidth_mb,
                rows_per_second,
            } => limit(&job, bandwidth_mb, rows_per_second).map(|()| true),
            Command::Verify { job } => verify(&job).await,
            Command::Drop { job, force } => drop_job(&job, force).await.map(|()| true),
            Command::Serve(_)
            | Command::Jobs { .. }
            | Command::Status { .. }
            | Command::Pause { .. }
            | Command::Resume { .. }
            | Command::Terminate { .. } => unreachable!("handled above"),
            Command::Demo { rows } => {
                demo::run(
                    rows,
                    |job: PathBuf| async move { run_job(&job, bars).await },
                )
                .await
                .map(|()| true)
            }
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
