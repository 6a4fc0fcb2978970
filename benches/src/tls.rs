//! `--tls` of `ferry-bench load` and `cdc`: the same servers with TLS on (certificates made
//! for the run; plain TCP refused), ferry's URLs to them checked with `verify-full`. The
//! baselines (psql, pgbench, pg_recvlogical) connect with libpq's default `sslmode=prefer`,
//! so they run over TLS too and the comparison stays like for like.

use ferry_engine::Error;
use ferry_local::{PgServer, SUPERUSER};
use ferry_testkit::tls::TestCerts;

use crate::load::failed;

/// A PostgreSQL server for a benchmark, with TLS when `certs` are given.
pub(crate) fn server(certs: Option<&TestCerts>) -> Result<PgServer, Error> {
    match certs {
        Some(certs) => PgServer::start_with_tls(&certs.server()),
        None => PgServer::start(),
    }
    .map_err(failed)
}

/// ferry's URL of `database` on `server`: over TLS checked with verify-full when `certs` are
/// given.
pub(crate) fn url(server: &PgServer, database: &str, certs: Option<&TestCerts>) -> String {
    match certs {
        Some(certs) => format!(
            "postgres://{SUPERUSER}@localhost:{}/{database}?sslmode=verify-full&sslrootcert={}",
            server.port(),
            certs.ca().display()
        ),
        None => server.url(database),
    }
}

/// The certificates for `--tls`, `None` without it.
pub(crate) fn certs(tls: bool) -> Option<TestCerts> {
    tls.then(TestCerts::generate)
}

/// How the servers are reached, for the results' first line.
pub(crate) fn label(certs: Option<&TestCerts>) -> &'static str {
    match certs {
        Some(_) => "over TLS (ferry: verify-full; baselines: libpq's prefer, TLS without a certificate check)",
        None => "over plain TCP",
    }
}
