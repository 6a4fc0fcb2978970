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

use ferry_tls::{Secret, SslMode};
use percent_encoding::percent_decode_str;

use crate::replica::ReplicaConfig;

/// Redis as the job runtime's registry knows it: a whole instance, moved into another Redis.
pub static CONNECTOR: Connector = Connector {
    name: "Redis",
    schemes: &["redis", "rediss"],
    url_form: "redis://[user:password@]host:port (rediss:// for TLS)",
    shape: Shape::Keyspace,
    capabilities: Capabilities {
        source: true,
        sink: true,
        change_feed: true,
        applies_changes: true,
        key_ordered_reads: false,
        files: false,
    },
    source_options: &[
        "resume_mode",
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "password_file",
    ],
    sink_options: ferry_tls::OPTIONS,
    open_source: None,
    open_sink: None,
    read_back: None,
};

/// Where a `redis[s]://[user:password@]host:port[/db]` URL points, with the TLS and password
/// options of job side `side` (`source`, `sink`) taken from `options` (the database is
/// ignored: the whole instance moves). `rediss://` is TLS with the certificate checked
/// (`verify-full`) unless `sslmode` says otherwise; `redis://` is plain unless `sslmode`
/// asks for TLS. Redis has no in-band TLS negotiation, so there is no `prefer`.
pub fn endpoint(
    url: &str,
    options: &mut ConnectorOptions,
    side: &str,
) -> Result<ReplicaConfig, Error> {
    let field = format!("{side}.url");
    let bad = |message: &str| Error::Config {
        field: field.clone(),
        message: format!("{message}; expected {}", CONNECTOR.url_form),
    };
    let secure = url.starts_with("rediss://");
    let default = if secure {
        SslMode::VerifyFull
    } else {
        SslMode::Disable
    };
    let prepared = ferry_tls::prepare(url, options, side, default)?;
    let url = prepared.url.expose();
    let rest = url
        .strip_prefix("redis://")
        .or_else(|| url.strip_prefix("rediss://"))
        .ok_or_else(|| bad("not a redis:// URL"))?;
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (credentials, address) = match rest.rsplit_once('@') {
        Some((credentials, address)) => (Some(credentials), address),
        None => (None, rest),
    };
    let address = address.split('/').next().unwrap_or_default();
    if !address.contains(':') {
        return Err(bad("the port is missing"));
    }
    let decoded = |text: &str| percent_decode_str(text).decode_utf8_lossy().into_owned();
    let (user, password) = match credentials {
        Some(credentials) => match credentials.split_once(':') {
            Some((user, password)) => (
                (!user.is_empty()).then(|| decoded(user)),
                Some(Secret::new(decoded(password))),
            ),
            None => (None, Some(Secret::new(decoded(credentials)))),
        },
        None => (None, None),
    };
    let tls_settings = prepared.tls;
    match tls_settings.mode {
        SslMode::Disable if secure => {
            return Err(Error::Config {
                field: format!("{side}.sslmode"),
                message: "is disable, but a rediss:// URL means TLS; write redis:// for a plain connection".into(),
            })
        }
        SslMode::Prefer => {
            return Err(Error::Config {
                field: format!("{side}.sslmode"),
                message: "is prefer, which Redis cannot do (it has no in-band TLS negotiation: a port speaks TLS or not); use rediss:// (verify-full), or sslmode=require to encrypt without checking the certificate".into(),
            })
        }
        _ => {}
    }
    Ok(ReplicaConfig {
        address: address.to_string(),
        user,
        password,
        tls: tls_settings.client_config()?,
        tls_settings,
    })
}

/// A Redis source: its endpoint and `[source.options]` — TLS and password options, and
/// `resume_mode`, what to do when the replication link breaks: `auto` (the default)
/// reconnects with backoff as long as it takes and continues, `manual` stops and leaves the
/// point to the next run.
pub fn source(
    url: &str,
    mut options: ConnectorOptions,
) -> Result<(ReplicaConfig, RetryPolicy), Error> {
    let mode = options.take_choice("resume_mode", &["auto", "manual"])?;
    let config = endpoint(url, &mut options, "source")?;
    options.finish(CONNECTOR.source_options)?;
    let retry = match mode {
        Some("manual") => RetryPolicy::NEVER,
        _ => RetryPolicy::UNBOUNDED,
    };
    Ok((config, retry))
}

/// A Redis target: its endpoint and `[sink.options]` (TLS and password options).
pub fn target(url: &str, mut options: ConnectorOptions) -> Result<ReplicaConfig, Error> {
    let config = endpoint(url, &mut options, "sink")?;
    options.finish(CONNECTOR.sink_options)?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str, _field: &str) -> Result<ReplicaConfig, Error> {
        super::endpoint(
            url,
            &mut ConnectorOptions::empty("source.options"),
            "source",
        )
    }

    #[test]
    fn urls_give_address_user_and_password() {
        let e = endpoint("redis://127.0.0.1:6379/0", "source.url").unwrap();
        assert_eq!(
            (e.address.as_str(), e.user, e.password),
            ("127.0.0.1:6379", None, None)
        );
        let e = endpoint("redis://:secret@h:1", "source.url").unwrap();
        assert_eq!(
            (e.user.as_deref(), e.password.as_ref().map(Secret::expose)),
            (None, Some("secret"))
        );
        assert!(!format!("{e:?}").contains("secret"));
        let e = endpoint("redis://ann:p%40w@h:1", "source.url").unwrap();
        assert_eq!(
            (e.user.as_deref(), e.password.as_ref().map(Secret::expose)),
            (Some("ann"), Some("p@w"))
        );
        let e = endpoint("rediss://h:1?sslmode=require", "source.url").unwrap();
        assert!(e.tls.is_some());
        let error = endpoint("redis://h:1?sslmode=prefer", "source.url").unwrap_err();
        assert!(error.to_string().contains("no in-band TLS"), "{error}");
        assert!(endpoint("redis://host", "source.url").is_err());
        assert!(endpoint("http://h:1", "source.url").is_err());
    }
}
