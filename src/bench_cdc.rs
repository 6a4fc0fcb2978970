//! `ferry bench-cdc`: how fast ferry applies a stream of changes, beside how fast
//! `pg_recvlogical` alone receives the same WAL decoded by pgoutput, in the same run on the
//! same servers.
//!
//! Per batch size: ferry copies a table and starts streaming (its slot exists), then stops; a
//! second slot for `pg_recvlogical` is created at that point; pgbench runs a write load of
//! small transactions (two account updates each); then `pg_recvlogical` decodes the load's
//! WAL up to its end, and ferry is started again and timed until the sink holds the load's
//! last change. Both start with the whole load waiting, so each runs as fast as it can: the
//! rate ferry reaches is the write rate it sustains with lag bounded.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_engine::Error;
use ferry_testkit::{postgres_bin_dir, PgServer, SUPERUSER};

use crate::bench::{children_cpu_seconds, failed, measure, peak_rss_kb, Measurement};

/// Options of `ferry bench-cdc`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchCdcArgs {
    /// pgbench transactions in each load (two row changes each).
    #[arg(long, default_value_t = 50_000)]
    pub transactions: u64,
    /// Rows in the accounts table.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: u64,
    /// Batch sizes (rows per applied group) to run ferry with.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,8192")]
    pub batch_sizes: Vec<usize>,
    /// Where to write cdc-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// pgbench's script: two balance updates of random accounts per transaction.
const SCRIPT: &str = "\\set a random(1, :accounts)
\\set b random(1, :accounts)
BEGIN;
UPDATE public.accounts SET balance = balance + 1 WHERE id = :a;
UPDATE public.accounts SET balance = balance - 1, branch = branch + 1 WHERE id = :b;
COMMIT;
";

