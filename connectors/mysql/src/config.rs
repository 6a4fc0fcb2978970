//! Where a MySQL/MariaDB server is and how to connect: a `mysql://` URL with its options
//! (TLS as `sslmode` says, through the rustls of `ferry-tls`; the password inline, from the
//! environment or a file), shown without its password, and the session settings every ferry
//! connection runs with.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ferry_engine::ConnectorOptions;
use ferry_tls::{SslMode, TlsSettings};
use mysql_async::prelude::Queryable;
use mysql_async::{ClientIdentity, Conn, DriverError, Opts, OptsBuilder, SslOpts};

use crate::error::MyError;

/// A MySQL/MariaDB server to connect to.
#[derive(Clone)]
pub struct MyEndpoint {
    /// With TLS as the settings ask (`None` in the driver under `disable`).
    opts: Opts,
    /// The same without TLS, for `prefer` against a server that offers none.
    plain: Opts,
    display: String,
    tls: TlsSettings,
    /// Under `prefer`: the server said it has no TLS, so connections go plain.
    no_tls: Arc<AtomicBool>,
}

impl std::fmt::Debug for MyEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the driver's options: they hold the password.
        f.write_str(&self.display)
    }
}

/// What every ferry session sets: utf8mb4, so text arrives as UTF-8 whatever the column's
/// charset; UTC, so TIMESTAMP values arrive as UTC instants; strict mode, so a value that does
/// not fit its target column is an error, never silently cut or clamped (and no mode that
/// would change what a SELECT returns, such as ANSI_QUOTES or NO_BACKSLASH_ESCAPES).
const SESSION_SETUP: [&str; 3] = [
    "SET NAMES utf8mb4",
    "SET time_zone = '+00:00'",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
];

impl MyEndpoint {
    /// Parses `mysql://user[:password]@host[:port][/database][?sslmode=…]` (also
    /// `mariadb://`) with the TLS and password options of job side `side` (`source`,
    /// `sink`), which it takes from `options`; the rest is left for the caller.
    pub fn parse(
        url: &str,
        options: &mut ConnectorOptions,
        side: &str,
    ) -> Result<MyEndpoint, ferry_engine::Error> {
        let prepared = ferry_tls::prepare(url, options, side, SslMode::Prefer)?;
        let url = prepared.url.expose();
        let normalized = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_string(),
        };
        let field = format!("{side}.url");
        let opts = Opts::from_url(&normalized).map_err(|e| MyError::Url {
            field: field.clone(),
            message: e.to_string(),
        })?;
        let display = format!(
            "{}:{}{}",
            opts.ip_or_hostname(),
            opts.tcp_port(),
            opts.db_name()
                .map(|db| format!("/{db}"))
                .unwrap_or_default()
        );
        let tls = prepared.tls;
        if opts.ssl_opts().is_some() {
            return Err(MyError::Url {
                field,
                message: "takes TLS settings as sslmode, sslrootcert, sslcert and sslkey (as libpq names them), not the driver's require_ssl/verify_ca/verify_identity".into(),
            }
            .into());
        }
        let plain: Opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .init(SESSION_SETUP.to_vec())
            .into();
        let opts = match ssl_opts(&tls)? {
            None => plain.clone(),
            Some(ssl) => OptsBuilder::from_opts(plain.clone()).ssl_opts(ssl).into(),
        };
        Ok(MyEndpoint {
            opts,
            plain,
            display,
            tls,
            no_tls: Arc::new(AtomicBool::new(false)),
        })
    }

    /// `host:port[/database]`, never the password.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The database the URL names, if any.
    pub fn database(&self) -> Option<&str> {
        self.opts.db_name()
    }

    /// The server this endpoint reaches, as the server says: its host name, port, data
    /// directory and server id together (MariaDB has no server UUID). A MySQL server's
    /// databases are the schemas of its table names, so the identity has no database.
    pub async fn identity(&self) -> Result<ferry_engine::ServerIdentity, MyError> {
        let mut conn = self.connect().await?;
        let row: Option<(String, u32, String, u64)> = conn
            .query_first("SELECT @@hostname, @@port, @@datadir, @@server_id")
            .await
            .map_err(self.error("asking the server who it is"))?;
        let _ = conn.disconnect().await;
        let (host, port, datadir, server_id) = row.unwrap_or_default();
        Ok(ferry_engine::ServerIdentity {
            engine: crate::types::ENGINE.into(),
            server: format!("{host}:{port} {datadir} id {server_id}"),
            database: None,
        })
    }

    /// Whether a connection to this endpoint is encrypted and how its certificate is
    /// checked, in words, as the server sees the connection (`Ssl_version`, `Ssl_cipher`).
    pub async fn transport(&self) -> Result<String, MyError> {
        let mut conn = self.connect().await?;
        let rows: Vec<(String, String)> = conn
            .query("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
            .await
            .map_err(self.error("asking the server about the connection's TLS"))?;
        let _ = conn.disconnect().await;
        let value = |name: &str| {
            rows.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let cipher = value("Ssl_cipher");
        let negotiated = (!cipher.is_empty()).then(|| format!("{} {cipher}", value("Ssl_version")));
        Ok(self.tls.describe(negotiated.as_deref()))
    }

    /// A new connection with the session set up.
    pub async fn connect(&self) -> Result<Conn, MyError> {
        if self.no_tls.load(Ordering::Relaxed) {
            return Conn::new(self.plain.clone())
                .await
                .map_err(self.error("connecting"));
        }
        match Conn::new(self.opts.clone()).await {
            Ok(conn) => Ok(conn),
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
                if self.tls.mode.insists() {
                    return Err(MyError::Tls {
                        endpoint: self.display.clone(),
                        message: format!(
                            "the server does not offer TLS, and sslmode={} requires it; turn TLS on at the server (ssl_cert, ssl_key in its [mysqld] options), or set sslmode=prefer in {}.url to allow an unencrypted connection",
                            self.tls.mode, self.tls.field
                        ),
                    });
                }
                // `prefer`, as libpq does it: plain when the server has no TLS.
                self.no_tls.store(true, Ordering::Relaxed);
                Conn::new(self.plain.clone())
                    .await
                    .map_err(self.error("connecting"))
            }
            Err(error) => match ferry_tls::explain(&error, &self.display, &self.tls) {
                Some(message) => Err(MyError::Tls {
                    endpoint: self.display.clone(),
                    message,
                }),
                None => Err(self.error("connecting")(error)),
            },
        }
    }

    /// Maps a driver error to one naming this server and what ferry was doing.
    pub(crate) fn error(
        &self,
        context: impl Into<String>,
    ) -> impl FnOnce(mysql_async::Error) -> MyError + '_ {
        let context = context.into();
        move |source| MyError::Query {
            endpoint: self.display.clone(),
            context,
            source,
        }
    }
}

