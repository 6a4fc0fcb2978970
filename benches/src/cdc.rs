//! `ferry-bench cdc`: how fast ferry applies a stream of changes, beside how fast
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
use ferry_local::{postgres_bin_dir, PgServer, SUPERUSER};

use crate::load::{failed, measure, peak_rss_kb, process_cpu_seconds, wait, BenchJob, Measurement};

/// Options of `ferry-bench cdc`.
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
    /// Rounds per batch size (a new load each); the table shows the median round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Where to write cdc-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Servers with TLS on, ferry connecting with verify-full (the baselines over TLS too).
    #[arg(long)]
    pub tls: bool,
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

/// Runs the benchmark and prints the table (blocking: it waits on processes).
pub fn run(args: BenchCdcArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let bin = postgres_bin_dir().map_err(failed)?;
    let certs = crate::tls::certs(args.tls);
    let source = crate::tls::server(certs.as_ref())?;
    let sink = crate::tls::server(certs.as_ref())?;
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
    let ferry = crate::load::ferry_binary()?;
    let changes = args.transactions * 2 + 1;
    // (batch size, ferry, pg_recvlogical, pgbench changes/s) per round.
    let mut results: Vec<ChangeRound> = Vec::new();

    for &batch_size in &args.batch_sizes {
        let name = format!("cdc_{batch_size}");
        let target = format!("b{batch_size}.accounts");
        let job = format!(
            "name = \"{name}\"\n[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n\
             [migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\nbatch_size = {batch_size}\n\
             [[rules]]\nsql = \"INSERT INTO {target} SELECT * FROM public.accounts\"\n",
            crate::tls::url(&source, "bench", certs.as_ref()),
            crate::tls::url(&sink, "bench", certs.as_ref()),
        );
        let job = BenchJob::create(&ferry, &args.out, &name, &job)?;

        // Copy the table and start streaming, so the slot exists; then stop.
        eprintln!("batch {batch_size}: snapshot and slot …");
        let child = job.start(&format!("{name}-setup.log"))?;
        // Streaming once the sink records a position for the job (an idle one, caught up).
        let streaming = format!("SELECT count(*) FROM _ferry.applied WHERE job = '{name}'");
        wait("ferry to stream", Duration::from_secs(300), || {
            value(&sink, "bench", &streaming).is_ok_and(|v| v == "1")
        })?;
        job.stop(child)?;
        for round in 1..=args.rounds.max(1) {
            let recv_slot = format!("recv_{batch_size}_{round}");
            source
                .psql(
                    "bench",
                    &format!(
                        "SELECT pg_create_logical_replication_slot('{recv_slot}', 'pgoutput')"
                    ),
                )
                .map_err(failed)?;

            eprintln!(
                "batch {batch_size}, round {round}: pgbench, {} transactions …",
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
            let done = format!("done {batch_size} {round}");
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

            eprintln!("batch {batch_size}, round {round}: pg_recvlogical …");
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

            eprintln!("batch {batch_size}, round {round}: ferry catching up …");
            let started = Instant::now();
            let child = job.start(&format!("{name}.log"))?;
            let pid = child.id();
            let mut peak = 0u64;
            // A cheap poll (one row by key), so the sink's CPU goes to applying.
            let last = format!("SELECT note FROM {target} WHERE id = 0");
            wait("ferry to apply the load", Duration::from_secs(900), || {
                peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
                value(&sink, "bench", &last).is_ok_and(|v| v == done)
            })?;
            let seconds = started.elapsed().as_secs_f64();
            // Read before it exits: the bench's own psql polls would count among children.
            let cpu_seconds = process_cpu_seconds(pid);
            job.stop(child)?;
            let landed =
                format!("SELECT sum(balance)::text || '/' || sum(branch)::text FROM {target}");
            let applied = value(&sink, "bench", &landed)?;
            if applied != expected {
                return Err(failed(format!(
                    "the sink of batch {batch_size} holds sums {applied}, the source {expected}"
                )));
            }
            let ferry_run = Measurement {
                name: format!("ferry batch {batch_size}"),
                seconds,
                cpu_seconds,
                peak_rss_kb: peak,
            };
            results.push(ChangeRound {
                sink: "PostgreSQL",
                batch: batch_size,
                ferry: ferry_run,
                baseline,
                load_rate: write_rate,
            });
        }
    }

    let table = format!(
        "Servers {}.\n\n{}",
        crate::tls::label(certs.as_ref()),
        render(&results, changes, &args)
    );
    crate::load::publish(&args.out, "cdc-results.md", &table)
}

fn render(results: &[ChangeRound], changes: u64, args: &BenchCdcArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{changes} row changes ({} pgbench transactions of 2 updates, 4 clients, then one sentinel update) on a {}-row table; ferry and pg_recvlogical each start with the whole load waiting; median of {} rounds (each with its own load), ratio = median of the rounds' ratios\n",
        args.transactions,
        args.accounts,
        args.rounds.max(1)
    );
    let _ = writeln!(out, "| batch size | pgbench changes/s | pg_recvlogical changes/s | ferry changes/s | × pg_recvlogical (rounds) | ferry CPU s per M changes | ferry peak RSS MB |");
    let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
    for &batch in &args.batch_sizes {
        let rounds: Vec<&ChangeRound> = results.iter().filter(|r| r.batch == batch).collect();
        if !rounds.is_empty() {
            let _ = writeln!(out, "| {batch} | {} |", round_cells(&rounds, changes));
        }
    }
    out
}

/// One round of a change-apply benchmark: ferry's run and the baseline's over the same load.
pub(crate) struct ChangeRound {
    /// The sink ferry applied into.
    pub(crate) sink: &'static str,
    /// ferry's batch size.
    pub(crate) batch: usize,
    /// ferry applying the load.
    pub(crate) ferry: Measurement,
    /// The engine's own tool decoding it.
    pub(crate) baseline: Measurement,
    /// Changes a second the load was written at.
    pub(crate) load_rate: f64,
}

/// The table cells of `rounds` (one configuration) over `changes` changes: the medians of the
/// load's, the baseline's and ferry's changes/s, of the rounds' ratios (each listed), of
/// ferry's CPU seconds per million changes, and ferry's peak RSS.
pub(crate) fn round_cells(rounds: &[&ChangeRound], changes: u64) -> String {
    let rate = |m: &Measurement| changes as f64 / m.seconds;
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| rate(&r.ferry) / rate(&r.baseline))
        .collect();
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    format!(
        "{:.0} | {:.0} | {:.0} | {:.2} ({}) | {:.2} | {:.1}",
        median(rounds.iter().map(|r| r.load_rate)),
        median(rounds.iter().map(|r| rate(&r.baseline))),
        median(rounds.iter().map(|r| rate(&r.ferry))),
        median(ratios.iter().copied()),
        shown.join(", "),
        median(
            rounds
                .iter()
                .map(|r| r.ferry.cpu_seconds / (changes as f64 / 1e6))
        ),
        rounds
            .iter()
            .map(|r| r.ferry.peak_rss_kb)
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    )
}

/// The middle value (the mean of the two middle ones for an even count).
pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert_eq!(median(std::iter::empty()), 0.0);
    }
}
