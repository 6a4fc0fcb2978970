//! ferry-redis: Redis as a source and sink (issue #5). So far: [`replica`], the replication
//! link (ferry as a replica of the source: full or partial resync, the RDB, then the command
//! stream with its offset), and [`rdb`], a streaming reader of the RDB snapshot — every key
//! with its database, type and expiry, its value in bounded slices so a key of millions of
//! members is never held whole; [`sink`], pipelined writes to a target; [`copy`], a source
//! moved into a target: the RDB as native commands, then the command stream replayed;
//! [`migrate`], the whole online migration with its resume modes; [`check`], warnings about
//! settings that can spoil a migration; [`verify`], a key-by-key comparison of target and
//! source; [`rules`], which keys and commands a job's rules select and where they go.
#![warn(missing_docs)]

pub mod check;
pub mod copy;
pub mod error;
pub mod migrate;
pub mod rdb;
pub mod replica;
pub mod rules;
pub mod sink;
pub mod status;
pub mod verify;

pub use error::RedisError;

use ferry_engine::{Capabilities, Connector, ConnectorOptions, Error, RetryPolicy, Shape};

use crate::replica::ReplicaConfig;

/// Redis as the job runtime's registry knows it: a whole instance, moved into another Redis.
pub static CONNECTOR: Connector = Connector {
    name: "Redis",
    schemes: &["redis"],
    url_form: "redis://[user:password@]host:port",
    shape: Shape::Keyspace,
    capabilities: Capabilities {
        source: true,
        sink: true,
        change_feed: true,
        applies_changes: true,
        key_ordered_reads: false,
        files: false,
    },
    source_options: &["resume_mode"],
    sink_options: &[],
    open_source: None,
    open_sink: None,
    read_back: None,
};

/// Where a `redis://[user:password@]host:port[/db]` URL points (the database is ignored: the
/// whole instance moves); `field` names the job field for errors (`source.url`).
pub fn endpoint(url: &str, field: &str) -> Result<ReplicaConfig, Error> {
    let bad = |message: &str| Error::Config {
        field: field.into(),
        message: format!("{message}; expected {}", CONNECTOR.url_form),
    };
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("not a redis:// URL"))?;
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, rest),
    };
    let address = address.split('/').next().unwrap_or_default();
    if !address.contains(':') {
        return Err(bad("the port is missing"));
    }
    let (user, password) = match credentials {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| user.to_string()),
                Some(password.to_string()),
            ),
            None => (None, Some(credentials.to_string())),
        },
        None => (None, None),
    };
    Ok(ReplicaConfig {
        address: address.to_string(),
        user,
        password,
    })
}

/// `[source.options]` of a Redis source: `resume_mode`, what to do when the replication link
/// breaks: `auto` (the default) reconnects with backoff as long as it takes and continues,
/// `manual` stops and leaves the point to the next run.
pub fn source_retry(mut options: ConnectorOptions) -> Result<RetryPolicy, Error> {
    let mode = options.take_choice("resume_mode", &["auto", "manual"])?;
    options.finish(CONNECTOR.source_options)?;
    Ok(match mode {
        Some("manual") => RetryPolicy::NEVER,
        _ => RetryPolicy::UNBOUNDED,
    })
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn urls_give_address_user_and_password() {
        let e = endpoint("redis://127.0.0.1:6379/0", "source.url").unwrap();
        assert_eq!(
            (e.address.as_str(), e.user, e.password),
            ("127.0.0.1:6379", None, None)
        );
        let e = endpoint("redis://:secret@h:1", "source.url").unwrap();
        assert_eq!((e.user, e.password.as_deref()), (None, Some("secret")));
        let e = endpoint("redis://ann:pw@h:1", "source.url").unwrap();
        assert_eq!(
            (e.user.as_deref(), e.password.as_deref()),
            (Some("ann"), Some("pw"))
        );
        assert!(endpoint("redis://host", "source.url").is_err());
        assert!(endpoint("http://h:1", "source.url").is_err());
    }
}
