//! `ferry-bench sql`: the SQL control plane's query rate. Starts `ferry serve --pg` holding
//! `--jobs` draft jobs and runs pgbench (PostgreSQL's own load tool) against it — a point
//! query on `ferry.jobs` over the simple and the extended protocol, and `SHOW JOBS` — beside
//! the same queries on a real PostgreSQL table of as many rows, for scale.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_engine::Error;
use ferry_local::PgServer;

use crate::load::{failed, publish};
use crate::serve::{spawn_serve, tempfile_dir};

/// Options of `ferry-bench sql`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchSqlArgs {
    /// Jobs in the catalog (drafts: the queries read the catalog, not running jobs).
    #[arg(long, default_value_t = 10)]
    pub jobs: usize,
    /// pgbench clients at once.
    #[arg(long, default_value_t = 2)]
    pub clients: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Where to write sql-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// One pgbench run: transactions a second and the mean latency in ms.
fn pgbench(
    bin: &Path,
    port: u16,
    database: &str,
    protocol: &str,
    script: &Path,
    args: &BenchSqlArgs,
) -> Result<(f64, f64), Error> {
    let output = Command::new(bin.join("pgbench"))
        .args(["-n", "-h", "127.0.0.1", "-U", "ferry", "-M", protocol])
        .arg("-p")
        .arg(port.to_string())
        .arg("-f")
        .arg(script)
        .arg("-c")
        .arg(args.clients.to_string())
        .arg("-j")
        .arg(args.clients.to_string())
        .arg("-T")
        .arg(args.seconds.to_string())
        .arg(database)
        .output()
        .map_err(failed)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let number = |label: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(label))?;
        line.split('=')
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    match (number("tps"), number("latency average")) {
        (Some(tps), Some(latency)) if output.status.success() => Ok((tps, latency)),
        _ => Err(failed(format!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&output.stderr)
        ))),
    }
}

pub fn run(args: BenchSqlArgs) -> Result<(), Error> {
    std::fs::create_dir_all(&args.out).map_err(failed)?;
    let pg = PgServer::start().map_err(failed)?;
    let bin = ferry_local::postgres_bin_dir().map_err(failed)?;
    let data = tempfile_dir()?;
    let (mut child, log) = spawn_serve(&data, &["--pg", "127.0.0.1:0"])?;
    let result = (|| {
        let port: u16 = log
            .split("sql on postgres://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| failed("ferry serve did not say its SQL port"))?;
        let psql = |sql: &str| -> Result<(), Error> {
            let out = Command::new(ferry_local::psql_path(&bin))
                .arg(format!(
                    "host=127.0.0.1 port={port} user=ferry dbname=ferry"
                ))
                .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql])
                .output()
                .map_err(failed)?;
            if out.status.success() {
                Ok(())
            } else {
                Err(failed(String::from_utf8_lossy(&out.stderr)))
            }
        };
        for job in 0..args.jobs {
            psql(&format!(
                "CREATE JOB job{job} FROM '{}' TO '{}' RULES ('SELECT * FROM public.t') WITH (start = false)",
                pg.url("src"),
                pg.url("dst")
            ))?;
        }
        // The same shape in PostgreSQL itself, for scale.
        pg.psql(
            "postgres",
            &format!(
                "CREATE TABLE jobs (id bigint PRIMARY KEY, name text, state text, rows_done bigint);
                 INSERT INTO jobs SELECT g, 'job' || g, 'draft', 0 FROM generate_series(1, {}) g;",
                args.jobs
            ),
        )
        .map_err(failed)?;
        let point = data.join("point.sql");
        let id = (args.jobs / 2).max(1);
        std::fs::write(
            &point,
            format!("SELECT name, state, rows_done FROM ferry.jobs WHERE id = {id};\n"),
        )
        .map_err(failed)?;
        let point_pg = data.join("point-pg.sql");
        std::fs::write(
            &point_pg,
            format!("SELECT name, state, rows_done FROM jobs WHERE id = {id};\n"),
        )
        .map_err(failed)?;
        let show = data.join("show.sql");
        std::fs::write(&show, "SHOW JOBS;\n").map_err(failed)?;
        let mut table = String::new();
        let _ = writeln!(
            table,
            "SQL control plane, {} jobs in the catalog, pgbench {} clients × {} s\n",
            args.jobs, args.clients, args.seconds
        );
        let _ = writeln!(
            table,
            "| query | protocol | ferry tps | ferry ms | PostgreSQL tps | PostgreSQL ms |"
        );
        let _ = writeln!(table, "|---|---|---:|---:|---:|---:|");
        for protocol in ["simple", "extended"] {
            let (tps, ms) = pgbench(&bin, port, "ferry", protocol, &point, &args)?;
            let (pg_tps, pg_ms) = pgbench(&bin, pg.port(), "postgres", protocol, &point_pg, &args)?;
            let _ = writeln!(
                table,
                "| point query on jobs | {protocol} | {tps:.0} | {ms:.2} | {pg_tps:.0} | {pg_ms:.2} |"
            );
        }
        let (tps, ms) = pgbench(&bin, port, "ferry", "simple", &show, &args)?;
        let _ = writeln!(table, "| SHOW JOBS | simple | {tps:.0} | {ms:.2} | — | — |");
        publish(&args.out, "sql-results.md", &table)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}
