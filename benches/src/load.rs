//! `ferry-bench load`: a PostgreSQL → PostgreSQL load of a generated table, by ferry at several
//! batch sizes and, in the same run on the same servers, by the baselines
//! `psql COPY … TO STDOUT | psql COPY … FROM STDIN` in binary and text format.
//!
//! Each configuration runs as its own process(es): wall time is measured around it, CPU time
//! from this process's reaped-children counters (`/proc/self/stat`), peak memory by sampling
//! each process's `VmHWM`. Servers' own CPU is not counted for anyone. Results are printed as
//! a table and written as `results.md` and `rows_per_second.svg` in the output directory.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_engine::Error;
use ferry_local::{postgres_bin_dir, psql_path, PgServer, SUPERUSER};
use ferry_parquet::{FileFormat, FileSink};

/// Options of `ferry-bench load`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    /// Rows in the generated table.
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: u64,
    /// Batch sizes to run ferry with.
    #[arg(long, value_delimiter = ',', default_value = "1,64,1024,8192,65536")]
    pub batch_sizes: Vec<usize>,
    /// ferry's parallelism.
    #[arg(long, default_value_t = 4)]
    pub parallelism: usize,
    /// Rows per snapshot part (how finely the table is split for parallel reads).
    #[arg(long, default_value_t = 250_000)]
    pub chunk_rows: u64,
    /// Where to write results.md and the plot.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
    /// Servers with TLS on, ferry connecting with verify-full (the baselines over TLS too).
    #[arg(long)]
    pub tls: bool,
}

pub(crate) fn failed(message: impl std::fmt::Display) -> Error {
    Error::Internal(format!("bench: {message}"))
}

/// The generated table: 10 columns of mixed types.
const TABLE_DDL: &str = "CREATE TABLE public.load (
    id bigint PRIMARY KEY, qty integer NOT NULL, small smallint, price numeric(12,2),
    ratio double precision, name text, code varchar(16), active boolean, day date,
    created_at timestamptz)";

fn generate(rows: u64) -> String {
    format!(
        "{TABLE_DDL};
         INSERT INTO public.load
         SELECT g, (g * 7) % 100000, (g % 30000)::smallint, round(((g * 13) % 1000000) / 100.0, 2),
                g / 3.0, 'name-' || md5(g::text), substr(md5((g * 3)::text), 1, 16), g % 2 = 0,
                date '2000-01-01' + (g % 9000)::int,
                timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1, {rows}) g"
    )
}

/// One measured configuration.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    pub(crate) name: String,
    pub(crate) seconds: f64,
    pub(crate) cpu_seconds: f64,
    pub(crate) peak_rss_kb: u64,
}

/// Children's user + system CPU seconds reaped so far (fields 16 and 17 of /proc/self/stat).
pub(crate) fn children_cpu_seconds() -> f64 {
    // cutime is field 16 of /proc/<pid>/stat, cstime 17.
    stat_cpu_seconds("self", 16)
}

/// CPU seconds (user + system) process `pid` has used so far, 0 when it cannot be read.
pub(crate) fn process_cpu_seconds(pid: u32) -> f64 {
    // utime is field 14 of /proc/<pid>/stat, stime 15.
    stat_cpu_seconds(&pid.to_string(), 14)
}

