//! The connector registry: every connector ferry has, each as it declares itself (schemes,
//! capabilities, options, how to open it). The only place that maps a URL to a connector.
//!
//! Adding a connector: its own crate under `connectors/` exporting a
//! [`Connector`](ferry_engine::Connector), one line in [`CONNECTORS`], and (if it has a change
//! feed) one [`Position`](ferry_engine::Position) variant.

use std::sync::Arc;

use ferry_engine::{Connector, ConnectorOptions, Error, OpenedSource, Shape, Sink, Source};

use crate::JobError;

/// Every connector, in the order messages list them.
pub static CONNECTORS: &[&Connector] = &[
    &ferry_postgres::CONNECTOR,
    &ferry_mysql::CONNECTOR,
    &ferry_redis::CONNECTOR,
    &ferry_parquet::CONNECTOR,
];

/// Which side of a job a URL is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `source.url`.
    Source,
    /// `sink.url`.
    Sink,
}

impl Side {
    /// The job file's field.
    pub fn field(self) -> &'static str {
        match self {
            Side::Source => "source.url",
            Side::Sink => "sink.url",
        }
    }
}

/// The scheme of `url` (`postgres` of `postgres://…`).
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or("", |(scheme, _)| scheme)
}

/// The name of the connector taking `url`'s scheme (`PostgreSQL`), `unknown` for none.
pub fn connector_name(url: &str) -> &'static str {
    let scheme = scheme(url);
    CONNECTORS
        .iter()
        .find(|c| c.takes(scheme))
        .map_or("unknown", |c| c.name)
}

/// The URL scheme of the connector called `engine` (`MySQL`, `MariaDB`, `PostgreSQL`,
/// `Redis`: any part of its name, case-insensitive), for front ends that name engines.
pub fn scheme_of_engine(engine: &str) -> Option<&'static str> {
    CONNECTORS
        .iter()
        .find(|c| {
            c.name
                .split('/')
                .any(|part| part.eq_ignore_ascii_case(engine))
        })
        .map(|c| c.scheme())
}

/// The connector `url` names, on `side`, for a job of `shape` (`None`: any).
pub fn connector(url: &str, side: Side, shape: Option<Shape>) -> Result<&'static Connector, Error> {
    let scheme = scheme(url);
    let fits = |c: &Connector| {
        shape.is_none_or(|shape| c.shape == shape)
            && match side {
                Side::Source => c.capabilities.source,
                Side::Sink => c.capabilities.sink,
            }
    };
    match CONNECTORS.iter().copied().find(|c| c.takes(scheme)) {
        Some(connector) if fits(connector) => Ok(connector),
        found => {
            let supported: Vec<&str> = CONNECTORS
                .iter()
                .filter(|c| fits(c))
                .map(|c| c.url_form)
                .collect();
            Err(JobError::UnsupportedUrl {
                field: side.field(),
                role: match side {
                    Side::Source => "read from",
                    Side::Sink => "write to",
                },
                scheme: scheme.to_string(),
                context: match (found, shape) {
                    (Some(_), Some(Shape::Keyspace)) => {
                        " from a Redis source (a Redis job moves into a Redis target)"
                    }
                    (Some(_), Some(Shape::Tables)) => " from a table source",
                    (Some(_), None) => match side {
                        Side::Source => " as a source",
                        Side::Sink => " as a sink",
                    },
                    (None, _) => " yet",
                },
                supported: supported.join(", "),
            }
            .into())
        }
    }
}

/// The table source `url` names, opened with `options`, for job `job`.
pub fn open_source(url: &str, options: ConnectorOptions, job: &str) -> Result<OpenedSource, Error> {
    let connector = connector(url, Side::Source, Some(Shape::Tables))?;
    match connector.open_source {
        Some(open) => open(url, options, job),
        None => Err(Error::Internal(format!(
            "{} registers no source",
            connector.name
        ))),
    }
}

/// The table sink `url` names, opened with `options`.
pub fn open_sink(url: &str, options: ConnectorOptions) -> Result<Arc<dyn Sink>, Error> {
    let connector = connector(url, Side::Sink, Some(Shape::Tables))?;
    match connector.open_sink {
        Some(open) => open(url, options),
        None => Err(Error::Internal(format!(
            "{} registers no sink",
            connector.name
        ))),
    }
}

/// The sink `url` names, opened with its `options` for reading its tables back
/// (`ferry verify`).
pub fn read_back(url: &str, options: ConnectorOptions) -> Result<Arc<dyn Source>, Error> {
    let connector = connector(url, Side::Sink, Some(Shape::Tables))?;
    match connector.read_back {
        Some(open) => open(url, options),
        None => Err(JobError::CannotReadBack {
            sink: connector.name,
        }
        .into()),
    }
}

/// `url` without its credentials and parameters, under the connector's canonical scheme
/// (`postgresql://u:p@h:1/db?x` → `postgres://h:1/db`): the same place however it is spelt.
pub fn place(url: &str) -> String {
    let given = scheme(url);
    let canonical = CONNECTORS
        .iter()
        .find(|c| c.takes(given))
        .map_or(given, |c| c.scheme());
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    // The credentials end at the last `@`: a password may hold `/`, `?` or `#` unencoded.
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    format!("{canonical}://{host}/{}", path.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_names_one_connector() {
        let mut seen = std::collections::BTreeSet::new();
        for connector in CONNECTORS {
            for scheme in connector.schemes {
                assert!(seen.insert(*scheme), "{scheme} is registered twice");
            }
        }
    }

    #[test]
    fn urls_find_their_connector_or_list_the_supported_ones() {
        let pg = connector("postgresql://h/db", Side::Source, Some(Shape::Tables)).unwrap();
        assert_eq!(pg.scheme(), "postgres");
        let error = connector("sqlite:///x", Side::Source, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("source.url: ferry cannot read from 'sqlite' yet; use postgres://"),
            "{error}"
        );
        let error = connector("parquet:///x", Side::Source, None)
            .unwrap_err()
            .to_string();
        assert!(
            !error.contains("parquet:///path"),
            "files are no source: {error}"
        );
        let error = connector("mysql://h:1", Side::Sink, Some(Shape::Keyspace))
            .unwrap_err()
            .to_string();
        assert!(error.contains("from a Redis source"), "{error}");
        assert!(error.contains("redis://"), "{error}");
    }

    #[test]
    fn places_drop_credentials_and_fold_aliases() {
        assert_eq!(
            place("postgresql://u:secret@h:1/db?application_name=x"),
            "postgres://h:1/db"
        );
        assert_eq!(place("mariadb://u@h:3306/"), "mysql://h:3306/");
        assert_eq!(place("parquet:///tmp/out"), "parquet:///tmp/out");
        // A password with `/`, `?` or `#` in it is dropped whole.
        assert_eq!(place("postgres://u:p/w?x#y@h:1/db"), "postgres://h:1/db");
    }
}
