//! Which server (and database) an endpoint reaches, as the server itself says: a URL can name
//! one server by many addresses (`localhost`, `127.0.0.1`, `[::1]`, a DNS alias), so whether a
//! job's sink is its own source is never decided from URL text.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The identity of the place an endpoint reads or writes. Two endpoints reach the same tables
/// exactly when their identities are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServerIdentity {
    /// The engine (`postgres`, `mysql`, `redis`, `file`): endpoints of different engines are
    /// never the same place.
    pub engine: String,
    /// What the server reports about itself that no other server shares (PostgreSQL: the
    /// postmaster's start time; MySQL: host name, port, data directory and server id; Redis:
    /// its run id; files: the canonical directory).
    pub server: String,
    /// The database within the server, where a server holds databases whose tables live in
    /// separate namespaces (PostgreSQL); `None` where a table's name carries its database.
    pub database: Option<String>,
}

impl fmt::Display for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} server {}", self.engine, self.server)?;
        if let Some(database) = &self.database {
            write!(f, ", database {database}")?;
        }
        Ok(())
    }
}
