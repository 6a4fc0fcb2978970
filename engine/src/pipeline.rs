//! The pipeline runtime: reads snapshot parts in parallel, transforms each batch for every rule
//! that selects its table, writes the results, and commits each part when it is whole.
//!
//! Each part runs as a reader task and a writer loop joined by a bounded channel, so decoding
//! and encoding overlap and a slow sink slows the reader instead of filling memory. At most
//! `parallelism` parts run at once: memory is bounded by batch size × (queue depth + 2) ×
//! parallelism, whatever the table sizes.

use std::sync::Arc;

use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::schema::TableSchema;
use crate::sink::{Sink, SinkWriter};
use crate::source::{Snapshot, SnapshotPart};
use crate::transform::Transform;

/// Batches a part's reader may run ahead of its writer: enough to keep both busy, few enough
/// to keep memory small.
pub const DEFAULT_QUEUE_DEPTH: usize = 4;

/// One rule's path from a source table to a target table.
#[derive(Clone)]
pub struct Route {
    /// Turns source batches into target batches.
    pub transform: Arc<dyn Transform>,
    /// The prepared target table.
    pub target: TableSchema,
}

/// Where the rows of one snapshot table go: one route per rule that selects the table.
#[derive(Clone, Default)]
pub struct TableFlow {
    /// The routes, in rule order.
    pub routes: Vec<Route>,
}

/// How the runtime schedules work.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Parts read and written at once.
    pub parallelism: usize,
    /// Batches buffered between a part's reader and writer.
    pub queue_depth: usize,
}

/// Copies a snapshot into the sink: every part of `snapshot`, through the routes of its table
/// in `flows` (indexed like the snapshot request's tables), committed part by part.
///
/// Stops at the first error, or with [`Error::Stopped`] when `stop` is cancelled; parts not
/// committed by then are rolled back by dropping their writers.
pub async fn run_snapshot(
    snapshot: Arc<dyn Snapshot>,
    flows: Arc<Vec<TableFlow>>,
    sink: Arc<dyn Sink>,
    progress: Arc<Progress>,
    options: RunOptions,
    stop: CancellationToken,
) -> Result<()> {
    for part in snapshot.parts() {
        if let Some(table) = progress.tables().get(part.table) {
            table.add_part();
        }
    }
    let parts: Vec<SnapshotPart> = snapshot.parts().to_vec();
    let parallelism = options.parallelism.max(1);
    futures::stream::iter(parts.into_iter().map(Ok))
        .try_for_each_concurrent(parallelism, |part| {
            let context = PartContext {
                snapshot: Arc::clone(&snapshot),
                flows: Arc::clone(&flows),
                sink: Arc::clone(&sink),
                progress: Arc::clone(&progress),
                queue_depth: options.queue_depth.max(1),
                stop: stop.clone(),
            };
            async move { context.run(part).await }
        })
        .await
}

struct PartContext {
    snapshot: Arc<dyn Snapshot>,
    flows: Arc<Vec<TableFlow>>,
    sink: Arc<dyn Sink>,
    progress: Arc<Progress>,
    queue_depth: usize,
    stop: CancellationToken,
}

/// Aborts the reader task when the writer side gives up, so no reader outlives its part.
struct AbortOnDrop(tokio::task::JoinHandle<Result<u64>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PartContext {
    async fn run(self, part: SnapshotPart) -> Result<()> {
        let flow = self
            .flows
            .get(part.table)
            .ok_or_else(|| Error::Internal(format!("part {} names no table", part.index)))?;
        let table_progress = self
            .progress
            .tables()
            .get(part.table)
            .ok_or_else(|| Error::Internal(format!("part {} has no progress", part.index)))?;
        table_progress.start();
        debug!(table = %table_progress.table, part = part.index, range = %part.description, "part started");

        let mut writers: Vec<Box<dyn SinkWriter>> = Vec::with_capacity(flow.routes.len());
        for route in &flow.routes {
            writers.push(self.sink.writer(&route.target).await?);
        }

        let (sender, mut receiver) = mpsc::channel(self.queue_depth);
        let snapshot = Arc::clone(&self.snapshot);
        let reader_part = part.clone();
        let mut reader = AbortOnDrop(tokio::spawn(async move {
            snapshot.read(&reader_part, sender).await
        }));

        loop {
            let batch = tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Err(Error::Stopped),
                batch = receiver.recv() => batch,
            };
            let Some(batch) = batch else { break };
            table_progress.add_read(batch.num_rows() as u64, batch.source_bytes);
            for (route, writer) in flow.routes.iter().zip(writers.iter_mut()) {
                if let Some(out) = route.transform.apply(&batch)? {
                    writer.write(&out).await?;
                    table_progress.add_written(out.num_rows() as u64);
                }
            }
        }

        let rows = match (&mut reader.0).await {
            Ok(result) => result?,
            Err(join) => return Err(Error::Internal(format!("snapshot reader failed: {join}"))),
        };
        for writer in writers.iter_mut() {
            writer.commit().await?;
        }
        table_progress.part_done();
        info!(table = %table_progress.table, part = part.index, rows, "part committed");
        Ok(())
    }
}
