//! `ferry-bench binlog`: how fast ferry applies a MariaDB binlog — into MariaDB and into
//! PostgreSQL, at several batch sizes — beside how fast `mariadb-binlog` alone reads and
//! decodes the same binlog range from the server, in the same run on the same servers.
//!
//! Per sink and batch size: ferry copies the table and starts streaming, then stops; a load
//! of small transactions (two account updates each, written by a stored procedure on one
//! connection) goes into the binlog; `mariadb-binlog --read-from-remote-server` decodes the
//! load's range (rows decoded to text, as ferry decodes them to Arrow); then ferry is started
//! again and timed until the sink holds the load's last change, and the sums of both sides
//! are compared. Both start with the whole load waiting, so each runs as fast as it can.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_engine::Error;
use ferry_local::{MariaServer, PgServer, MARIADB_USER};

use crate::cdc::{round_cells, ChangeRound};
use crate::load::{failed, measure, peak_rss_kb, process_cpu_seconds, wait, BenchJob, Measurement};

/// Options of `ferry-bench binlog`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchBinlogArgs {
    /// Transactions in each load (two row changes each).
    #[arg(long, default_value_t = 50_000)]
    pub transactions: u64,
    /// Rows in the accounts table.
    #[arg(long, default_value_t = 100_000)]
    pub accounts: u64,
    /// Batch sizes (rows per applied group) to run ferry with.
    #[arg(long, value_delimiter = ',', default_value = "64,1024,8192")]
    pub batch_sizes: Vec<usize>,
    /// Rounds per configuration (a new load each); the table shows the median.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Where to write binlog-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// The table and the procedure writing a load: `n` transactions of two updates.
fn schema(accounts: u64) -> String {
    format!(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL,
             branch int NOT NULL, note varchar(40));
         INSERT INTO accounts SELECT seq, 0, seq % 100, CONCAT('account ', seq) FROM seq_0_to_{accounts};
         DELIMITER $$
         CREATE PROCEDURE write_load(n INT)
         BEGIN
           DECLARE i INT DEFAULT 0;
           DECLARE a, b BIGINT;
           WHILE i < n DO
             -- Drawn first: RAND() in a WHERE is drawn again for every row scanned.
             SET a = 1 + FLOOR(RAND() * {accounts}), b = 1 + FLOOR(RAND() * {accounts});
             START TRANSACTION;
             UPDATE accounts SET balance = balance + 1 WHERE id = a;
             UPDATE accounts SET balance = balance - 1, branch = branch + 1 WHERE id = b;
             COMMIT;
             SET i = i + 1;
           END WHILE;
         END$$
         DELIMITER ;"
    )
}

/// The source's binlog file and offset now.
fn master_status(source: &MariaServer) -> Result<(String, u64), Error> {
    let status = source.sql("bench", "SHOW MASTER STATUS").map_err(failed)?;
    let mut fields = status.split_whitespace();
    let file = fields
        .next()
        .ok_or_else(|| failed("no binlog"))?
        .to_string();
    let offset = fields
        .next()
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| failed("no binlog offset"))?;
    Ok((file, offset))
}

/// The binlog files from `first` on.
fn files_from(source: &MariaServer, first: &str) -> Result<Vec<String>, Error> {
    let logs = source.sql("bench", "SHOW BINARY LOGS").map_err(failed)?;
    Ok(logs
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|file| {
            ferry_engine::binlog_file_number(file) >= ferry_engine::binlog_file_number(first)
        })
        .map(str::to_string)
        .collect())
}

/// A sink the load is applied to.
enum BenchSink {
    Maria(MariaServer),
    Postgres(PgServer),
}

impl BenchSink {
    fn name(&self) -> &'static str {
        match self {
            BenchSink::Maria(_) => "MariaDB",
            BenchSink::Postgres(_) => "PostgreSQL",
        }
    }

    fn url(&self) -> String {
        match self {
            BenchSink::Maria(server) => server.url("bench"),
            BenchSink::Postgres(server) => server.url("bench"),
        }
    }

    /// One value a query returns, trimmed.
    fn value(&self, sql: &str) -> Result<String, Error> {
        let text = match self {
            BenchSink::Maria(server) => server.sql("bench", sql),
            BenchSink::Postgres(server) => server.psql("bench", sql),
        };
        Ok(text.map_err(failed)?.trim().to_string())
    }
}

