//! ferry-local: throwaway PostgreSQL, MariaDB and Redis servers on this machine, for `ferry
//! demo`, the test harness (`ferry-testkit` re-exports them) and the benchmarks. (MariaDB: see
//! [`MariaServer`]; Redis: [`RedisServer`].)
//!
//! Each [`PgServer`] is a fresh cluster (`initdb`) in its own temp dir, listening only on
//! 127.0.0.1 on a free port, with the settings logical replication needs
//! (`wal_level=logical`) and durability switched off for speed. It is stopped and its
//! directory removed when dropped, also when a test panics. PostgreSQL refuses to run as
//! root, so as root the server runs as the unprivileged `postgres` user.
//!
//! Each server can also be started with TLS on ([`PgServer::start_with_tls`],
//! [`MariaServer::start_with_tls`], [`RedisServer::start_with_tls`]), serving the certificate
//! named by a [`TlsFiles`]; TCP clients must then use TLS.
#![warn(missing_docs)]

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

mod mariadb;
mod redis;
mod tls;
pub use mariadb::{MariaServer, MARIADB_USER};
pub use redis::RedisServer;
pub use tls::TlsFiles;

/// Why a test server could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// A needed program is not installed.
    #[error("{program} not found ({hint})")]
    Missing {
        /// The program.
        program: String,
        /// How to install it.
        hint: String,
    },
    /// A command failed.
    #[error("{command} failed: {output}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr/stdout or log.
        output: String,
    },
    /// A file operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A running PostgreSQL server owned by this process.
#[derive(Debug)]
pub struct PgServer {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    run_as: Option<String>,
    /// The copies of the TLS files the server serves, in its dir.
    tls: Option<TlsFiles>,
    running: bool,
}

/// The superuser every test server has (trust authentication on loopback).
pub const SUPERUSER: &str = "ferry";

const INSTALL_HINT: &str = "run: apt-get install -y postgresql";

