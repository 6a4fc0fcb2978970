//! The PostgreSQL connector's errors, each classed as the user's, the server's or ours.

use ferry_engine::error::{ClassifiedError, ErrorClass};

/// An error of the PostgreSQL connector.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is not a PostgreSQL connection URL.
    #[error("{field}: not a valid PostgreSQL URL ({message}); expected postgres://user[:password]@host:port/database")]
    Url {
        /// The job field holding the URL (`source.url`).
        field: String,
        /// What the parser said.
        message: String,
    },
    /// Connecting failed.
    #[error("cannot connect to PostgreSQL at {endpoint}: {}", describe(.source))]
    Connect {
        /// `host:port/database`, never the password.
        endpoint: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// TLS could not be set up: the server offers none, or its certificate is not the one
    /// the settings ask for.
    #[error("cannot connect to PostgreSQL at {endpoint}: {message}")]
    Tls {
        /// `host:port/database`.
        endpoint: String,
        /// What failed and the fix.
        message: String,
    },
    /// A statement failed.
    #[error("PostgreSQL at {endpoint}: {context}: {}", describe(.source))]
    Query {
        /// `host:port/database`.
        endpoint: String,
        /// What ferry was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Rows from the server could not be decoded.
    #[error("reading {table}{}: {message}", column_suffix(.column))]
    Decode {
        /// The source table.
        table: String,
        /// The column, when one is to blame.
        column: String,
        /// What was wrong.
        message: String,
    },
    /// A value cannot be written into its target column.
    #[error("writing {table}{}: {message}", column_suffix(.column))]
    Encode {
        /// The target table.
        table: String,
        /// The column.
        column: String,
        /// What was wrong.
        message: String,
    },
    /// The target table does not fit the rows (missing, wrong columns, rows present).
    #[error("target table {table}: {message}")]
    Target {
        /// The target table.
        table: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The replication stream sent something ferry cannot follow.
    #[error("replication stream: {message}")]
    Replication {
        /// What was wrong.
        message: String,
    },
    /// The replication connection failed.
    #[error("replication from {endpoint}: {message}")]
    ReplicationConnection {
        /// `host:port/database`.
        endpoint: String,
        /// What the client said.
        message: String,
    },
    /// The source cannot feed changes as configured; the message says what to run.
    #[error("{message}")]
    Precheck {
        /// Every failed check with its fix.
        message: String,
    },
    /// A selected column has a type ferry cannot carry.
    #[error("column {column} of {table}: {message}")]
    UnsupportedColumn {
        /// The source table.
        table: String,
        /// The column.
        column: String,
        /// Why, and what to do instead.
        message: String,
    },
}

fn column_suffix(column: &str) -> String {
    if column.is_empty() {
        String::new()
    } else {
        format!(", column {column}")
    }
}

/// The server's own message (with detail and hint) when there is one, else the driver's.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        // The driver's words and their causes ("invalid configuration: password missing").
        None => {
            let mut text = error.to_string();
            let mut cause = std::error::Error::source(error);
            while let Some(inner) = cause {
                let said = inner.to_string();
                if !text.contains(&said) {
                    text.push_str(&format!(": {said}"));
                }
                cause = inner.source();
            }
            if text.contains("password missing") {
                text.push_str(
                    "; the server asks for a password: put it in the URL (postgres://user:password@host/db)",
                );
            }
            text
        }
    }
}

impl ClassifiedError for PgError {
    fn class(&self) -> ErrorClass {
        match self {
            PgError::Url { .. }
            | PgError::Tls { .. }
            | PgError::Target { .. }
            | PgError::UnsupportedColumn { .. }
            | PgError::Encode { .. } => ErrorClass::User,
            PgError::Connect { source, .. } | PgError::Query { source, .. } => {
                match source.as_db_error() {
                    Some(db) => sqlstate_class(db.code().code()),
                    // The client's own refusals: a password the server asks for and the URL
                    // lacks, a URL it cannot use.
                    None if source.to_string().contains("password missing")
                        || source.to_string().starts_with("invalid configuration") =>
                    {
                        ErrorClass::User
                    }
                    None => ErrorClass::External,
                }
            }
            // A value that cannot be carried fails again on every try.
            PgError::Decode { .. } => ErrorClass::User,
            // A slot still held by the walsender of a run that was cut off frees itself within
            // wal_sender_timeout: retried (a second ferry is stopped by the job's lock).
            PgError::ReplicationConnection { .. } => ErrorClass::External,
            PgError::Precheck { .. } => ErrorClass::User,
            PgError::Replication { .. } => ErrorClass::Internal,
        }
    }
}

/// Who acts on a server error, by its SQLSTATE: data (22), constraints (23), authorization
/// (28, 42501), no such database or schema (3D, 3F), syntax and undefined objects (42), a
/// feature the server lacks (0A) and a statement past the server's limits (54) stay as they
/// are however often ferry retries: the user's, exit 2 at once. The rest (a connection lost,
/// the server shutting down or out of resources, a serialization failure, an object in use —
/// a replication slot the walsender of a cut-off run still holds frees itself) may pass:
/// retried.
pub(crate) fn sqlstate_class(code: &str) -> ErrorClass {
    match code.get(..2) {
        Some("22" | "23" | "28" | "3D" | "3F" | "42" | "0A" | "54") => ErrorClass::User,
        _ => ErrorClass::External,
    }
}

impl From<PgError> for ferry_engine::Error {
    fn from(error: PgError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
