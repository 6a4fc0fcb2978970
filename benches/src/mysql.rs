//! `ferry-bench mysql`: full migrations out of MariaDB — into MariaDB and into PostgreSQL —
//! by ferry at several batch sizes, beside `mariadb-dump | mariadb` and beside the servers'
//! own bulk path (`SELECT … INTO OUTFILE` on the source, `LOAD DATA INFILE` of that file on
//! the sink: both servers are on this machine) of the same table in the same run.
//!
//! Each configuration runs as its own process(es): wall time around it, CPU from the reaped
//! children (servers' own CPU is not counted for anyone), peak memory by sampling `VmHWM`.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use ferry_engine::Error;
use ferry_local::{MariaServer, PgServer, MARIADB_USER};

use crate::load::{failed, measure, BenchJob, Measurement};

/// Options of `ferry-bench mysql`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchMysqlArgs {
    /// Rows in the generated table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Batch sizes to run ferry with.
    #[arg(long, value_delimiter = ',', default_value = "1024,8192")]
    pub batch_sizes: Vec<usize>,
    /// ferry's parallelism.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Rows per snapshot part.
    #[arg(long, default_value_t = 250_000)]
    pub chunk_rows: u64,
    /// Where to write mysql-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// The generated table: 10 columns of mixed types, like `ferry-bench load`'s.
fn generate(rows: u64) -> String {
    format!(
        "CREATE TABLE bench.load (
             id bigint PRIMARY KEY, qty int NOT NULL, small smallint, price decimal(12,2),
             ratio double, name varchar(40), code varchar(16), active boolean, day date,
             created_at timestamp(6) NULL);
         INSERT INTO bench.load
         SELECT seq, (seq * 7) % 100000, seq % 30000, ROUND(((seq * 13) % 1000000) / 100, 2),
                seq / 3, CONCAT('name-', MD5(seq)), SUBSTR(MD5(seq * 3), 1, 16), seq % 2 = 0,
                DATE_ADD('2000-01-01', INTERVAL seq % 9000 DAY),
                TIMESTAMPADD(SECOND, seq, '2020-01-01 00:00:00')
         FROM seq_1_to_{rows};
         ANALYZE TABLE bench.load;"
    )
}

fn client(program: &str, server: &MariaServer) -> Command {
    let mut command = Command::new(program);
    command
        .args(["--protocol=TCP", "--host=127.0.0.1"])
        .arg(format!("--port={}", server.port()))
        .arg(format!("--user={MARIADB_USER}"))
        .arg("--default-character-set=utf8mb4");
    command
}

/// `mariadb-dump … bench load | mariadb … dump_target`.
fn dump_pipe(source: &MariaServer, sink: &MariaServer) -> Result<Vec<Child>, Error> {
    let mut dump = client("mariadb-dump", source)
        .args(["--single-transaction", "--quick", "bench", "load"])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(failed)?;
    let pipe = dump.stdout.take().ok_or_else(|| failed("no pipe"))?;
    let load = client("mariadb", sink)
        .arg("dump_target")
        .stdin(Stdio::from(pipe))
        .spawn()
        .map_err(failed)?;
    Ok(vec![dump, load])
}

