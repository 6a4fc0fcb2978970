//! `ferry serve`: the migration service. One process holds any number of jobs of every kind,
//! each driven through one lifecycle (`draft` → `prechecking` → `running` → `completed`,
//! with pause, resume, stop, cutover, limits, alter, duplicate, drop), recorded in a catalog
//! in the data dir and reconciled when the service starts again; served over HTTP (`/v1`),
//! with Prometheus metrics and a live status page. The jobs run on [`ferry_jobs`], as
//! `ferry run` runs them.

#![warn(missing_docs)]

pub mod catalog;
pub mod doc;
pub mod error;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod service;
pub mod spec;

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
    /// The access token HTTP requests must carry (`Authorization: Bearer …`); required to
    /// listen on anything but loopback.
    pub token: Option<String>,
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
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(ServeError::NoToken(config.listen));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen,
            source,
        })?;
    let address = listener.local_addr().map_err(ServeError::Serve)?;
    let service = Service::open(&config.data_dir)?;
    let app = Arc::new(http::App {
        service: Arc::clone(&service),
        token: config.token.clone(),
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
