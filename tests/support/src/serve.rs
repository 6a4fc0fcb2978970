//! A `ferry serve` process for tests, and a real HTTP client to drive it: started on a free
//! loopback port with its own data dir, killed when dropped (also when a test fails).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cli::{binary, wait_for};

/// The `sh` block of the README that follows `<!-- {marker} -->`: an example a test runs as
/// written.
pub fn readme_example(marker: &str) -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("read the README");
    readme
        .split(&format!("<!-- {marker} -->"))
        .nth(1)
        .and_then(|after| after.split("```sh\n").nth(1))
        .and_then(|rest| rest.split("\n```").next())
        .unwrap_or_else(|| panic!("the README has no sh block after <!-- {marker} -->"))
        .to_string()
}

/// Runs `script` with bash (`-euo pipefail`, at most 180 s) with `env` set; panics with its
/// output and `serve`'s log when it fails.
pub fn run_example(serve: &Serve, script: &str, env: &[(&str, String)]) {
    let output = Command::new("timeout")
        .args(["180", "bash", "-euo", "pipefail", "-c", script])
        .env("FERRY", &serve.url)
        .envs(env.iter().map(|(k, v)| (k, v.as_str())))
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "the README's example failed: {}\nlog:\n{}",
        crate::cli::describe(&output),
        serve.log()
    );
}

/// A running `ferry serve`.
pub struct Serve {
    child: Child,
    /// The data dir (kept across restarts).
    pub data_dir: PathBuf,
    /// Its log (stderr).
    pub log: PathBuf,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The SQL control plane's port, when started with `--pg`.
    pub sql_port: Option<u16>,
    agent: ureq::Agent,
}

/// An HTTP answer: status and body (JSON when it parses, else the text as a string).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
    /// The body as sent.
    pub text: String,
}

impl Serve {
    /// Starts `ferry serve --data-dir <data_dir>` on a free port, with `args` added; waits
    /// until it listens.
    pub fn start(data_dir: &Path, args: &[&str]) -> Serve {
        std::fs::create_dir_all(data_dir).expect("create the data dir");
        let log = data_dir.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let file = std::fs::File::create(&log).expect("create the log");
        let child = Command::new(binary())
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--http", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start ferry serve");
        let mut url = String::new();
        wait_for("ferry serve to listen", Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match text.split("listening on ").nth(1) {
                Some(rest) => {
                    url = rest.lines().next().unwrap_or_default().trim().to_string();
                    true
                }
                None => false,
            }
        });
        // The SQL line comes before the HTTP one.
        let sql_port = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .split("sql on postgres://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|port| port.parse().ok());
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Serve {
            child,
            data_dir: data_dir.to_path_buf(),
            log,
            url,
            sql_port,
            agent,
        }
    }

    /// Runs `sql` with `psql` against the SQL control plane (`-XAt`, `ON_ERROR_STOP`,
    /// `VERBOSITY=verbose` so that errors show their SQLSTATE), with `env` set (`PGSSLMODE` is `disable` unless `env` says).
    pub fn psql(&self, sql: &str, env: &[(&str, &str)]) -> std::process::Output {
        let port = self.sql_port.expect("ferry serve was started with --pg");
        let bin = crate::postgres_bin_dir().expect("PostgreSQL's binaries");
        Command::new(crate::psql_path(&bin))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-v",
                "VERBOSITY=verbose",
            ])
            .arg(format!(
                "host=127.0.0.1 port={port} user=ferry dbname=ferry"
            ))
            .args(["-c", sql])
            .env("PGSSLMODE", "disable")
            .env_remove("PGPASSWORD")
            .envs(env.iter().copied())
            .output()
            .expect("run psql")
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it with SIGKILL (no chance to tidy up) and waits for it to be gone.
    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.data_dir.clone()
    }

    fn answer(&self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
        let mut response = result.expect("the HTTP request reaches ferry serve");
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Answer { status, body, text }
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Answer {
        self.answer(self.agent.get(format!("{}{path}", self.url)).call())
    }

    /// `POST path` with `body` of `content_type` (empty when `None`).
    pub fn post(&self, path: &str, body: Option<(&str, &str)>) -> Answer {
        let request = self.agent.post(format!("{}{path}", self.url));
        self.answer(match body {
            Some((content_type, body)) => request.header("Content-Type", content_type).send(body),
            None => request.send_empty(),
        })
    }

    /// `PUT path` with a JSON body.
    pub fn put(&self, path: &str, json: &str) -> Answer {
        self.answer(
            self.agent
                .put(format!("{}{path}", self.url))
                .header("Content-Type", "application/json")
                .send(json),
        )
    }

    /// `PATCH path` with a body of `content_type`.
    pub fn patch(&self, path: &str, content_type: &str, body: &str) -> Answer {
        self.answer(
            self.agent
                .patch(format!("{}{path}", self.url))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> Answer {
        self.answer(self.agent.delete(format!("{}{path}", self.url)).call())
    }

    /// Creates job `name` from `toml` (the job file) and returns the answer.
    pub fn create(&self, name: &str, toml: &str) -> Answer {
        self.post(
            &format!("/v1/jobs?name={name}"),
            Some(("application/toml", toml)),
        )
    }

    /// Job `name`'s status document.
    pub fn job(&self, name: &str) -> Value {
        let answer = self.get(&format!("/v1/jobs/{name}"));
        assert_eq!(answer.status, 200, "GET /v1/jobs/{name}: {answer:?}");
        answer.body
    }

    /// Waits until job `name`'s status document satisfies `condition`, failing the test
    /// after `limit` with the last document and the server's log.
    pub fn wait_job(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        mut condition: impl FnMut(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let doc = self.job(name);
            if condition(&doc) {
                return doc;
            }
            if std::time::Instant::now() > deadline {
                panic!(
                    "job {name} did not get {what} within {limit:?}; last status:\n{}\nlog:\n{}",
                    serde_json::to_string_pretty(&doc).unwrap(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until job `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str, limit: Duration) -> Value {
        self.wait_job(name, &format!("state {state}"), limit, |doc| {
            doc["state"] == state
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
