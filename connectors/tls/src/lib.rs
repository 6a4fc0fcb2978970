//! ferry-tls: how ferry reaches a server, shared by every connector that speaks to one.
//!
//! - [`prepare`] reads an endpoint's URL and options: the TLS settings in libpq's vocabulary
//!   (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`, as URL parameters or job-file options),
//!   and the password, which may be inline, `${ENV}` in the URL, or `password_file`. What it
//!   hands back keeps the password in a [`Secret`], which never prints.
//! - [`TlsSettings::client_config`] builds the one rustls configuration (ring) every
//!   connector's driver uses, with the verifier the mode asks for.
//! - [`connect`] opens a TCP connection with TLS over it, for the protocols whose TLS starts
//!   with the first byte (Redis) or after a request of ferry's own (PostgreSQL replication).
//! - [`explain`] turns a failed handshake, wherever a driver buried it, into a sentence naming
//!   the endpoint and the fix.
#![warn(missing_docs)]

mod config;
mod explain;
mod prepare;
mod secret;
mod stream;

pub use config::{SslMode, TlsSettings};
pub use explain::explain;
pub use prepare::{prepare, Prepared, OPTIONS};
pub use secret::Secret;
pub use stream::{connect, handshake, server_name, Stream};

/// The rustls types the connectors name.
pub use rustls::ClientConfig;