/// Runs the benchmark and prints the table (blocking: it waits on processes).
pub fn run(args: BenchBinlogArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let source = MariaServer::start_with_id(1).map_err(failed)?;
    source.create_database("bench").map_err(failed)?;
    source
        .sql("bench", &schema(args.accounts))
        .map_err(failed)?;
    let maria = MariaServer::start_with_id(2).map_err(failed)?;
    maria.create_database("bench").map_err(failed)?;
    let pg = PgServer::start().map_err(failed)?;
    pg.create_database("bench").map_err(failed)?;
    let sinks = [BenchSink::Maria(maria), BenchSink::Postgres(pg)];
    let ferry = crate::load::ferry_binary()?;
    let changes = args.transactions * 2 + 1;
    // (sink, batch size, ferry, mariadb-binlog, load changes/s) per round.
    let mut results: Vec<ChangeRound> = Vec::new();

    for sink in &sinks {
        for &batch_size in &args.batch_sizes {
            let name = format!("binlog_{}_{batch_size}", sink.name().to_lowercase());
            let target = format!("b{batch_size}.accounts");
            let job = format!(
                "name = \"{name}\"\n[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n\
                 [migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\nbatch_size = {batch_size}\n\
                 [[rules]]\nsql = \"INSERT INTO {target} SELECT * FROM bench.accounts\"\n",
                source.url("bench"),
                sink.url(),
            );
            let job = BenchJob::create(&ferry, &args.out, &name, &job)?;

            eprintln!("{name}: snapshot, then streaming …");
            let child = job.start(&format!("{name}-setup.log"))?;
            let streaming = format!("SELECT COUNT(*) FROM _ferry.applied WHERE job = '{name}'");
            wait("ferry to stream", Duration::from_secs(300), || {
                sink.value(&streaming).is_ok_and(|v| v == "1")
            })?;
            job.stop(child)?;

            for round in 1..=args.rounds.max(1) {
                let (first_file, start) = master_status(&source)?;
                eprintln!(
                    "{name}, round {round}: {} transactions …",
                    args.transactions
                );
                let started = Instant::now();
                source
                    .sql("bench", &format!("CALL write_load({})", args.transactions))
                    .map_err(failed)?;
                let write_rate = changes as f64 / started.elapsed().as_secs_f64();
                // The load's last change: the procedure never touches account 0.
                // Named per sink: a later configuration's snapshot copies this row too.
                let done = format!("done {} {batch_size} {round}", sink.name());
                source
                    .sql(
                        "bench",
                        &format!("UPDATE accounts SET note = '{done}' WHERE id = 0"),
                    )
                    .map_err(failed)?;
                let (_, end) = master_status(&source)?;
                let sums = "SELECT CONCAT(SUM(balance), '/', SUM(branch)) FROM accounts";
                let expected = source
                    .sql("bench", sums)
                    .map_err(failed)?
                    .trim()
                    .to_string();

                eprintln!("{name}, round {round}: mariadb-binlog …");
                let decode = Command::new("mariadb-binlog")
                    .args(["--read-from-remote-server", "--host=127.0.0.1"])
                    .arg(format!("--port={}", source.port()))
                    .arg(format!("--user={MARIADB_USER}"))
                    .arg(format!("--start-position={start}"))
                    .arg(format!("--stop-position={end}"))
                    .args(["--base64-output=DECODE-ROWS", "--verbose"])
                    .args(files_from(&source, &first_file)?)
                    .stdout(Stdio::null())
                    .spawn()
                    .map_err(failed)?;
                let baseline = measure("mariadb-binlog", vec![decode])?;

                eprintln!("{name}, round {round}: ferry catching up …");
                let started = Instant::now();
                let child = job.start(&format!("{name}.log"))?;
                let pid = child.id();
                let mut peak = 0u64;
                let last = format!("SELECT note FROM {target} WHERE id = 0");
                wait("ferry to apply the load", Duration::from_secs(900), || {
                    peak = peak.max(peak_rss_kb(pid).unwrap_or(0));
                    sink.value(&last).is_ok_and(|v| v == done)
                })?;
                let seconds = started.elapsed().as_secs_f64();
                let cpu_seconds = process_cpu_seconds(pid);
                job.stop(child)?;
                let landed = sink.value(&format!(
                    "SELECT CONCAT(SUM(balance), '/', SUM(branch)) FROM {target}"
                ))?;
                if landed != expected {
                    return Err(failed(format!(
                        "{name}: the sink holds sums {landed}, the source {expected}"
                    )));
                }
                let ferry_run = Measurement {
                    name: name.clone(),
                    seconds,
                    cpu_seconds,
                    peak_rss_kb: peak,
                };
                results.push(ChangeRound {
                    sink: sink.name(),
                    batch: batch_size,
                    ferry: ferry_run,
                    baseline,
                    load_rate: write_rate,
                });
            }
        }
    }

    let table = render(&results, changes, &args);
    crate::load::publish(&args.out, "binlog-results.md", &table)
}

fn render(results: &[ChangeRound], changes: u64, args: &BenchBinlogArgs) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{changes} row changes ({} transactions of 2 updates from one connection, then one sentinel update) on a {}-row MariaDB table; ferry and mariadb-binlog each start with the whole load waiting; median of {} round(s), ratio = median of the rounds' ratios\n",
        args.transactions,
        args.accounts,
        args.rounds.max(1)
    );
    let _ = writeln!(out, "| sink | batch size | load changes/s | mariadb-binlog changes/s | ferry changes/s | × mariadb-binlog (rounds) | ferry CPU s per M changes | ferry peak RSS MB |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for sink in ["MariaDB", "PostgreSQL"] {
        for &batch in &args.batch_sizes {
            let rounds: Vec<&ChangeRound> = results
                .iter()
                .filter(|r| r.sink == sink && r.batch == batch)
                .collect();
            if !rounds.is_empty() {
                let _ = writeln!(
                    out,
                    "| {sink} | {batch} | {} |",
                    round_cells(&rounds, changes)
                );
            }
        }
    }
    out
}
