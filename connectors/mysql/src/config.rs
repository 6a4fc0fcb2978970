//! Where a MySQL/MariaDB server is and how to connect: a `mysql://` URL, shown without its
//! password, and the session settings every ferry connection runs with.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use crate::error::MyError;

/// A MySQL/MariaDB server to connect to.
#[derive(Clone, Debug)]
pub struct MyEndpoint {
    opts: Opts,
    display: String,
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
    /// Parses `mysql://user[:password]@host[:port][/database]` (also `mariadb://`); `field`
    /// names the job field in errors.
    pub fn parse(url: &str, field: &str) -> Result<MyEndpoint, MyError> {
        let normalized = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_string(),
        };
        let opts = Opts::from_url(&normalized).map_err(|e| MyError::Url {
            field: field.to_string(),
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
        let opts = OptsBuilder::from_opts(opts)
            .prefer_socket(false)
            .init(SESSION_SETUP.to_vec())
            .into();
        Ok(MyEndpoint { opts, display })
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

    /// A new connection with the session set up.
    pub async fn connect(&self) -> Result<Conn, MyError> {
        Conn::new(self.opts.clone())
            .await
            .map_err(self.error("connecting"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password_and_accept_mariadb() {
        let endpoint =
            MyEndpoint::parse("mariadb://u:secret@127.0.0.1:3307/shop", "source.url").unwrap();
        assert_eq!(endpoint.display(), "127.0.0.1:3307/shop");
        assert_eq!(endpoint.database(), Some("shop"));
        let error = MyEndpoint::parse("mysql://u@127.0.0.1:notaport/x", "source.url").unwrap_err();
        assert!(error
            .to_string()
            .starts_with("source.url: not a valid MySQL URL"));
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
    }
}
