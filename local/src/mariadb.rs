//! Real MariaDB servers: each [`MariaServer`] is a fresh data directory
//! (`mariadb-install-db`) in its own temp dir, `mariadbd` listening only on 127.0.0.1 on a
//! free port, with what binlog CDC needs (ROW format, full row images and metadata, GTID
//! strict mode) and durability switched off for speed. Stopped and removed when dropped, also
//! when a test panics. With TLS ([`MariaServer::start_with_tls`]) TCP clients must use it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, run, TestkitError, TlsFiles};

/// The account every MariaDB test server has, reachable over TCP from 127.0.0.1 with no
/// password and every privilege.
pub const MARIADB_USER: &str = "ferry";

const INSTALL_HINT: &str = "run: apt-get install -y mariadb-server mariadb-client";

/// A running MariaDB server owned by this process.
#[derive(Debug)]
pub struct MariaServer {
    dir: TempDir,
    port: u16,
    server_id: u32,
    /// The copies of the TLS files the server serves, in its dir.
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

fn program(name: &str) -> Result<PathBuf, TestkitError> {
    crate::program(name, INSTALL_HINT)
}

impl MariaServer {
    /// Creates and starts a fresh server with replication `server_id` 1.
    pub fn start() -> Result<MariaServer, TestkitError> {
        Self::start_with_id(1)
    }

    /// Creates and starts a fresh server with replication id `server_id` (two servers that
    /// replicate into each other need different ids). Tries a few ports in case another
    /// process takes the free one first.
    pub fn start_with_id(server_id: u32) -> Result<MariaServer, TestkitError> {
        MariaServer::start_fresh(server_id, None)
    }

    /// [`MariaServer::start`] with TLS on, serving `files` (copied into the server's dir), and
    /// `require_secure_transport`: a TCP client without TLS is refused (the unix socket is
    /// still let in).
    pub fn start_with_tls(files: &TlsFiles) -> Result<MariaServer, TestkitError> {
        MariaServer::start_fresh(1, Some(files))
    }

    /// Creates and starts a fresh server, with TLS when `files` are given.
    fn start_fresh(server_id: u32, files: Option<&TlsFiles>) -> Result<MariaServer, TestkitError> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-mariadb-")
            .tempdir()?;
        // mariadbd runs as root (`user = root`): the copies need no other owner.
        let tls = files
            .map(|files| files.copy_into(dir.path(), None))
            .transpose()?;
        let mut server = MariaServer {
            dir,
            port: 0,
            server_id,
            tls,
            child: None,
        };
        fs::create_dir_all(server.dir.path().join("tmp"))?;
        // Our own option file only (--defaults-file first): the machine's my.cnf and other
        // servers' temp files stay out of it.
        server.write_options()?;
        run(Command::new(program("mariadb-install-db")?)
            .arg(format!("--defaults-file={}", server.options().display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]))?;
        let mut last_error = None;
        for _ in 0..5 {
            server.port = free_port()?;
            match server.launch() {
                Ok(()) => {
                    server.sql_as_root(&format!(
                        "CREATE USER '{MARIADB_USER}'@'127.0.0.1';
                         GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'127.0.0.1' WITH GRANT OPTION;"
                    ))?;
                    return Ok(server);
                }
                Err(error) => {
                    server.kill();
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("at least one attempt"))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    fn options(&self) -> PathBuf {
        self.dir.path().join("my.cnf")
    }

    /// Writes the option file for the current port.
    fn write_options(&self) -> Result<(), TestkitError> {
        let tls = match &self.tls {
            Some(tls) => format!(
                "ssl_cert = {}\nssl_key = {}\nssl_ca = {}\nrequire_secure_transport = ON\n",
                tls.cert.display(),
                tls.key.display(),
                tls.ca.display()
            ),
            None => String::new(),
        };
        fs::write(
            self.options(),
            format!(
                "[mariadbd]\nuser = root\ndatadir = {}\nsocket = {}\nport = {}\n\
                 bind-address = 127.0.0.1\nskip-name-resolve\n\
                 server_id = {}\nlog_bin = {}\nbinlog_format = ROW\nbinlog_row_image = FULL\n\
                 binlog_row_metadata = FULL\ngtid_strict_mode = 1\n\
                 innodb_flush_log_at_trx_commit = 0\nsync_binlog = 0\n\
                 innodb_buffer_pool_size = 128M\ninnodb_log_file_size = 64M\n\
                 log_error = {}\npid_file = {}\ntmpdir = {}\n{tls}",
                self.data_dir().display(),
                self.socket().display(),
                self.port,
                self.server_id,
                self.dir.path().join("binlog").display(),
                self.dir.path().join("server.log").display(),
                self.dir.path().join("mariadbd.pid").display(),
                self.dir.path().join("tmp").display(),
            ),
        )?;
        Ok(())
    }

    /// Writes the option file for the current port and starts `mariadbd`, waiting until it
    /// answers.
    fn launch(&mut self) -> Result<(), TestkitError> {
        self.write_options()?;
        let options = self.options();
        // --defaults-file must come first.
        let child = Command::new(program("mariadbd")?)
            .arg(format!("--defaults-file={}", options.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        // Kept apart while waiting: the checks borrow the server.
        let mut child = Some(child);
        let answered = crate::wait_until_answering(
            &mut child,
            "mariadbd",
            Duration::from_secs(60),
            || self.log(),
            || self.sql_as_root("SELECT 1").is_ok(),
        );
        self.child = child;
        answered
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Runs SQL as root over the server's socket.
    fn sql_as_root(&self, sql: &str) -> Result<String, TestkitError> {
        let output = run(Command::new(program("mariadb")?)
            .arg(format!("--socket={}", self.socket().display()))
            .args(["--user=root", "--default-character-set=utf8mb4"])
            .args(["--batch", "--skip-column-names", "-e", sql]))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The replication id the server runs with.
    pub fn server_id(&self) -> u32 {
        self.server_id
    }

    /// A connection URL for `database` as [`MARIADB_USER`].
    pub fn url(&self, database: &str) -> String {
        format!("mysql://{MARIADB_USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs SQL in `database` with the `mariadb` client over TCP as [`MARIADB_USER`] (stops
    /// at the first error) and returns the rows it printed, tab-separated, NULL as `NULL`.
    /// On a TLS server the client uses TLS without checking the certificate, so this works
    /// whichever one it serves.
    pub fn sql(&self, database: &str, sql: &str) -> Result<String, TestkitError> {
        let mut command = Command::new(program("mariadb")?);
        command
            .args(["--protocol=TCP", "--host=127.0.0.1"])
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={MARIADB_USER}"));
        if self.tls.is_some() {
            command.arg("--ssl");
        }
        let output = run(command.args([
            "--default-character-set=utf8mb4",
            "--batch",
            "--skip-column-names",
            "--database",
            database,
            "-e",
            sql,
        ]))?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Creates a database.
    pub fn create_database(&self, name: &str) -> Result<(), TestkitError> {
        self.sql_as_root(&format!("CREATE DATABASE `{name}`"))?;
        Ok(())
    }

    /// Restarts the server on the same port (a clean shutdown: open connections are cut).
    pub fn restart(&mut self) -> Result<(), TestkitError> {
        self.shutdown();
        self.launch()
    }

    /// Stops the server: a clean shutdown, killed if it takes more than 30 s.
    pub fn stop(&mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = self.sql_as_root("SHUTDOWN");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaServer {
    fn drop(&mut self) {
        // Nothing to keep: an immediate stop is as good as a clean one.
        self.kill();
    }
}