fn value(server: &PgServer, database: &str, sql: &str) -> Result<String, Error> {
    Ok(server
        .psql(database, sql)
        .map_err(failed)?
        .trim()
        .to_string())
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> bool) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(failed(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Runs the benchmark and prints the table.
pub async fn run(args: BenchCdcArgs) -> Result<(), Error> {
    tokio::task::spawn_blocking(move || run_blocking(args))
        .await
        .map_err(failed)?
}

fn run_blocking(args: BenchCdcArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let bin = postgres_bin_dir().map_err(failed)?;
    let source = PgServer::start().map_err(failed)?;
    let sink = PgServer::start().map_err(failed)?;
    source.create_database("bench").map_err(failed)?;
    sink.create_database("bench").map_err(failed)?;
    source
        .psql(
            "bench",
            &format!(
                "CREATE TABLE public.accounts (id bigint PRIMARY KEY, balance bigint NOT NULL,
                     branch integer NOT NULL, note text);
                 INSERT INTO public.accounts SELECT g, 0, g % 100, 'account ' || g
                 FROM generate_series(0, {}) g",
                args.accounts
            ),
        )
        .map_err(failed)?;
    let script = args.out.join("cdc-load.sql");
    fs::write(&script, SCRIPT).map_err(failed)?;
    let ferry = std::env::current_exe().map_err(failed)?;
    let changes = args.transactions * 2 + 1;
    let mut results: Vec<(Measurement, Measurement, f64)> = Vec::new();

    for &batch_size in &args.batch_sizes {
        let name = format!("cdc_{batch_size}");
        let target = format!("b{batch_size}.accounts");
        let job = format!(
            "name = \"{name}\"\n[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n\
             [migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\nbatch_size = {batch_size}\n\
             [[rules]]\nsql = \"INSERT INTO {target} SELECT * FROM public.accounts\"\n",
            source.url("bench"),
            sink.url("bench"),
        );
        let job_path = args.out.join(format!("{name}.toml"));
        fs::write(&job_path, job).map_err(failed)?;
        let _ = fs::remove_file(args.out.join(format!("{name}.state.json")));
        let start_ferry = |log: &str| {
            let log = fs::File::create(args.out.join(log)).map_err(failed)?;
            Command::new(&ferry)
                .arg("run")
                .arg(&job_path)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(failed)
        };
        let stop_ferry = |mut child: std::process::Child| -> Result<(), Error> {
            fs::write(crate::run::stop_file(&job_path, &name), b"stop\n").map_err(failed)?;
            let status = child.wait().map_err(failed)?;
            if status.success() {
                Ok(())
            } else {
                Err(failed(format!("ferry ({name}) exited with {status}")))
            }
        };

        // Copy the table and start streaming, so the slot exists; then stop.
        eprintln!("batch {batch_size}: snapshot and slot …");
        let child = start_ferry(&format!("{name}-setup.log"))?;
        // Streaming once the sink records a position for the job (an idle one, caught up).
        let streaming = format!("SELECT count(*) FROM _ferry.applied WHERE job = '{name}'");
        wait("ferry to stream", Duration::from_secs(300), || {
            value(&sink, "bench", &streaming).is_ok_and(|v| v == "1")
        })?;
        stop_ferry(child)?;
        let recv_slot = format!("recv_{batch_size}");
        source
            .psql(
                "bench",
                &format!("SELECT pg_create_logical_replication_slot('{recv_slot}', 'pgoutput')"),
            )
            .map_err(failed)?;

        eprintln!(
            "batch {batch_size}: pgbench, {} transactions …",
            args.transactions
        );
        let started = Instant::now();
        let status = Command::new(bin.join("pgbench"))
            .args([
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
            ])
            .arg("-p")
            .arg(source.port().to_string())
            .arg("-t")
            .arg((args.transactions / 4).to_string())
            .arg("-D")
            .arg(format!("accounts={}", args.accounts))
            .arg("-f")
            .arg(&script)
            .arg("bench")
            .stdout(Stdio::null())
            .status()
            .map_err(failed)?;
        if !status.success() {
            return Err(failed(format!("pgbench exited with {status}")));
        }
        let write_rate = changes as f64 / started.elapsed().as_secs_f64();
        // The load's last change: pgbench never touches account 0. Once the sink shows it,
        // everything before it is applied too (groups are applied in commit order, whole).
        let done = format!("done {batch_size}");
        source
            .psql(
                "bench",
                &format!("UPDATE public.accounts SET note = '{done}' WHERE id = 0"),
            )
            .map_err(failed)?;
        let end = value(&source, "bench", "SELECT pg_current_wal_lsn()")?;
        let expected = value(
            &source,
            "bench",
            "SELECT sum(balance)::text || '/' || sum(branch)::text FROM public.accounts",
        )?;

        eprintln!("batch {batch_size}: pg_recvlogical …");
        let recv = Command::new(bin.join("pg_recvlogical"))
            .args(["-h", "127.0.0.1", "-U", SUPERUSER, "-d", "bench"])
            .arg("-p")
            .arg(source.port().to_string())
            .arg("-S")
            .arg(&recv_slot)
            .args([
                "-P",
                "pgoutput",
                "-o",
                "proto_version=1",
                "-o",
                "binary=true",
            ])
            .arg("-o")
            .arg(format!("publication_names=ferry_{name}"))
            .arg("-E")
            .arg(&end)
            .args(["--start", "--no-loop", "-f", "/dev/null"])
            .spawn()
            .map_err(failed)?;
        let baseline = measure(
            &format!("pg_recvlogical (batch {batch_size} run)"),
            vec![recv],
        )?;
        source
            .psql(
                "bench",
                &format!("SELECT pg_drop_replication_slot('{recv_slot}')"),
            )
            .map_err(failed)?;

        eprintln!("batch {batch_size}: ferry catching up …");
        let cpu_before = children_cpu_seconds();
        let started = Instant::now();
        let child = start_ferry(&format!("{name}.log"))?;
        let pid = child.id();
        let mut peak = 0u64;
        // A cheap poll (one row by key), so the sink's CPU goes to applying.
        let last = format!("SELECT note FROM {target} WHERE id = 0");
        wait("ferry to apply the load", Duration::from_secs(900), || {
            peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
            value(&sink, "bench", &last).is_ok_and(|v| v == done)
        })?;
        let seconds = started.elapsed().as_secs_f64();
        stop_ferry(child)?;
        let landed = format!("SELECT sum(balance)::text || '/' || sum(branch)::text FROM {target}");
        let applied = value(&sink, "bench", &landed)?;
        if applied != expected {
            return Err(failed(format!(
                "the sink of batch {batch_size} holds sums {applied}, the source {expected}"
            )));
        }
        let ferry_run = Measurement {
            name: format!("ferry batch {batch_size}"),
            seconds,
            cpu_seconds: children_cpu_seconds() - cpu_before,
            peak_rss_kb: peak,
        };
        results.push((ferry_run, baseline, write_rate));
    }

    let table = render(&results, changes, &args);
    print!("{table}");
    fs::write(args.out.join("cdc-results.md"), &table).map_err(failed)?;
    eprintln!("wrote {}/cdc-results.md", args.out.display());
    Ok(())
}

fn render(
    results: &[(Measurement, Measurement, f64)],
    changes: u64,
    args: &BenchCdcArgs,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{changes} row changes ({} pgbench transactions of 2 updates, 4 clients) on a {}-row table; ferry and pg_recvlogical each start with the whole load waiting\n",
        args.transactions, args.accounts
    );
    let _ = writeln!(out, "| batch size | pgbench changes/s | pg_recvlogical s | pg_recvlogical changes/s | ferry s | ferry changes/s | × pg_recvlogical | ferry CPU s per M changes | ferry peak RSS MB |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (ferry, baseline, write_rate) in results {
        let rate = |m: &Measurement| changes as f64 / m.seconds;
        let batch = ferry.name.trim_start_matches("ferry batch ");
        let _ = writeln!(
            out,
            "| {batch} | {write_rate:.0} | {:.2} | {:.0} | {:.2} | {:.0} | {:.2} | {:.2} | {:.1} |",
            baseline.seconds,
            rate(baseline),
            ferry.seconds,
            rate(ferry),
            rate(ferry) / rate(baseline),
            ferry.cpu_seconds / (changes as f64 / 1e6),
            ferry.peak_rss_kb as f64 / 1024.0
        );
    }
    out
}
