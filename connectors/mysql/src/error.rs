//! The MySQL connector's errors, each classed as the user's, the server's or ours.

use ferry_engine::error::{ClassifiedError, ErrorClass};

/// An error of the MySQL/MariaDB connector.
#[derive(Debug, thiserror::Error)]
pub enum MyError {
    /// The URL is not a MySQL connection URL.
    #[error("{field}: not a valid MySQL URL ({message}); expected mysql://user[:password]@host:port[/database]")]
    Url {
        /// The job field holding the URL (`source.url`).
        field: String,
        /// What was wrong.
        message: String,
    },
    /// TLS could not be set up: the server offers none, or its certificate is not the one
    /// the settings ask for.
    #[error("cannot connect to MySQL at {endpoint}: {message}")]
    Tls {
        /// `host:port[/database]`.
        endpoint: String,
        /// What failed and the fix.
        message: String,
    },
    /// Connecting or a statement failed.
    #[error("MySQL at {endpoint}: {context}: {source}")]
    Query {
        /// `host:port`, never the password.
        endpoint: String,
        /// What ferry was doing.
        context: String,
        /// The driver's error.
        #[source]
        source: mysql_async::Error,
    },
    /// A value read from the server cannot be carried.
    #[error("reading {table}, column {column}: {message}")]
    Decode {
        /// The source table.
        table: String,
        /// The column.
        column: String,
        /// What was wrong, and what to do.
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
    /// A value cannot be written into its target column (`column` empty: the server did not
    /// say which).
    #[error("writing {table}{}: {message}", if .column.is_empty() { String::new() } else { format!(", column {}", .column) })]
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
    /// The source cannot feed changes as configured: each setting or grant that is missing
    /// and the statement that fixes it.
    #[error("{message}")]
    Precheck {
        /// What is wrong and how to fix it.
        message: String,
    },
    /// Something ferry asked of this connector it does not do yet.
    #[error("{message}")]
    Unsupported {
        /// What, and what to do instead.
        message: String,
    },
}

/// Server error codes that need the user to act: access denied (1044, 1045), a NULL into a
/// NOT NULL column (1048), unknown database (1049), unknown column (1054), duplicate key
/// (1062), syntax (1064), table or column privilege (1142, 1143), unknown table (1146),
/// missing privilege (1227), out of range (1264), bad datetime (1292), bad value (1366),
/// routine privilege (1370), too long (1406), foreign key (1452).
const USER_ERROR_CODES: [u16; 17] = [
    1044, 1045, 1048, 1049, 1054, 1062, 1064, 1142, 1143, 1146, 1227, 1264, 1292, 1366, 1370, 1406,
    1452,
];

/// SQLSTATE classes that retrying never fixes: data (22: out of range, division by zero, bad
/// value), integrity (23), authorization (28), syntax and access (42), no such database
/// (3D), a feature the server lacks (0A), WITH CHECK OPTION (44).
fn user_sqlstate(state: &str) -> bool {
    matches!(
        state.get(..2),
        Some("22" | "23" | "28" | "42" | "3D" | "0A" | "44")
    )
}

impl ClassifiedError for MyError {
    fn class(&self) -> ErrorClass {
        match self {
            MyError::Url { .. }
            | MyError::Tls { .. }
            | MyError::UnsupportedColumn { .. }
            | MyError::Unsupported { .. }
            | MyError::Precheck { .. }
            | MyError::Encode { .. }
            | MyError::Target { .. }
            | MyError::Decode { .. } => ErrorClass::User,
            MyError::Query { source, .. } => match source {
                // Refused for a reason the user fixes: access denied, unknown database, table
                // or column, syntax, missing privilege.
                mysql_async::Error::Server(error)
                    if USER_ERROR_CODES.contains(&error.code) || user_sqlstate(&error.state) =>
                {
                    ErrorClass::User
                }
                mysql_async::Error::Url(_) => ErrorClass::User,
                mysql_async::Error::Driver(_) => ErrorClass::Internal,
                // The connection, or the server (shutting down, deadlock, lock wait): retry.
                _ => ErrorClass::External,
            },
        }
    }
}

impl From<MyError> for ferry_engine::Error {
    fn from(error: MyError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
