//! What a connector declares about itself: its URL schemes, what it can do, its own options,
//! and how to open it. Each connector crate exports one [`Connector`]; the job runtime's
//! registry lists them, and nothing else in ferry matches a URL scheme or an engine's name.

use std::sync::Arc;

use crate::error::Result;
use crate::options::ConnectorOptions;
use crate::sink::Sink;
use crate::source::Source;

/// What a connector moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Tables of rows ([`Source`], [`Sink`]), through rules, the snapshot pipeline and the
    /// change runtime.
    Tables,
    /// A whole key-value instance (Redis): keys and commands, into the same kind of server.
    Keyspace,
}

/// What a connector can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// It can be read from.
    pub source: bool,
    /// It can be written to.
    pub sink: bool,
    /// As a source, it streams its changes (incremental migration).
    pub change_feed: bool,
    /// As a sink, it applies changes (updates and deletes), not only new rows.
    pub applies_changes: bool,
    /// Read back, its rows come in primary-key order (`ferry verify` merges them; other sinks
    /// are compared as multisets).
    pub key_ordered_reads: bool,
    /// It writes files, not a server.
    pub files: bool,
}

/// A source as opened from its URL.
pub struct OpenedSource {
    /// The source.
    pub source: Arc<dyn Source>,
    /// Where it reads, without credentials (`host:port/database`), for messages and the
    /// checkpoint.
    pub display: String,
}

/// Opens a source from its URL and options; `job` is the job's name (some sources derive an
/// identity from it, such as a MySQL replica id).
pub type OpenSource = fn(url: &str, options: ConnectorOptions, job: &str) -> Result<OpenedSource>;

/// Opens a sink from its URL and options.
pub type OpenSink = fn(url: &str, options: ConnectorOptions) -> Result<Arc<dyn Sink>>;

/// Opens a sink's tables for reading back (`ferry verify`), with the sink's options (its TLS
/// settings and password).
pub type OpenReadBack = fn(url: &str, options: ConnectorOptions) -> Result<Arc<dyn Source>>;

/// One connector, as it registers itself.
#[derive(Debug)]
pub struct Connector {
    /// Its name for people (`PostgreSQL`).
    pub name: &'static str,
    /// Its URL schemes, the canonical one first (`postgres`, `postgresql`).
    pub schemes: &'static [&'static str],
    /// A URL of its form, for messages (`postgres://user@host:port/database`).
    pub url_form: &'static str,
    /// What it moves.
    pub shape: Shape,
    /// What it can do.
    pub capabilities: Capabilities,
    /// The options it takes as a source (`[source.options]`).
    pub source_options: &'static [&'static str],
    /// The options it takes as a sink (`[sink.options]`).
    pub sink_options: &'static [&'static str],
    /// Opens it as a table source (connectors of [`Shape::Tables`] that read).
    pub open_source: Option<OpenSource>,
    /// Opens it as a table sink (connectors of [`Shape::Tables`] that write).
    pub open_sink: Option<OpenSink>,
    /// Opens a sink of it for reading back.
    pub read_back: Option<OpenReadBack>,
}

impl Connector {
    /// Whether `scheme` (`postgresql`) names this connector.
    pub fn takes(&self, scheme: &str) -> bool {
        self.schemes.contains(&scheme)
    }

    /// The canonical scheme (`postgres`).
    pub fn scheme(&self) -> &'static str {
        self.schemes[0]
    }
}
