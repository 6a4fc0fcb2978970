//! The Redis connector's one error type, each variant classed as the user's, the server's or
//! ours.

use ferry_engine::error::{ClassifiedError, ErrorClass};

/// An error of the Redis connector: the link to a server, the RDB, the rules.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The connection to a server failed or broke.
    #[error("Redis at {address}: {context}: {source}")]
    Io {
        /// `host:port`.
        address: String,
        /// What ferry was doing.
        context: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TLS could not be set up with the server: its certificate, or no TLS on that port.
    #[error("cannot connect to Redis at {address}: {message}")]
    Tls {
        /// `host:port`.
        address: String,
        /// What failed and the fix.
        message: String,
    },
    /// A server refused something or answered what a replica cannot follow.
    #[error("Redis at {address}: {message}")]
    Protocol {
        /// `host:port`.
        address: String,
        /// What happened, and what to do.
        message: String,
    },
    /// The RDB's bytes could not be read (the link went down during the copy).
    #[error("reading the RDB: {0}")]
    RdbIo(#[from] std::io::Error),
    /// The bytes are not a valid RDB.
    #[error("the RDB is malformed: {0}")]
    Malformed(String),
    /// A key of a type ferry does not carry.
    #[error("key {key:?} in db {db} is a {what}, which ferry does not carry yet; delete it or migrate it by other means")]
    Unsupported {
        /// The database.
        db: u64,
        /// The key, lossily as text.
        key: String,
        /// What it is.
        what: String,
    },
    /// The rules cannot be applied to what the source did.
    #[error("rules: {0}")]
    Rules(String),
}

impl RedisError {
    /// Whether this is a broken link worth reconnecting for (not a refusal or bad data).
    pub fn is_broken_link(&self) -> bool {
        matches!(self, RedisError::Io { .. } | RedisError::RdbIo(_))
    }
}

impl ClassifiedError for RedisError {
    fn class(&self) -> ErrorClass {
        match self {
            // The network or the server went away: worth trying again.
            RedisError::Io { .. } | RedisError::RdbIo(_) => ErrorClass::External,
            // A refusal (password, permissions, a command the target rejects) or a key ferry
            // cannot carry: the user's to fix.
            RedisError::Protocol { .. }
            | RedisError::Tls { .. }
            | RedisError::Unsupported { .. }
            | RedisError::Rules(_) => ErrorClass::User,
            // Bytes the protocol does not allow: a bug in the reader.
            RedisError::Malformed(_) => ErrorClass::Internal,
        }
    }
}

impl From<RedisError> for ferry_engine::Error {
    fn from(error: RedisError) -> Self {
        ferry_engine::Error::Connector(Box::new(error))
    }
}