/// `SELECT … INTO OUTFILE` from the source, then `LOAD DATA INFILE` of the file into the
/// sink's `outfile_target.load`, as one timed process.
fn outfile_then_load(
    source: &MariaServer,
    sink: &MariaServer,
    file: &std::path::Path,
) -> Result<Vec<Child>, Error> {
    let _ = fs::remove_file(file);
    let connect = |server: &MariaServer| {
        format!(
            "mariadb --protocol=TCP --host=127.0.0.1 --port={} --user={MARIADB_USER} --default-character-set=utf8mb4",
            server.port()
        )
    };
    let script = format!(
        "{} bench -e \"SELECT * INTO OUTFILE '{file}' FROM bench.load\" && \
         {} outfile_target -e \"LOAD DATA INFILE '{file}' INTO TABLE outfile_target.load\"",
        connect(source),
        connect(sink),
        file = file.display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .spawn()
        .map_err(failed)?;
    Ok(vec![child])
}

fn maria_count(server: &MariaServer, table: &str) -> Result<u64, Error> {
    server
        .sql("bench", &format!("SELECT COUNT(*) FROM {table}"))
        .map_err(failed)?
        .trim()
        .parse()
        .map_err(failed)
}

/// Runs the benchmark and prints the table (blocking: it waits on processes).
pub fn run(args: BenchMysqlArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let source = MariaServer::start_with_id(1).map_err(failed)?;
    let maria_sink = MariaServer::start_with_id(2).map_err(failed)?;
    let pg_sink = PgServer::start().map_err(failed)?;
    source.create_database("bench").map_err(failed)?;
    maria_sink.create_database("bench").map_err(failed)?;
    pg_sink.create_database("bench").map_err(failed)?;
    eprintln!("generating {} rows …", args.rows);
    source.sql("bench", &generate(args.rows)).map_err(failed)?;

    let mut results: Vec<Measurement> = Vec::new();
    eprintln!("baseline: mariadb-dump | mariadb …");
    maria_sink
        .sql("bench", "CREATE DATABASE dump_target")
        .map_err(failed)?;
    results.push(measure(
        "mariadb-dump piped into mariadb",
        dump_pipe(&source, &maria_sink)?,
    )?);
    if maria_count(&maria_sink, "dump_target.load")? != args.rows {
        return Err(failed("the dump pipe did not copy every row"));
    }
    eprintln!("baseline: SELECT … INTO OUTFILE, LOAD DATA INFILE …");
    maria_sink
        .sql(
            "bench",
            "CREATE DATABASE outfile_target; CREATE TABLE outfile_target.load LIKE dump_target.load",
        )
        .map_err(failed)?;
    // In the source's temp dir: both servers run as this user and may read and write it.
    let file = source.dir().join("tmp").join("bench-load.tsv");
    results.push(measure(
        "SELECT … INTO OUTFILE, then LOAD DATA INFILE",
        outfile_then_load(&source, &maria_sink, &file)?,
    )?);
    let _ = fs::remove_file(&file);
    if maria_count(&maria_sink, "outfile_target.load")? != args.rows {
        return Err(failed("INTO OUTFILE / LOAD DATA did not copy every row"));
    }

    let ferry = crate::load::ferry_binary()?;
    for &batch_size in &args.batch_sizes {
        for (sink_name, sink_url, target) in [
            (
                "MariaDB",
                maria_sink.url("bench"),
                format!("ferry_{batch_size}.load"),
            ),
            (
                "PostgreSQL",
                pg_sink.url("bench"),
                format!("ferry_{batch_size}.load"),
            ),
        ] {
            let name = format!("mysql_to_{}_{batch_size}", sink_name.to_lowercase());
            let job = format!(
                "name = \"{name}\"\n[source]\nurl = \"{}\"\n[sink]\nurl = \"{sink_url}\"\n\
                 [migration]\ntypes = [\"schema\", \"full\"]\nbatch_size = {batch_size}\n\
                 parallelism = {}\nchunk_rows = {}\n\
                 [[rules]]\nsql = \"INSERT INTO {target} SELECT * FROM bench.load\"\n",
                source.url("bench"),
                args.parallelism,
                args.chunk_rows
            );
            let job = BenchJob::create(&ferry, &args.out, &name, &job)?;
            eprintln!("ferry MariaDB → {sink_name}, batch size {batch_size} …");
            let child = job.start(&format!("{name}.log"))?;
            let label = format!("ferry → {sink_name}, batch {batch_size}");
            results.push(measure(&label, vec![child])?);
            let copied: u64 = if sink_name == "MariaDB" {
                maria_count(&maria_sink, &target)?
            } else {
                pg_sink
                    .psql("bench", &format!("SELECT count(*) FROM {target}"))
                    .map_err(failed)?
                    .trim()
                    .parse()
                    .map_err(failed)?
            };
            if copied != args.rows {
                return Err(failed(format!("{label} copied {copied} rows")));
            }
        }
    }

    let table = render(&results, &args);
    crate::load::publish(&args.out, "mysql-results.md", &table)
}

fn render(results: &[Measurement], args: &BenchMysqlArgs) -> String {
    let rate = |m: &Measurement| args.rows as f64 / m.seconds;
    let baseline = results.first().map(rate).unwrap_or(f64::NAN);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} rows × 10 columns from MariaDB, parallelism {}, chunk_rows {}\n",
        args.rows, args.parallelism, args.chunk_rows
    );
    let _ = writeln!(
        out,
        "| configuration | seconds | rows/s | CPU s per M rows | peak RSS MB | × dump pipe |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} | {:.2} | {:.1} | {:.2} |",
            m.name,
            m.seconds,
            rate(m),
            m.cpu_seconds / (args.rows as f64 / 1e6),
            m.peak_rss_kb as f64 / 1024.0,
            rate(m) / baseline
        );
    }
    out
}
