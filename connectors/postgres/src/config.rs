//! Connection settings from a job's URL and options, and connecting (TLS as `sslmode` says,
//! through the one rustls stack of `ferry-tls`).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::ConnectorOptions;
use ferry_tls::{ClientConfig, SslMode, TlsSettings};
use pgwire_replication::{ReplicationClient, ReplicationConfig, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener};
use tokio_postgres::config::{Host, SslMode as DriverSslMode};
use tokio_postgres::{Client, Config, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;
use tracing::warn;

use crate::error::PgError;

/// How often the replication session tells the server what is applied (and wakes up when
/// idle): often enough that the server recycles WAL and lag stays visible.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// How long the replication relay waits for the replication client it was opened for.
const RELAY_WAIT: Duration = Duration::from_secs(60);

/// The protocol's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A PostgreSQL server and database to connect to.
#[derive(Clone)]
pub struct PgEndpoint {
    config: Config,
    display: String,
    tls: TlsSettings,
    /// The rustls configuration, `None` under `sslmode=disable`.
    client_config: Option<Arc<ClientConfig>>,
    /// The driver's TLS connector made from it, once.
    connector: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl PgEndpoint {
    /// Parses `postgres://user[:password]@host[:port]/database[?sslmode=…]` with the
    /// options of job side `side` (`source`, `sink`): TLS settings and `password_file`, which
    /// are all a PostgreSQL endpoint takes.
    pub fn parse(
        url: &str,
        mut options: ConnectorOptions,
        side: &str,
    ) -> Result<PgEndpoint, ferry_engine::Error> {
        let prepared = ferry_tls::prepare(url, &mut options, side, SslMode::Prefer)?;
        options.finish(ferry_tls::OPTIONS)?;
        let field = format!("{side}.url");
        let mut config = Config::from_str(prepared.url.expose()).map_err(|e| PgError::Url {
            field: field.clone(),
            message: e.to_string(),
        })?;
        if config.get_hosts().is_empty() {
            return Err(PgError::Url {
                field,
                message: "no host".into(),
            }
            .into());
        }
        if config.get_dbname().is_none() {
            return Err(PgError::Url {
                field,
                message: "no database name".into(),
            }
            .into());
        }
        config.application_name("ferry");
        config.ssl_mode(match prepared.tls.mode {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Prefer => DriverSslMode::Prefer,
            _ => DriverSslMode::Require,
        });
        let host = match &config.get_hosts()[0] {
            Host::Tcp(host) => host.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let display = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        let client_config = prepared.tls.client_config()?;
        let connector = client_config
            .as_deref()
            .map(|tls| MakeRustlsConnect::new(tls.clone()));
        Ok(PgEndpoint {
            config,
            display,
            tls: prepared.tls,
            client_config,
            connector,
        })
    }

    /// The database's name.
    pub fn database(&self) -> Option<&str> {
        self.config.get_dbname()
    }

    /// `host:port/database`, safe to print (no password).
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The server and database this endpoint reaches, as the server says: the postmaster's
    /// start time (to the microsecond; a clone made from a base backup has its own, unlike
    /// its `system_identifier`) and the database's oid. Readable by any role.
    pub async fn identity(&self) -> Result<ferry_engine::ServerIdentity, PgError> {
        let client = self.connect().await?;
        let row = client
            .query_one(
                // As a number: text would follow the session's TimeZone and DateStyle.
                "SELECT extract(epoch FROM pg_postmaster_start_time())::text, oid::text FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .map_err(self.query_error("asking the server who it is"))?;
        Ok(ferry_engine::ServerIdentity {
            engine: crate::types::ENGINE.into(),
            server: row.get(0),
            database: Some(row.get(1)),
        })
    }

    /// Whether a connection to this endpoint is encrypted and how its certificate is
    /// checked, in words, as the server sees the connection (`pg_stat_ssl`).
    pub async fn transport(&self) -> Result<String, PgError> {
        let client = self.connect().await?;
        let row = client
            .query_opt(
                "SELECT version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl",
                &[],
            )
            .await
            .map_err(self.query_error("asking the server about the connection's TLS"))?;
        let negotiated = row.map(|row| {
            let (version, cipher): (Option<String>, Option<String>) = (row.get(0), row.get(1));
            format!(
                "{} {}",
                version.unwrap_or_default(),
                cipher.unwrap_or_default()
            )
        });
        Ok(self.tls.describe(negotiated.as_deref()))
    }

    /// Opens a new connection; its I/O runs on a spawned task until the client is dropped.
    pub async fn connect(&self) -> Result<Client, PgError> {
        match &self.connector {
            None => self.finish_connect(self.config.connect(NoTls).await),
            Some(connector) => self.finish_connect(self.config.connect(connector.clone()).await),
        }
    }

    /// The client of a connection attempt, its I/O spawned; or the error, explained.
    fn finish_connect<C>(
        &self,
        attempt: Result<(Client, C), tokio_postgres::Error>,
    ) -> Result<Client, PgError>
    where
        C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        let (client, connection) = attempt.map_err(|source| self.connect_error(source))?;
        let endpoint = self.display.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                warn!(%endpoint, %error, "postgres connection ended with an error");
            }
        });
        Ok(client)
    }

    fn connect_error(&self, source: tokio_postgres::Error) -> PgError {
        if let Some(message) = ferry_tls::explain(&source, &self.display, &self.tls) {
            return PgError::Tls {
                endpoint: self.display.clone(),
                message,
            };
        }
        // The driver's words are in its error's cause, which Display leaves out.
        if format!("{source:?}").contains("server does not support TLS") {
            return self.no_tls();
        }
        PgError::Connect {
            endpoint: self.display.clone(),
            source,
        }
    }

    fn no_tls(&self) -> PgError {
        PgError::Tls {
            endpoint: self.display.clone(),
            message: format!(
                "the server does not offer TLS, and sslmode={} requires it; turn ssl on at the server (ssl = on, a certificate and key in postgresql.conf), or set sslmode=prefer in {}.url to allow an unencrypted connection",
                self.tls.mode, self.tls.field
            ),
        }
    }

    /// Settings for a replication session on this endpoint streaming slot `slot` with
    /// publication `publication` (the same name), binary tuples, feedback every second.
    pub(crate) fn replication(&self, slot: &str) -> Result<ReplicationConfig, PgError> {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(host)) => host.clone(),
            _ => {
                return Err(PgError::Url {
                    field: "source.url".into(),
                    message: "incremental migration needs a TCP host, not a socket path".into(),
                })
            }
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let password = self
            .config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        Ok(ReplicationConfig::new(
            host,
            self.config.get_user().unwrap_or("postgres"),
            password,
            self.config.get_dbname().unwrap_or_default(),
            slot,
            slot,
        )
        .with_port(port)
        .with_tls(TlsConfig::disabled())
        .with_binary(true)
        .with_application_name("ferry")
        .with_status_interval(FEEDBACK_INTERVAL)
        .with_wakeup_interval(FEEDBACK_INTERVAL))
    }

    /// A replication session with `config` (from [`PgEndpoint::replication`]); `gated` for
    /// one that runs commands before it streams. Under TLS the session runs through a relay
    /// of ferry's own: the replication client speaks plain protocol over a Unix socket in a
    /// private directory, and the relay carries it over the TLS connection it opened first
    /// (so a handshake's failure is reported here, with its cause), checked as `sslmode` says.
    pub(crate) async fn replication_client(
        &self,
        mut config: ReplicationConfig,
        gated: bool,
    ) -> Result<ReplicationClient, PgError> {
        let failed = |error: pgwire_replication::PgWireError| PgError::ReplicationConnection {
            endpoint: self.display.clone(),
            message: error.to_string(),
        };
        if let Some(tls) = &self.client_config {
            config.host = self.relay(&config, tls.clone()).await?;
        }
        if gated {
            ReplicationClient::connect_gated(config)
                .await
                .map_err(failed)
        } else {
            ReplicationClient::connect(config).await.map_err(failed)
        }
    }

    /// Opens the connection to the server (TLS when it offers it, or as the mode demands)
    /// and a Unix socket that hands it to the first client that connects (the replication
    /// client connects from its own task, maybe after this returns). Returns the socket's
    /// directory (0700), removed once the client is in or after [`RELAY_WAIT`].
    async fn relay(
        &self,
        config: &ReplicationConfig,
        tls: Arc<ClientConfig>,
    ) -> Result<String, PgError> {
        let io = |context: &str| {
            let context = format!("{context}: ");
            move |error: std::io::Error| PgError::ReplicationConnection {
                endpoint: self.display.clone(),
                message: format!("{context}{error}"),
            }
        };
        let mut tcp = TcpStream::connect((config.host.as_str(), config.port))
            .await
            .map_err(io("connecting"))?;
        let _ = tcp.set_nodelay(true);
        tcp.write_all(&SSL_REQUEST)
            .await
            .map_err(io("asking for TLS"))?;
        let answer = tcp.read_u8().await.map_err(io("asking for TLS"))?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-replication-")
            .tempdir()
            .map_err(io("making the relay's directory"))?;
        let listener = UnixListener::bind(dir.path().join(format!(".s.PGSQL.{}", config.port)))
            .map_err(io("opening the relay's socket"))?;
        let upstream: ferry_tls::Stream = match answer {
            b'S' => {
                let stream =
                    ferry_tls::handshake(tcp, &config.host, tls)
                        .await
                        .map_err(|error| {
                            match ferry_tls::explain(&error, &self.display, &self.tls) {
                                Some(message) => PgError::Tls {
                                    endpoint: self.display.clone(),
                                    message,
                                },
                                None => io("the TLS handshake")(error),
                            }
                        })?;
                ferry_tls::Stream::Tls(Box::new(stream))
            }
            b'N' if !self.tls.mode.insists() => ferry_tls::Stream::Plain(tcp),
            b'N' => return Err(self.no_tls()),
            other => {
                return Err(PgError::ReplicationConnection {
                    endpoint: self.display.clone(),
                    message: format!(
                        "the server answered the TLS request with {other:#x}, not S or N"
                    ),
                })
            }
        };
        let endpoint = self.display.clone();
        let path = dir.path().display().to_string();
        tokio::spawn(async move {
            let mut upstream = upstream;
            // A client that failed before it connected leaves nothing behind for long.
            match tokio::time::timeout(RELAY_WAIT, listener.accept()).await {
                Ok(Ok((mut local, _))) => {
                    drop(listener);
                    drop(dir);
                    if let Err(error) =
                        tokio::io::copy_bidirectional(&mut local, &mut upstream).await
                    {
                        tracing::debug!(%endpoint, %error, "replication relay closed");
                    }
                }
                Ok(Err(error)) => warn!(%endpoint, %error, "replication relay accepted nothing"),
                Err(_) => warn!(%endpoint, "replication relay: no client came"),
            }
        });
        Ok(path)
    }

    /// A [`PgError::Query`] for this endpoint.
    pub(crate) fn query_error(
        &self,
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> PgError + '_ {
        let context = context.into();
        move |source| PgError::Query {
            endpoint: self.display.clone(),
            context,
            source,
        }
    }
}

