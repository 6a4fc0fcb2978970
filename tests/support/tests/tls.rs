//! The harness's TLS servers, proved with the servers' own client tools: PostgreSQL, MariaDB
//! and Redis started with certificates made at test time encrypt what a client that checks
//! the certificate sends, refuse a client that does not use TLS, and a client that trusts
//! another CA, expects another name or is served an expired certificate refuses them. The
//! harness's own helpers (psql, sql, cli) keep working on them.

use std::path::Path;
use std::process::{Command, Output};

use ferry_testkit::cli::describe;
use ferry_testkit::tls::TestCerts;
use ferry_testkit::{
    postgres_bin_dir, psql_path, MariaServer, PgServer, RedisServer, MARIADB_USER, SUPERUSER,
};

fn output(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("run {command:?}: {e}"))
}

/// Runs `command`, which must succeed, and returns its stdout.
fn succeeds(command: &mut Command) -> String {
    let output = output(command);
    assert!(
        output.status.success(),
        "{command:?}: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `command`, which must fail, and returns its stderr and stdout.
fn fails(command: &mut Command) -> String {
    let output = output(command);
    assert!(
        !output.status.success(),
        "{command:?}: {}",
        describe(&output)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    )
}

/// psql on `conninfo` (a libpq connection string), printing rows unaligned.
fn psql(conninfo: &str, sql: &str) -> Command {
    let mut command = Command::new(psql_path(&postgres_bin_dir().unwrap()));
    command
        .args([
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            conninfo,
            "-c",
            sql,
        ])
        // The machine's settings stay out of it: only what the conninfo says.
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT");
    command
}

fn pg_conninfo(server: &PgServer, options: &str) -> String {
    format!(
        "host=localhost port={} user={SUPERUSER} dbname=postgres {options}",
        server.port()
    )
}

fn verify_full(ca: &Path) -> String {
    format!("sslmode=verify-full sslrootcert={}", ca.display())
}

const SSL_IN_USE: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[test]
fn postgres_serves_tls_only_and_clients_check_its_certificate() {
    let certs = TestCerts::generate();
    let server = PgServer::start_with_tls(&certs.server()).expect("start PostgreSQL with TLS");
    let verified = pg_conninfo(&server, &verify_full(&certs.ca()));
    assert_eq!(succeeds(&mut psql(&verified, SSL_IN_USE)).trim(), "t");
    // Replication connections too: over TLS in, plain refused.
    let replication = format!("{verified} replication=database");
    assert!(succeeds(&mut psql(&replication, "IDENTIFY_SYSTEM")).contains('|'));
    let plain = fails(&mut psql(
        &pg_conninfo(&server, "sslmode=disable"),
        SSL_IN_USE,
    ));
    assert!(plain.contains("no encryption"), "{plain}");
    let plain = fails(&mut psql(
        &pg_conninfo(&server, "sslmode=disable replication=database"),
        "IDENTIFY_SYSTEM",
    ));
    assert!(plain.contains("no encryption"), "{plain}");
    // The client certificate is taken: the session shows its name.
    let with_client_cert = format!(
        "{verified} sslcert={} sslkey={}",
        certs.client_cert().display(),
        certs.client_key().display()
    );
    let client_dn = "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(
        succeeds(&mut psql(&with_client_cert, client_dn)).trim(),
        "/CN=ferry"
    );
    let wrong_ca = fails(&mut psql(
        &pg_conninfo(&server, &verify_full(&certs.wrong_ca())),
        SSL_IN_USE,
    ));
    assert!(wrong_ca.contains("certificate verify failed"), "{wrong_ca}");
    // The harness's helper still works (TLS without checking the certificate).
    assert_eq!(server.psql("postgres", "SELECT 1").unwrap().trim(), "1");

    let wrong_host = PgServer::start_with_tls(&certs.wrong_host()).unwrap();
    let refused = fails(&mut psql(
        &pg_conninfo(&wrong_host, &verify_full(&certs.ca())),
        SSL_IN_USE,
    ));
    assert!(
        refused.contains("\"db.example.invalid\" does not match host name \"localhost\""),
        "{refused}"
    );
    // Signed by the CA all the same: a client checking only the chain gets in.
    let chain_only = pg_conninfo(
        &wrong_host,
        &format!("sslmode=verify-ca sslrootcert={}", certs.ca().display()),
    );
    assert_eq!(succeeds(&mut psql(&chain_only, SSL_IN_USE)).trim(), "t");

    let expired = PgServer::start_with_tls(&certs.expired()).unwrap();
    let refused = fails(&mut psql(
        &pg_conninfo(&expired, &verify_full(&certs.ca())),
        SSL_IN_USE,
    ));
    assert!(refused.contains("certificate verify failed"), "{refused}");
    assert_eq!(expired.psql("postgres", "SELECT 1").unwrap().trim(), "1");
}

/// The `mariadb` client over TCP to `server` as [`MARIADB_USER`] with `tls` options.
fn mariadb(server: &MariaServer, tls: &[String], sql: &str) -> Command {
    let mut command = Command::new("mariadb");
    command
        .args(["--no-defaults", "--protocol=TCP", "--host=127.0.0.1"])
        .arg(format!("--port={}", server.port()))
        .arg(format!("--user={MARIADB_USER}"))
        .args(tls)
        .args(["--batch", "--skip-column-names", "-e", sql]);
    command
}

fn verified(ca: &Path) -> Vec<String> {
    vec![
        "--ssl".into(),
        format!("--ssl-ca={}", ca.display()),
        "--ssl-verify-server-cert".into(),
    ]
}

const CIPHER: &str = "SHOW SESSION STATUS LIKE 'Ssl_cipher'";

#[test]
fn mariadb_serves_tls_only_and_clients_check_its_certificate() {
    let certs = TestCerts::generate();
    let server = MariaServer::start_with_tls(&certs.server()).expect("start MariaDB with TLS");
    let cipher = succeeds(&mut mariadb(&server, &verified(&certs.ca()), CIPHER));
    let cipher = cipher.trim().strip_prefix("Ssl_cipher\t").unwrap_or("");
    assert!(!cipher.is_empty(), "no cipher in use");
    // Refused after the handshake: MariaDB answers a user who would get in over TLS
    // "access denied" when require_secure_transport turns them away.
    let plain = fails(&mut mariadb(&server, &["--skip-ssl".into()], CIPHER));
    assert!(
        plain.contains("Access denied for user 'ferry'@'127.0.0.1'"),
        "{plain}"
    );
    // The server sends its CA along: the chain ends in a root the client does not trust.
    let wrong_ca = fails(&mut mariadb(&server, &verified(&certs.wrong_ca()), CIPHER));
    assert!(
        wrong_ca.contains("TLS/SSL error: self-signed certificate in certificate chain"),
        "{wrong_ca}"
    );
    // The client certificate is taken.
    let mut with_client_cert = verified(&certs.ca());
    with_client_cert.push(format!("--ssl-cert={}", certs.client_cert().display()));
    with_client_cert.push(format!("--ssl-key={}", certs.client_key().display()));
    let cipher = succeeds(&mut mariadb(&server, &with_client_cert, CIPHER));
    assert!(cipher.starts_with("Ssl_cipher\t"), "{cipher}");
    // The harness's helpers still work (TLS without checking the certificate; root over
    // the socket).
    assert_eq!(
        server
            .sql("mysql", "SELECT @@require_secure_transport")
            .unwrap()
            .trim(),
        "1"
    );
    server.create_database("app").unwrap();

    let wrong_host = MariaServer::start_with_tls(&certs.wrong_host()).unwrap();
    let refused = fails(&mut mariadb(&wrong_host, &verified(&certs.ca()), CIPHER));
    assert!(
        refused.contains("Validation of SSL server certificate failed"),
        "{refused}"
    );
    assert_eq!(wrong_host.sql("mysql", "SELECT 1").unwrap().trim(), "1");
}

/// `redis-cli` on `server`'s port with `tls` options.
fn redis_cli(server: &RedisServer, tls: &[&str], args: &[&str]) -> Command {
    let mut command = Command::new("redis-cli");
    command
        .args(["-h", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .args(tls)
        .args(args);
    command
}

#[test]
fn redis_serves_tls_only_and_clients_check_its_certificate() {
    let certs = TestCerts::generate();
    let server = RedisServer::start_with_tls(&certs.server()).expect("start Redis with TLS");
    let ca = certs.ca().display().to_string();
    let pong = succeeds(&mut redis_cli(
        &server,
        &["--tls", "--cacert", &ca],
        &["PING"],
    ));
    assert_eq!(pong.trim(), "PONG");
    let client_cert = certs.client_cert().display().to_string();
    let client_key = certs.client_key().display().to_string();
    let with_client_cert = [
        "--tls",
        "--cacert",
        &ca,
        "--cert",
        &client_cert,
        "--key",
        &client_key,
    ];
    let pong = succeeds(&mut redis_cli(&server, &with_client_cert, &["PING"]));
    assert_eq!(pong.trim(), "PONG");
    // No plain port: a client without TLS gets no answer. (redis-cli exits 0 on some
    // connection errors, so the answer is what counts.)
    let plain = output(&mut redis_cli(&server, &[], &["PING"]));
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("PONG"),
        "{}",
        describe(&plain)
    );
    let wrong_ca = certs.wrong_ca().display().to_string();
    let refused = output(&mut redis_cli(
        &server,
        &["--tls", "--cacert", &wrong_ca],
        &["PING"],
    ));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate verify failed"),
        "{}",
        describe(&refused)
    );
    // The harness's helpers still work, and the URL is for TLS by name.
    server.cli(&["SET", "key", "value"]).unwrap();
    assert_eq!(server.cli(&["GET", "key"]).unwrap().trim(), "value");
    assert_eq!(
        server.tls_url(2),
        format!("rediss://localhost:{}/2", server.port())
    );

    let expired = RedisServer::start_with_tls(&certs.expired()).unwrap();
    let refused = output(&mut redis_cli(
        &expired,
        &["--tls", "--cacert", &ca],
        &["PING"],
    ));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate verify failed"),
        "{}",
        describe(&refused)
    );
    assert_eq!(expired.cli(&["PING"]).unwrap().trim(), "PONG");
}
