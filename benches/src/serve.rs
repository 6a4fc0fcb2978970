//! `ferry-bench serve`: the memory of one `ferry serve` holding many jobs. Starts a local
//! PostgreSQL with one source table per job and a sink database per job, then `ferry serve`;
//! reads the server's resident memory (`VmRSS`) with no jobs, after every job (schema, full,
//! incremental) has copied its table and caught up, and after a write load on every table
//! has been applied; reports the per-job overhead and the peak (`VmHWM`).

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_engine::Error;
use ferry_local::PgServer;
use serde_json::Value;

use crate::load::{failed, ferry_binary, peak_rss_kb, publish, wait};

/// Options of `ferry-bench serve`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchServeArgs {
    /// Jobs the server holds at once (at most 16: the local server's replication slots).
    #[arg(long, default_value_t = 10)]
    pub jobs: usize,
    /// Rows per job's source table.
    #[arg(long, default_value_t = 50_000)]
    pub rows: u64,
    /// Rows inserted into each source table while the jobs stream.
    #[arg(long, default_value_t = 20_000)]
    pub changes: u64,
    /// Where to write serve-results.md.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Server {
    child: Child,
    url: String,
    agent: ureq::Agent,
}

impl Server {
    fn get(&self, path: &str) -> Result<Value, Error> {
        let mut response = self
            .agent
            .get(format!("{}{path}", self.url))
            .call()
            .map_err(failed)?;
        let text = response.body_mut().read_to_string().map_err(failed)?;
        serde_json::from_str(&text).map_err(failed)
    }

    fn create(&self, name: &str, spec: &str) -> Result<(), Error> {
        let mut response = self
            .agent
            .post(format!("{}/v1/jobs?name={name}", self.url))
            .header("Content-Type", "application/toml")
            .send(spec)
            .map_err(failed)?;
        if response.status().as_u16() != 201 {
            let text = response.body_mut().read_to_string().unwrap_or_default();
            return Err(failed(format!("creating {name}: {text}")));
        }
        Ok(())
    }

    /// Whether every one of `jobs` jobs is caught up; fails on a job that failed.
    fn all_caught_up(&self, jobs: usize) -> Result<bool, Error> {
        let list = self.get("/v1/jobs?limit=1000")?;
        let jobs_now = list["jobs"].as_array().cloned().unwrap_or_default();
        if let Some(job) = jobs_now.iter().find(|j| j["state"] == "failed") {
            return Err(failed(format!(
                "job {} failed: {}",
                job["name"], job["error_message"]
            )));
        }
        let caught_up = jobs_now
            .iter()
            .filter(|j| j["substate"] == "caught_up")
            .count();
        Ok(caught_up == jobs)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn run(args: BenchServeArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let pg = PgServer::start().map_err(failed)?;
    pg.create_database("src").map_err(failed)?;
    for job in 0..args.jobs {
        pg.psql(
            "src",
            &format!(
                "CREATE TABLE public.t{job} (id bigint PRIMARY KEY, customer int, amount numeric(12,2), note text);
                 INSERT INTO public.t{job} SELECT g, g % 97, g % 1000 / 3.0, 'note ' || g FROM generate_series(1, {}) g;
                 ANALYZE public.t{job};",
                args.rows
            ),
        )
        .map_err(failed)?;
        pg.create_database(&format!("sink{job}")).map_err(failed)?;
    }
    let data = tempfile_dir()?;
    let (child, log) = spawn_serve(&data, &[])?;
    let url = log
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default()
        .trim()
        .to_string();
    let server = Server {
        child,
        url,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into(),
    };
    let pid = server.child.id();
    std::thread::sleep(Duration::from_millis(500));
    let idle = rss_kb(pid).unwrap_or(0);

    let started = Instant::now();
    for job in 0..args.jobs {
        let spec = format!(
            "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\n\
             [[rules]]\nsql = 'SELECT * FROM public.t{job}'\n",
            pg.url("src"),
            pg.url(&format!("sink{job}"))
        );
        server.create(&format!("job{job}"), &spec)?;
    }
    let mut failure = None;
    wait(
        "every job to catch up",
        Duration::from_secs(600),
        || match server.all_caught_up(args.jobs) {
            Ok(done) => done,
            Err(error) => {
                failure = Some(error);
                true
            }
        },
    )?;
    if let Some(error) = failure {
        return Err(error);
    }
    let copied = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let caught_up = rss_kb(pid).unwrap_or(0);

    let started = Instant::now();
    for job in 0..args.jobs {
        pg.psql(
            "src",
            &format!(
                "INSERT INTO public.t{job} SELECT g, g % 97, 1.5, 'change ' || g FROM generate_series({}, {}) g",
                args.rows + 1,
                args.rows + args.changes
            ),
        )
        .map_err(failed)?;
    }
    let total = args.rows + args.changes;
    wait(
        "every change to be applied",
        Duration::from_secs(600),
        || {
            (0..args.jobs).all(|job| {
                pg.psql(
                    &format!("sink{job}"),
                    &format!("SELECT count(*) FROM public.t{job}"),
                )
                .is_ok_and(|n| n.trim() == total.to_string())
            })
        },
    )?;
    let applied = started.elapsed();
    let streamed = rss_kb(pid).unwrap_or(0);
    let peak = peak_rss_kb(pid).unwrap_or(0);

    let per_job = caught_up.saturating_sub(idle) as f64 / args.jobs as f64;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "ferry serve with {} PostgreSQL CDC jobs ({} rows each, then {} inserts each)\n",
        args.jobs, args.rows, args.changes
    );
    let _ = writeln!(table, "| moment | server RSS (MiB) |");
    let _ = writeln!(table, "|---|---:|");
    let mib = |kb: u64| kb as f64 / 1024.0;
    let _ = writeln!(table, "| no jobs | {:.1} |", mib(idle));
    let _ = writeln!(
        table,
        "| {} jobs copied and caught up ({:.1} s) | {:.1} |",
        args.jobs,
        copied.as_secs_f64(),
        mib(caught_up)
    );
    let _ = writeln!(
        table,
        "| after {} inserts applied ({:.1} s) | {:.1} |",
        args.changes * args.jobs as u64,
        applied.as_secs_f64(),
        mib(streamed)
    );
    let _ = writeln!(table, "| peak (VmHWM) | {:.1} |", mib(peak));
    let _ = writeln!(
        table,
        "\nper job, caught up: {:.1} MiB over the idle server",
        per_job / 1024.0
    );
    publish(&args.out, "serve-results.md", &table)
}

/// Starts `ferry serve` on a free port with its data in `data` and `extra` flags; waits until
/// it listens and returns it with what it logged by then (its addresses).
pub(crate) fn spawn_serve(
    data: &std::path::Path,
    extra: &[&str],
) -> Result<(Child, String), Error> {
    let log = data.join("serve.log");
    let child = Command::new(ferry_binary()?)
        .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(data.join("data"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).map_err(failed)?)
        .spawn()
        .map_err(failed)?;
    let mut text = String::new();
    wait("ferry serve to listen", Duration::from_secs(30), || {
        text = fs::read_to_string(&log).unwrap_or_default();
        text.contains("listening on ")
    })?;
    Ok((child, text))
}

pub(crate) fn tempfile_dir() -> Result<PathBuf, Error> {
    let dir = std::env::temp_dir().join(format!("ferry-bench-serve-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(failed)?;
    Ok(dir)
}