/// `name` quoted as a PostgreSQL identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as a PostgreSQL string literal (an escape string, so it reads the same whatever
/// `standard_conforming_strings` is).
pub(crate) fn quote_literal(text: &str) -> String {
    format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// `schema.table` with both parts quoted.
pub(crate) fn quote_table(id: &ferry_engine::TableId) -> String {
    format!("{}.{}", quote_ident(&id.schema), quote_ident(&id.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(quote_literal("plain"), "E'plain'");
        assert_eq!(
            quote_literal(r#"{"a":"it's \"x\""}"#),
            r#"E'{"a":"it''s \\"x\\""}'"#
        );
    }

    #[test]
    fn urls_parse_and_never_show_the_password() {
        let options = || ConnectorOptions::empty("source.options");
        let endpoint = PgEndpoint::parse(
            "postgres://u:secret@127.0.0.1:5433/shop",
            options(),
            "source",
        )
        .unwrap();
        assert_eq!(endpoint.display(), "127.0.0.1:5433/shop");
        assert!(!format!("{endpoint:?}").contains("secret"));
        let error = PgEndpoint::parse("postgres://127.0.0.1:5433", options(), "sink")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("sink.url: ") && error.contains("database"),
            "{error}"
        );
        assert!(PgEndpoint::parse("mysql://x", options(), "source").is_err());
    }

    #[test]
    fn identifiers_are_quoted_safely() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(
            quote_table(&ferry_engine::TableId::new("Shop", "orders")),
            "\"Shop\".\"orders\""
        );
    }
}
