//! Connection settings from a job's URL, and connecting.

use std::str::FromStr;

use std::time::Duration;

use pgwire_replication::{ReplicationConfig, TlsConfig};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};
use tracing::warn;

use crate::error::PgError;

/// How often the replication session tells the server what is applied (and wakes up when
/// idle): often enough that the server recycles WAL and lag stays visible.
const FEEDBACK_INTERVAL: Duration = Duration::from_secs(1);

/// A PostgreSQL server and database to connect to.
#[derive(Clone)]
pub struct PgEndpoint {
    config: Config,
    display: String,
}

impl std::fmt::Debug for PgEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display)
    }
}

impl PgEndpoint {
    /// Parses `postgres://user[:password]@host[:port]/database`; `field` names the job field
    /// for errors (`source.url`).
    pub fn parse(url: &str, field: &str) -> Result<PgEndpoint, PgError> {
        let mut config = Config::from_str(url).map_err(|e| PgError::Url {
            field: field.to_string(),
            message: e.to_string(),
        })?;
        if config.get_hosts().is_empty() {
            return Err(PgError::Url {
                field: field.to_string(),
                message: "no host".into(),
            });
        }
        if config.get_dbname().is_none() {
            return Err(PgError::Url {
                field: field.to_string(),
                message: "no database name".into(),
            });
        }
        config.application_name("ferry");
        let host = match &config.get_hosts()[0] {
            Host::Tcp(host) => host.clone(),
            Host::Unix(path) => path.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let display = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(PgEndpoint { config, display })
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

    /// Opens a new connection; its I/O runs on a spawned task until the client is dropped.
    pub async fn connect(&self) -> Result<Client, PgError> {
        let (client, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|source| PgError::Connect {
                    endpoint: self.display.clone(),
                    source,
                })?;
        let endpoint = self.display.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                warn!(%endpoint, %error, "postgres connection ended with an error");
            }
        });
        Ok(client)
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
        let endpoint =
            PgEndpoint::parse("postgres://u:secret@127.0.0.1:5433/shop", "source.url").unwrap();
        assert_eq!(endpoint.display(), "127.0.0.1:5433/shop");
        assert!(!format!("{endpoint:?}").contains("secret"));
        let error = PgEndpoint::parse("postgres://127.0.0.1:5433", "sink.url")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("sink.url: ") && error.contains("database"),
            "{error}"
        );
        assert!(PgEndpoint::parse("mysql://x", "source.url").is_err());
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