/// The sum of the clock-tick fields `first` and `first + 1` of `/proc/<process>/stat`, in
/// seconds.
fn stat_cpu_seconds(process: &str, first: usize) -> f64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{process}/stat")) else {
        return 0.0;
    };
    // The command name may contain spaces; fields are counted after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ')' the first field is field 3 (state).
    let ticks = |field: usize| {
        fields
            .get(field - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    const TICKS_PER_SECOND: f64 = 100.0;
    (ticks(first) + ticks(first + 1)) / TICKS_PER_SECOND
}

/// Prints a runner's results table and writes it as `name` in `out`.
pub(crate) fn publish(out: &std::path::Path, name: &str, table: &str) -> Result<(), Error> {
    print!("{table}");
    fs::write(out.join(name), table).map_err(failed)?;
    eprintln!("wrote {}/{name}", out.display());
    Ok(())
}

/// The `ferry` binary the benchmarks run: `$FERRY_BIN`, or `ferry` beside this binary (both
/// in `target/release` after `cargo build --release -p ferry -p ferry-benches`).
pub(crate) fn ferry_binary() -> Result<std::path::PathBuf, Error> {
    if let Some(path) = std::env::var_os("FERRY_BIN") {
        return Ok(path.into());
    }
    let here = std::env::current_exe().map_err(failed)?;
    let ferry = here.with_file_name("ferry");
    if ferry.is_file() {
        Ok(ferry)
    } else {
        Err(failed(format!(
            "{} not found: build it first (cargo build --release -p ferry), or set FERRY_BIN",
            ferry.display()
        )))
    }
}

/// Waits for `done`, failing after `limit`.
pub(crate) fn wait(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(failed(format!("timed out waiting for {what}")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A benchmark's job run by this binary: started with its log in a file, stopped with a stop
/// request.
pub(crate) struct BenchJob {
    pub(crate) ferry: std::path::PathBuf,
    pub(crate) path: std::path::PathBuf,
    pub(crate) name: String,
    pub(crate) logs: std::path::PathBuf,
}

impl BenchJob {
    /// Writes job `name` (TOML `text`) into `out`, with no checkpoint left from an earlier
    /// run, its logs to go there too.
    pub(crate) fn create(
        ferry: &std::path::Path,
        out: &std::path::Path,
        name: &str,
        text: &str,
    ) -> Result<BenchJob, Error> {
        let path = out.join(format!("{name}.toml"));
        fs::write(&path, text).map_err(failed)?;
        let _ = fs::remove_file(out.join(format!("{name}.state.json")));
        Ok(BenchJob {
            ferry: ferry.to_path_buf(),
            path,
            name: name.to_string(),
            logs: out.to_path_buf(),
        })
    }

    /// Starts `ferry run` on the job, its stderr into `<logs>/<log>`.
    pub(crate) fn start(&self, log: &str) -> Result<std::process::Child, Error> {
        let log = fs::File::create(self.logs.join(log)).map_err(failed)?;
        std::process::Command::new(&self.ferry)
            .arg("run")
            .arg(&self.path)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(failed)
    }

    /// Asks the run to stop and waits for it; it must end cleanly.
    pub(crate) fn stop(&self, mut child: std::process::Child) -> Result<(), Error> {
        fs::write(
            ferry_jobs::ControlFiles::beside(&self.path, &self.name).stop,
            b"stop\n",
        )
        .map_err(failed)?;
        let status = child.wait().map_err(failed)?;
        if status.success() {
            Ok(())
        } else {
            Err(failed(format!(
                "ferry ({}) exited with {status}",
                self.name
            )))
        }
    }
}

pub(crate) fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Waits for all `children`, sampling their peak memory; fails if any fails.
pub(crate) fn measure(name: &str, mut children: Vec<Child>) -> Result<Measurement, Error> {
    let started = Instant::now();
    let cpu_before = children_cpu_seconds();
    let mut peaks = vec![0u64; children.len()];
    let mut running: Vec<bool> = vec![true; children.len()];
    while running.iter().any(|r| *r) {
        for (index, child) in children.iter_mut().enumerate() {
            if !running[index] {
                continue;
            }
            if let Some(peak) = peak_rss_kb(child.id()) {
                peaks[index] = peaks[index].max(peak);
            }
            match child.try_wait() {
                Ok(Some(status)) if status.success() => running[index] = false,
                Ok(Some(status)) => {
                    return Err(failed(format!("{name}: a process exited with {status}")))
                }
                Ok(None) => {}
                Err(e) => return Err(failed(format!("{name}: {e}"))),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Measurement {
        name: name.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: children_cpu_seconds() - cpu_before,
        peak_rss_kb: peaks.into_iter().max().unwrap_or(0),
    })
}

fn psql(server: &PgServer, sql: &str) -> Command {
    let bin = postgres_bin_dir()
        .map(|dir| psql_path(&dir))
        .unwrap_or_else(|_| PathBuf::from("psql"));
    let mut command = Command::new(bin);
    command
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            SUPERUSER,
            "-d",
            "bench",
        ])
        .arg("-p")
        .arg(server.port().to_string())
        .arg("-c")
        .arg(sql);
    command
}

fn copy_pipe(source: &PgServer, sink: &PgServer, format: &str) -> Result<Vec<Child>, Error> {
    let mut out = psql(
        source,
        &format!("COPY public.load TO STDOUT (FORMAT {format})"),
    )
    .stdout(Stdio::piped())
    .spawn()
    .map_err(failed)?;
    let pipe = out.stdout.take().ok_or_else(|| failed("no pipe"))?;
    let into = psql(
        sink,
        &format!("COPY public.load FROM STDIN (FORMAT {format})"),
    )
    .stdin(Stdio::from(pipe))
    .spawn()
    .map_err(failed)?;
    Ok(vec![out, into])
}

fn count(server: &PgServer) -> Result<u64, Error> {
    server
        .psql("bench", "SELECT count(*) FROM public.load")
        .map_err(failed)?
        .trim()
        .parse()
        .map_err(failed)
}

/// Runs the benchmark and prints the table (blocking: it waits on processes).
pub fn run(args: BenchArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let certs = crate::tls::certs(args.tls);
    let source = crate::tls::server(certs.as_ref())?;
    let sink = crate::tls::server(certs.as_ref())?;
    source.create_database("bench").map_err(failed)?;
    sink.create_database("bench").map_err(failed)?;
    eprintln!("generating {} rows …", args.rows);
    source.psql("bench", &generate(args.rows)).map_err(failed)?;
    // VACUUM cannot run in the transaction psql wraps a multi-statement -c in.
    source
        .psql("bench", "VACUUM ANALYZE public.load")
        .map_err(failed)?;
    sink.psql("bench", TABLE_DDL).map_err(failed)?;
    let binary_bytes: u64 = source
        .psql("bench", "SELECT pg_table_size('public.load')")
        .map_err(failed)?
        .trim()
        .parse()
        .map_err(failed)?;

    let mut results = Vec::new();
    for format in ["binary", "text"] {
        sink.psql("bench", "TRUNCATE public.load").map_err(failed)?;
        eprintln!("baseline: psql COPY pipe ({format}) …");
        let name = format!("psql COPY pipe ({format})");
        results.push(measure(&name, copy_pipe(&source, &sink, format)?)?);
        if count(&sink)? != args.rows {
            return Err(failed(format!("{name} did not copy every row")));
        }
    }

    let ferry = crate::load::ferry_binary()?;
    // ferry's full load of the table into `sink_url`, a job of its own at `batch_size`.
    let run_ferry = |job: &str, sink_url: &str, batch_size: usize, name: &str| {
        let text = format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{sink_url}\"\nexisting_rows = \"truncate\"\n\
             [migration]\ntypes = [\"full\"]\nbatch_size = {batch_size}\nparallelism = {}\nchunk_rows = {}\n\
             [[rules]]\nsql = \"SELECT * FROM public.load\"\n",
            crate::tls::url(&source, "bench", certs.as_ref()),
            args.parallelism,
            args.chunk_rows
        );
        let job = BenchJob::create(&ferry, &args.out, job, &text)?;
        eprintln!("{name} …");
        measure(name, vec![job.start(&format!("{}.log", job.name))?])
    };
    for &batch_size in &args.batch_sizes {
        let name = format!("ferry batch {batch_size}");
        let job = format!("job_{batch_size}");
        let sink_url = crate::tls::url(&sink, "bench", certs.as_ref());
        results.push(run_ferry(&job, &sink_url, batch_size, &name)?);
        if count(&sink)? != args.rows {
            return Err(failed(format!("{name} did not copy every row")));
        }
    }

    // Into columnar files, at the largest batch size.
    let batch_size = args.batch_sizes.iter().copied().max().unwrap_or(8192);
    for (format, label) in [
        (FileFormat::Parquet, "Parquet"),
        (FileFormat::ArrowIpc, "Arrow IPC"),
    ] {
        let dir = fs::canonicalize(&args.out)
            .map_err(failed)?
            .join(format!("files-{}", format.extension()));
        let _ = fs::remove_dir_all(&dir);
        let url = format!("{}://{}", format.scheme(), dir.display());
        let name = format!("ferry batch {batch_size} → {label} files");
        let job = format!("job_{}", format.extension());
        results.push(run_ferry(&job, &url, batch_size, &name)?);
        let rows = FileSink::from_url(&url, "sink.url")
            .and_then(|sink| sink.rows_in(&ferry_engine::TableId::new("public", "load")))
            .map_err(failed)?;
        if rows != args.rows {
            return Err(failed(format!(
                "{name} wrote {rows} rows, not {}",
                args.rows
            )));
        }
        let bytes: u64 = fs::read_dir(dir.join("public").join("load"))
            .map_err(failed)?
            .filter_map(|entry| entry.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        eprintln!("  {:.1} MB of files", bytes as f64 / 1e6);
        let _ = fs::remove_dir_all(&dir);
    }

    let table = format!(
        "Servers {}.\n\n{}",
        crate::tls::label(certs.as_ref()),
        render(&results, args.rows, binary_bytes, &args)
    );
    publish(&args.out, "results.md", &table)?;
    fs::write(
        args.out.join("rows_per_second.svg"),
        plot(&results, args.rows),
    )
    .map_err(failed)?;
    eprintln!("wrote {}/rows_per_second.svg", args.out.display());
    Ok(())
}

fn render(results: &[Measurement], rows: u64, bytes: u64, args: &BenchArgs) -> String {
    let rate = |m: &Measurement| rows as f64 / m.seconds;
    let binary = results
        .iter()
        .find(|m| m.name.contains("binary"))
        .map(rate)
        .unwrap_or(f64::NAN);
    let text = results
        .iter()
        .find(|m| m.name.contains("text"))
        .map(rate)
        .unwrap_or(f64::NAN);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{rows} rows × 10 columns ({:.1} MB on disk), parallelism {}, chunk_rows {}\n",
        bytes as f64 / 1e6,
        args.parallelism,
        args.chunk_rows
    );
    let _ = writeln!(out, "| configuration | seconds | rows/s | MB/s | CPU s per M rows | peak RSS MB | × binary pipe | × text pipe |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for m in results {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
            m.name,
            m.seconds,
            rate(m),
            bytes as f64 / 1e6 / m.seconds,
            m.cpu_seconds / (rows as f64 / 1e6),
            m.peak_rss_kb as f64 / 1024.0,
            rate(m) / binary,
            rate(m) / text
        );
    }
    out
}

/// A horizontal bar chart of rows/s per configuration, as SVG.
fn plot(results: &[Measurement], rows: u64) -> String {
    let width = 760.0;
    let bar_height = 28.0;
    let left = 220.0;
    let height = 60.0 + bar_height * results.len() as f64;
    let best = results
        .iter()
        .map(|m| rows as f64 / m.seconds)
        .fold(1.0, f64::max);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"15\">PostgreSQL → PostgreSQL, {rows} rows: rows/s (higher is better)</text>\n"
    );
    for (index, m) in results.iter().enumerate() {
        let value = rows as f64 / m.seconds;
        let y = 40.0 + bar_height * index as f64;
        let length = (width - left - 110.0) * value / best;
        let color = if m.name.starts_with("ferry") {
            "#2b6cb0"
        } else {
            "#718096"
        };
        let _ = writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{left}\" y=\"{:.0}\" width=\"{length:.1}\" height=\"{:.0}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{:.0}\">{value:.0}</text>",
            left - 8.0,
            y + 18.0,
            m.name,
            y + 4.0,
            bar_height - 8.0,
            left + length + 6.0,
            y + 18.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