fn postgres_bin() -> Result<PathBuf, TestkitError> {
    if let Ok(dir) = std::env::var("FERRY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").exists().then_some((version, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| TestkitError::Missing {
            program: "PostgreSQL server binaries (initdb, pg_ctl)".into(),
            hint: INSTALL_HINT.into(),
        })
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// The uid and gid of a user, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

/// A port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16, TestkitError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `name` from the directories Debian installs server programs into; `hint` says how to
/// install it when it is missing.
pub(crate) fn program(name: &str, hint: &str) -> Result<PathBuf, TestkitError> {
    ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .ok_or_else(|| TestkitError::Missing {
            program: name.into(),
            hint: hint.into(),
        })
}

/// Waits up to `limit` until a just-started server `program` answers (`answers`), failing
/// with its log (`log`) when it exits or stays silent. An exited child is taken out of
/// `child`.
pub(crate) fn wait_until_answering(
    child: &mut Option<std::process::Child>,
    program: &str,
    limit: std::time::Duration,
    log: impl Fn() -> String,
    mut answers: impl FnMut() -> bool,
) -> Result<(), TestkitError> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(running) = child.as_mut() {
            if let Ok(Some(status)) = running.try_wait() {
                *child = None;
                return Err(TestkitError::Command {
                    command: program.into(),
                    output: format!("exited with {status}\nserver log:\n{}", log()),
                });
            }
        }
        if answers() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(TestkitError::Command {
                command: program.into(),
                output: format!(
                    "did not answer within {} s\nserver log:\n{}",
                    limit.as_secs(),
                    log()
                ),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

pub(crate) fn run(command: &mut Command) -> Result<Output, TestkitError> {
    let described = format!("{command:?}");
    let output = command.output().map_err(|e| TestkitError::Command {
        command: described.clone(),
        output: e.to_string(),
    })?;
    if !output.status.success() {
        return Err(TestkitError::Command {
            command: described,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            ),
        });
    }
    Ok(output)
}

impl PgServer {
    /// Creates and starts a fresh server. Tries a few ports in case another process takes the
    /// free one first.
    pub fn start() -> Result<PgServer, TestkitError> {
        PgServer::start_fresh(None)
    }

    /// [`PgServer::start`] with TLS on, serving `files` (copied into the server's dir): TCP
    /// clients on 127.0.0.1 get in only over TLS (`hostssl`, also for replication), a plain
    /// connection is rejected; the unix socket stays open as before.
    pub fn start_with_tls(files: &TlsFiles) -> Result<PgServer, TestkitError> {
        PgServer::start_fresh(Some(files))
    }

    /// Creates and starts a fresh server, with TLS when `files` are given.
    fn start_fresh(files: Option<&TlsFiles>) -> Result<PgServer, TestkitError> {
        let bin = postgres_bin()?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = tempfile::Builder::new().prefix("ferry-pg-").tempdir()?;
        let owner = match &run_as {
            Some(user) => Some(user_ids(user).ok_or_else(|| TestkitError::Missing {
                program: format!("the unprivileged user '{user}' PostgreSQL runs as"),
                hint: INSTALL_HINT.into(),
            })?),
            None => None,
        };
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        }
        let tls = files
            .map(|files| files.copy_into(dir.path(), owner))
            .transpose()?;
        let mut server = PgServer {
            dir,
            bin,
            port: 0,
            run_as,
            tls,
            running: false,
        };
        server.initdb()?;
        if server.tls.is_some() {
            server.require_tls_over_tcp()?;
        }
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.pg_ctl_start() {
                Ok(()) => {
                    server.running = true;
                    return Ok(server);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.arg("-u").arg(user).arg("--").arg(path);
                command
            }
            None => Command::new(path),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn initdb(&self) -> Result<(), TestkitError> {
        run(self.command("initdb").arg("-D").arg(self.data_dir()).args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]))?;
        Ok(())
    }

    /// Replaces initdb's pg_hba.conf (trust everywhere) by one that lets TCP clients in only
    /// over TLS, still with trust; the unix socket stays as it was.
    fn require_tls_over_tcp(&self) -> Result<(), TestkitError> {
        // `all` does not match replication connections: they have lines of their own.
        let rules = "local all all trust\nlocal replication all trust\n\
                     hostssl all all 127.0.0.1/32 trust\nhostssl replication all 127.0.0.1/32 trust\n\
                     hostnossl all all 127.0.0.1/32 reject\n\
                     hostnossl replication all 127.0.0.1/32 reject\n";
        // Written in place: the file keeps the owner initdb gave it.
        fs::write(self.data_dir().join("pg_hba.conf"), rules)?;
        Ok(())
    }

    fn pg_ctl_start(&self) -> Result<(), TestkitError> {
        // Settings go in a file included last, rewritten per attempt with the port.
        let mut settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             wal_level = logical\nmax_replication_slots = 16\nmax_wal_senders = 16\n\
             fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
             shared_buffers = 128MB\nmax_connections = 200\n",
            self.port,
            self.dir.path().display()
        );
        if let Some(tls) = &self.tls {
            settings.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nssl_ca_file = '{}'\n",
                tls.cert.display(),
                tls.key.display(),
                tls.ca.display()
            ));
        }
        let conf = self.data_dir().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)?;
        if let Some(at) = text.find("\n# ferry test settings\n") {
            text.truncate(at);
        }
        text.push_str("\n# ferry test settings\n");
        text.push_str(&settings);
        fs::File::create(&conf)?.write_all(text.as_bytes())?;
        let log = self.dir.path().join("server.log");
        let result = run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "start"]));
        result
            .map(|_| ())
            .map_err(|error| match fs::read_to_string(&log) {
                Ok(log) => TestkitError::Command {
                    command: "pg_ctl start".into(),
                    output: format!("{error}\nserver log:\n{log}"),
                },
                Err(_) => error,
            })
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL in `database` with psql (stops at the first error) and returns the rows it
    /// printed, unaligned, `|`-separated. (On a TLS server psql's default `sslmode=prefer`
    /// takes TLS without checking the certificate, so this works whichever one it serves.)
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, TestkitError> {
        let output = run(Command::new(psql_path(&self.bin))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER, "-d", database, "-c", sql]))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates a database (a fresh one per test keeps tests independent).
    pub fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""))?;
        Ok(())
    }

    /// Restarts the server on the same port (a fast shutdown: open connections are cut,
    /// as when an operator restarts it).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        let log = self.dir.path().join("server.log");
        run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log)
            .args(["-m", "fast", "-w", "-t", "60", "restart"]))?;
        self.running = true;
        Ok(())
    }

    /// Stops the server now (dropping does the same).
    pub fn stop(&mut self) -> Result<(), TestkitError> {
        if self.running {
            self.running = false;
            run(self.command("pg_ctl").arg("-D").arg(self.data_dir()).args([
                "-m",
                "immediate",
                "-w",
                "stop",
            ]))?;
        }
        Ok(())
    }
}

/// psql: next to the server binaries, else on PATH.
pub fn psql_path(bin: &Path) -> PathBuf {
    let beside = bin.join("psql");
    if beside.exists() {
        beside
    } else {
        PathBuf::from("psql")
    }
}

/// The directory of the PostgreSQL server binaries this kit uses.
pub fn postgres_bin_dir() -> Result<PathBuf, TestkitError> {
    postgres_bin()
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("ferry-testkit: stopping the test server failed: {error}");
        }
    }
}
