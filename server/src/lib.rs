//! `ferry serve`: the migration service. One process holds any number of jobs of every kind,
//! each driven through one lifecycle (`draft` → `prechecking` → `running` → `completed`,
//! with pause, resume, stop, cutover, limits, alter, duplicate, drop), recorded in a catalog
//! in the data dir and reconciled when the service starts again; served over HTTP (`/v1`),
//! with Prometheus metrics and a live status page. The jobs run on [`ferry_jobs`], as
//! `ferry run` runs them.

#![warn(missing_docs)]

pub mod catalog;
pub mod cloud;
pub mod doc;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod service;
pub mod spec;
pub mod sql;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::info;

pub use error::ApiError;
pub use service::Service;

/// The address the service listens on unless told: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// How the service runs.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where the catalog and the jobs' checkpoints live.
    pub data_dir: PathBuf,
    /// The HTTP address.
    pub listen: SocketAddr,
    /// The access token HTTP requests must carry (`Authorization: Bearer …`), and the SQL
    /// control plane's password; required to listen on anything but loopback.
    pub token: Option<String>,
    /// The SQL control plane's address (PostgreSQL wire protocol), if it is to listen.
    pub sql: Option<SocketAddr>,
    /// The SQL control plane's TLS certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Instance ids the cloud APIs may name (`DBInstanceId`, `InstanceID`, DCS `id`) and
    /// the URLs they stand for.
    pub endpoints: cloud::Endpoints,
}

/// The service could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The catalog cannot be opened.
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
    /// Listening on a non-loopback address without a token.
    #[error("listening on {0} would let anyone who reaches it drive the jobs: give an access token (--token-file FILE or FERRY_TOKEN), or listen on 127.0.0.1")]
    NoToken(SocketAddr),
    /// The TLS certificate or key cannot be used.
    #[error("TLS for the SQL control plane: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Runs the service until `shutdown` completes, then stops the runs (each commits what it
/// read; the next start resumes them) and returns.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    for address in std::iter::once(config.listen).chain(config.sql) {
        if !address.ip().is_loopback() && config.token.is_none() {
            return Err(ServeError::NoToken(address));
        }
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(sql::tls_acceptor(cert, key).map_err(ServeError::Tls)?),
        None => None,
    };
    let bind = |address: SocketAddr| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| ServeError::Bind { address, source })
    };
    let listener = bind(config.listen).await?;
    let address = listener.local_addr().map_err(ServeError::Serve)?;
    let sql_listener = match config.sql {
        Some(address) => Some(bind(address).await?),
        None => None,
    };
    let service = Service::open(&config.data_dir)?;
    let stop_sql = tokio_util::sync::CancellationToken::new();
    if let Some(listener) = sql_listener {
        let address = listener.local_addr().map_err(ServeError::Serve)?;
        let front = Arc::new(sql::SqlFront::new(
            Arc::clone(&service),
            config.token.as_deref(),
            tls.is_some(),
        ));
        info!(%address, tls = tls.is_some(), "sql control plane listening");
        sql::announce(address);
        tokio::spawn(sql::serve(listener, front, tls, stop_sql.clone()));
    }
    let shutdown = {
        let stop_sql = stop_sql.clone();
        async move {
            shutdown.await;
            stop_sql.cancel();
        }
    };
    let app = Arc::new(http::App {
        service: Arc::clone(&service),
        token: config.token.clone(),
        endpoints: config.endpoints.clone(),
    });
    info!(%address, data_dir = %config.data_dir.display(), jobs = service.views().len(), "ferry serve listening");
    // A line a supervisor (or a test) can wait for, with the bound port.
    eprintln!("ferry serve: listening on http://{address}");
    axum::serve(listener, http::router(app))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Serve)?;
    info!("stopping the jobs' runs; they resume when the service starts again");
    service.shutdown().await;
    Ok(())
}