/// Runs `statement`, dropping any result.
pub(crate) async fn execute(
    conn: &mut Conn,
    endpoint: &MyEndpoint,
    statement: &str,
    context: &str,
) -> Result<(), MyError> {
    conn.query_drop(statement)
        .await
        .map_err(endpoint.error(context))
}

/// `name` quoted as a MySQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `database.table` with both parts quoted.
pub(crate) fn quote_table(id: &ferry_engine::TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

/// The driver's TLS options for `tls`, `None` under `disable`. The driver builds its own rustls
/// configuration (on the process's provider, ring, installed by `ferry-tls`); it checks the
/// chain and the name together, so `verify-ca` (the chain without the name) is not offered.
fn ssl_opts(tls: &TlsSettings) -> Result<Option<SslOpts>, ferry_engine::Error> {
    // Read now, so that a missing or unreadable file is an error before anything connects.
    tls.client_config()?;
    let ssl = SslOpts::default().with_disable_built_in_roots(true);
    let ssl = match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => ssl.with_client_identity(Some(ClientIdentity::new(
            cert.clone().into(),
            key.clone().into(),
        ))),
        _ => ssl,
    };
    Ok(match tls.mode {
        SslMode::Disable => None,
        SslMode::Prefer | SslMode::Require => Some(ssl.with_danger_accept_invalid_certs(true)),
        SslMode::VerifyCa => {
            return Err(ferry_engine::Error::Config {
                field: format!("{}.sslmode", tls.field),
                message: "verify-ca is not available for MySQL yet (its driver, mysql_async 0.37, cannot check the CA without the host name); use sslmode=verify-full with the host name the server's certificate lists, or require to encrypt without checking".into(),
            })
        }
        SslMode::VerifyFull => {
            let roots = tls.root_cert.clone().unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
            Some(ssl.with_root_certs(vec![roots.into()]))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password_and_accept_mariadb() {
        let mut options = ConnectorOptions::empty("source.options");
        let endpoint = MyEndpoint::parse(
            "mariadb://u:secret@127.0.0.1:3307/shop",
            &mut options,
            "source",
        )
        .unwrap();
        assert!(!format!("{endpoint:?}").contains("secret"));
        assert_eq!(endpoint.display(), "127.0.0.1:3307/shop");
        assert_eq!(endpoint.database(), Some("shop"));
        let error = MyEndpoint::parse("mysql://u@127.0.0.1:notaport/x", &mut options, "source")
            .unwrap_err();
        assert!(error
            .to_string()
            .starts_with("source.url: not a valid MySQL URL"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
