//! Real Redis servers: each [`RedisServer`] is `redis-server` with its own option file and
//! working directory in a temp dir, listening only on 127.0.0.1 on a free port, persistence
//! off unless asked for, and a full sync to a replica starting at once (no diskless delay).
//! Killed and removed when dropped, also when a test panics. With TLS
//! ([`RedisServer::start_with_tls`]) it listens on a TLS port only.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::{free_port, run, TestkitError, TlsFiles};

const INSTALL_HINT: &str = "run: apt-get install -y redis-server redis-tools";

/// A running Redis server owned by this process.
#[derive(Debug)]
pub struct RedisServer {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    /// Lines added to the option file.
    extra: String,
    /// The copies of the TLS files the server serves, in its dir.
    tls: Option<TlsFiles>,
}

fn program(name: &str) -> Result<PathBuf, TestkitError> {
    crate::program(name, INSTALL_HINT)
}

impl RedisServer {
    /// Starts a fresh, empty server. Tries a few ports in case another process takes the free
    /// one first.
    pub fn start() -> Result<RedisServer, TestkitError> {
        RedisServer::start_with("")
    }

    /// [`RedisServer::start`] with `extra` lines in its option file (`rename-command …`).
    pub fn start_with(extra: &str) -> Result<RedisServer, TestkitError> {
        RedisServer::start_fresh(extra, None)
    }

    /// [`RedisServer::start`] with TLS only: no plain port, a TLS port ([`RedisServer::port`])
    /// serving `files` (copied into the server's dir). Client certificates are checked
    /// against `files.ca` when sent, not required (`tls-auth-clients optional`).
    pub fn start_with_tls(files: &TlsFiles) -> Result<RedisServer, TestkitError> {
        RedisServer::start_fresh("", Some(files))
    }

    /// Creates and starts a fresh server, with TLS when `files` are given.
    fn start_fresh(extra: &str, files: Option<&TlsFiles>) -> Result<RedisServer, TestkitError> {
        let dir = tempfile::Builder::new().prefix("ferry-redis-").tempdir()?;
        // redis-server runs as this process's user: the copies need no other owner.
        let tls = files
            .map(|files| files.copy_into(dir.path(), None))
            .transpose()?;
        let mut server = RedisServer {
            dir,
            port: 0,
            child: None,
            extra: extra.to_string(),
            tls,
        };
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(error) => {
                    server.kill();
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn launch(&mut self) -> Result<(), TestkitError> {
        let options = self.dir.path().join("redis.conf");
        let listen = match &self.tls {
            Some(tls) => format!(
                "port 0\ntls-port {}\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-auth-clients optional",
                self.port,
                tls.cert.display(),
                tls.key.display(),
                tls.ca.display()
            ),
            None => format!("port {}", self.port),
        };
        fs::write(
            &options,
            format!(
                "bind 127.0.0.1\n{listen}\ndir {}\nsave \"\"\nappendonly no\n\
                 repl-diskless-sync-delay 0\nlogfile {}\ndaemonize no\n{}\n",
                self.dir.path().display(),
                self.dir.path().join("server.log").display(),
                self.extra
            ),
        )?;
        let child = Command::new(program("redis-server")?)
            .arg(&options)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Kept apart while waiting: the checks borrow the server.
        let mut child = Some(child);
        let answered = crate::wait_until_answering(
            &mut child,
            "redis-server",
            Duration::from_secs(30),
            || self.log(),
            || self.cli(&["PING"]).is_ok_and(|out| out.trim() == "PONG"),
        );
        self.child = child;
        answered
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The port the server listens on (127.0.0.1): with TLS, the TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's working directory (where `SAVE` writes `dump.rdb`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `redis://127.0.0.1:port/db`.
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// `rediss://localhost:port/db`: a TLS server's URL by host name, as a client that checks
    /// the certificate's name needs it.
    pub fn tls_url(&self, db: u32) -> String {
        format!("rediss://localhost:{}/{db}", self.port)
    }

    /// `redis-cli` pointed at the server. With TLS it does not check the certificate, so the
    /// helpers work whichever one the server serves.
    fn cli_command(&self) -> Result<Command, TestkitError> {
        let mut command = Command::new(program("redis-cli")?);
        command
            .args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string());
        if self.tls.is_some() {
            command.args(["--tls", "--insecure"]);
        }
        Ok(command)
    }

    /// Runs one command with `redis-cli` (arguments passed as they are, no shell) and returns
    /// its raw output.
    pub fn cli(&self, args: &[&str]) -> Result<String, TestkitError> {
        let output = run(self.cli_command()?.args(args))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The server's replication offset (`master_repl_offset`): how far its replication
    /// stream reaches.
    pub fn replication_offset(&self) -> Result<u64, TestkitError> {
        let info = self.cli(&["INFO", "replication"])?;
        info.lines()
            .find_map(|l| l.strip_prefix("master_repl_offset:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| TestkitError::Command {
                command: "INFO replication".into(),
                output: info.clone(),
            })
    }

    /// Sends `commands` (one per line, redis-cli syntax) in one `redis-cli` run, against
    /// database `db`.
    pub fn commands(&self, db: u32, commands: &str) -> Result<String, TestkitError> {
        let mut child = self
            .cli_command()?
            .args(["-n", &db.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(commands.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        if !output.status.success() {
            return Err(TestkitError::Command {
                command: "redis-cli".into(),
                output: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
