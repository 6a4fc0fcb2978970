//! The pipeline runtime: reads snapshot parts in parallel, transforms each batch for every rule
//! that selects its table, writes the results, and commits each part when it is whole.
//!
//! Each part runs as a reader task and a writer loop joined by a bounded channel, so decoding
//! and encoding overlap and a slow sink slows the reader instead of filling memory. At most
//! `parallelism` parts run at once: memory is bounded by batch size × (queue depth + 2) ×
//! parallelism, whatever the table sizes.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::rate::Limits;
use crate::schema::{TableId, TableSchema};
use crate::sink::{PartMarker, Sink, SinkWriter, WriterOptions};
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
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Parts read and written at once.
    pub parallelism: usize,
    /// Batches buffered between a part's reader and writer.
    pub queue_depth: usize,
    /// Rows and source bytes read per second, shared by all parts (and the job's change
    /// stream).
    pub limits: Limits,
}

/// Called after a part is committed to a target table (the part's index and the target), to
/// record it in the job's checkpoint. An error stops the run.
pub type PartCommitted = Arc<dyn Fn(u32, &TableId) -> Result<()> + Send + Sync>;

/// What a snapshot run resumes from and records.
#[derive(Clone, Default)]
pub struct SnapshotProgress {
    /// The job, for part markers in the sink; `None` writes no markers.
    pub job: Option<String>,
    /// (part, target) pairs already committed by an earlier run: not written again.
    pub finished: HashSet<(u32, TableId)>,
    /// Write rows as upserts (parts read under a newer snapshot than the one the job began
    /// with, whose rows the target may partly hold already).
    pub upsert: bool,
    /// Told of every part committed.
    pub on_committed: Option<PartCommitted>,
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
    resume: SnapshotProgress,
    stop: CancellationToken,
) -> Result<()> {
    for table in progress.tables() {
        table.reset_parts();
    }
    for part in snapshot.parts() {
        if let Some(table) = progress.tables().get(part.table) {
            table.add_part();
        }
    }
    let resume = Arc::new(resume);
    let mut parts = Vec::new();
    for part in snapshot.parts() {
        let routes = flows.get(part.table).map_or(0, |flow| flow.routes.len());
        let done = flows.get(part.table).map_or(0, |flow| {
            flow.routes
                .iter()
                .filter(|route| {
                    resume
                        .finished
                        .contains(&(part.index, route.target.id.clone()))
                })
                .count()
        });
        if routes > 0 && done == routes {
            if let Some(table) = progress.tables().get(part.table) {
                table.start();
                table.part_done();
            }
            debug!(part = part.index, "part done by an earlier run");
        } else {
            parts.push(part.clone());
        }
    }
    let parallelism = options.parallelism.max(1);
    futures::stream::iter(parts.into_iter().map(Ok))
        .try_for_each_concurrent(parallelism, |part| {
            let context = PartContext {
                snapshot: Arc::clone(&snapshot),
                flows: Arc::clone(&flows),
                sink: Arc::clone(&sink),
                progress: Arc::clone(&progress),
                queue_depth: options.queue_depth.max(1),
                limits: options.limits.clone(),
                resume: Arc::clone(&resume),
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
    limits: Limits,
    resume: Arc<SnapshotProgress>,
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

        // Only the routes an earlier run did not finish for this part.
        let routes: Vec<&Route> = flow
            .routes
            .iter()
            .filter(|route| {
                !self
                    .resume
                    .finished
                    .contains(&(part.index, route.target.id.clone()))
            })
            .collect();
        let options = WriterOptions {
            upsert: self.resume.upsert,
            marker: self.resume.job.as_ref().map(|job| PartMarker {
                job: job.clone(),
                part: part.index,
            }),
        };
        let mut writers: Vec<Box<dyn SinkWriter>> = Vec::with_capacity(routes.len());
        for route in &routes {
            writers.push(self.sink.writer(&route.target, &options).await?);
        }

        // What this part counts, taken back unless it commits (a failed try is read again).
        let mut counted = PartCounts {
            table: table_progress,
            rows_read: 0,
            bytes_read: 0,
            rows_written: 0,
            committed: false,
        };
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
            tokio::select! {
                biased;
                _ = self.stop.cancelled() => return Err(Error::Stopped),
                _ = self.limits.take(batch.num_rows() as u64, batch.source_bytes) => {}
            }
            table_progress.add_read(batch.num_rows() as u64, batch.source_bytes);
            counted.rows_read += batch.num_rows() as u64;
            counted.bytes_read += batch.source_bytes;
            for (route, writer) in routes.iter().zip(writers.iter_mut()) {
                if let Some(out) = route.transform.apply(&batch)? {
                    writer.write(&out).await?;
                    table_progress.add_written(out.num_rows() as u64);
                    counted.rows_written += out.num_rows() as u64;
                }
            }
        }

        let rows = match (&mut reader.0).await {
            Ok(result) => result?,
            Err(join) => return Err(Error::Internal(format!("snapshot reader failed: {join}"))),
        };
        for (route, writer) in routes.iter().zip(writers.iter_mut()) {
            writer.commit().await?;
            if let Some(on_committed) = &self.resume.on_committed {
                on_committed(part.index, &route.target.id)?;
            }
        }
        counted.committed = true;
        table_progress.part_done();
        info!(table = %table_progress.table, part = part.index, rows, "part committed");
        Ok(())
    }
}

/// The counts of one part in flight; dropped uncommitted, it takes them back.
struct PartCounts<'a> {
    table: &'a crate::progress::TableProgress,
    rows_read: u64,
    bytes_read: u64,
    rows_written: u64,
    committed: bool,
}

impl Drop for PartCounts<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.table
                .undo(self.rows_read, self.bytes_read, self.rows_written);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
    use arrow::record_batch::RecordBatch;
    use async_trait::async_trait;

    use super::*;
    use crate::batch::ChangeBatch;
    use crate::position::Position;
    use crate::schema::TableId;
    use crate::sink::PrepareOptions;

    fn schema() -> SchemaRef {
        Arc::new(arrow::datatypes::Schema::new(vec![Field::new(
            "v",
            DataType::Int64,
            false,
        )]))
    }

    /// `parts` parts of `batches` batches of 10 consecutive values each.
    struct CountingSnapshot {
        parts: Vec<SnapshotPart>,
        batches: i64,
    }

    impl CountingSnapshot {
        fn new(parts: u32, batches: i64) -> CountingSnapshot {
            CountingSnapshot {
                parts: (0..parts)
                    .map(|index| SnapshotPart {
                        index,
                        table: 0,
                        description: format!("part {index}"),
                        range: None,
                    })
                    .collect(),
                batches,
            }
        }
    }

    #[async_trait]
    impl Snapshot for CountingSnapshot {
        fn parts(&self) -> &[SnapshotPart] {
            &self.parts
        }
        fn batch_schema(&self, _table: usize) -> SchemaRef {
            schema()
        }
        async fn read(&self, part: &SnapshotPart, out: mpsc::Sender<ChangeBatch>) -> Result<u64> {
            let table = Arc::new(TableId::new("s", "t"));
            for batch in 0..self.batches {
                let start = (part.index as i64 * self.batches + batch) * 10;
                let rows = RecordBatch::try_new(
                    schema(),
                    vec![Arc::new(Int64Array::from_iter_values(start..start + 10))],
                )
                .map_err(|e| Error::Internal(e.to_string()))?;
                let position = Position::Snapshot {
                    part: part.index,
                    offset: batch as u64 * 10,
                };
                if out
                    .send(ChangeBatch::snapshot(
                        Arc::clone(&table),
                        rows,
                        position,
                        80,
                    ))
                    .await
                    .is_err()
                {
                    return Err(Error::Internal("writer gone".into()));
                }
            }
            Ok(self.batches as u64 * 10)
        }
        async fn close(&self) -> Result<()> {
            Ok(())
        }
    }

    struct Identity;

    impl Transform for Identity {
        fn output_schema(&self) -> SchemaRef {
            schema()
        }
        fn apply(&self, batch: &ChangeBatch) -> Result<Option<ChangeBatch>> {
            Ok(Some(batch.clone()))
        }
    }

    /// Keeps values only when a writer commits; fails writes of `poison`.
    #[derive(Default)]
    struct MemorySink {
        committed: Arc<Mutex<Vec<i64>>>,
        poison: Option<i64>,
    }

    struct MemoryWriter {
        accepted: Vec<i64>,
        committed: Arc<Mutex<Vec<i64>>>,
        poison: Option<i64>,
    }

    #[async_trait]
    impl Sink for MemorySink {
        async fn identity(&self) -> crate::Result<crate::ServerIdentity> {
            Ok(crate::ServerIdentity {
                engine: "memory".into(),
                server: String::new(),
                database: None,
            })
        }

        async fn is_empty(&self, _table: &crate::TableId) -> Result<bool> {
            Ok(self.committed.lock().map(|c| c.is_empty()).unwrap_or(false))
        }

        async fn claim(&self, _job: &str, _definition: &str, _dry_run: bool) -> Result<()> {
            Ok(())
        }

        fn reserved_schema(&self, schema: &str) -> bool {
            schema == "_ferry"
        }

        fn name_limit(&self) -> crate::NameLimit {
            crate::NameLimit::Bytes(usize::MAX)
        }

        async fn lock(&self, _job: &str, _holder: &crate::Holder) -> Result<crate::SinkLock> {
            Ok(crate::SinkLock::new(()))
        }

        async fn prepare(&self, _tables: &[TableSchema], _options: &PrepareOptions) -> Result<()> {
            Ok(())
        }
        async fn writer(
            &self,
            _table: &TableSchema,
            _options: &WriterOptions,
        ) -> Result<Box<dyn SinkWriter>> {
            Ok(Box::new(MemoryWriter {
                accepted: Vec::new(),
                committed: Arc::clone(&self.committed),
                poison: self.poison,
            }))
        }
        async fn finished_parts(
            &self,
            _job: &str,
            _tables: &[TableSchema],
        ) -> Result<Vec<(u32, TableId)>> {
            Ok(Vec::new())
        }
        async fn applier(&self, _job: &str) -> Result<Box<dyn crate::sink::ChangeApplier>> {
            Err(Error::Internal("the memory sink applies no changes".into()))
        }
        async fn forget(&self, _job: &str) -> Result<()> {
            Ok(())
        }
    }

    #[async_trait]
    impl SinkWriter for MemoryWriter {
        async fn write(&mut self, batch: &ChangeBatch) -> Result<()> {
            let values = batch.rows.column(0).as_primitive::<Int64Type>();
            if values.values().iter().any(|v| Some(*v) == self.poison) {
                return Err(Error::Internal("poisoned value".into()));
            }
            self.accepted.extend(values.values().iter());
            tokio::task::yield_now().await;
            Ok(())
        }
        async fn commit(&mut self) -> Result<()> {
            self.committed.lock().unwrap().append(&mut self.accepted);
            Ok(())
        }
    }

    fn flows() -> Arc<Vec<TableFlow>> {
        Arc::new(vec![TableFlow {
            routes: vec![Route {
                transform: Arc::new(Identity),
                target: TableSchema {
                    id: TableId::new("s", "t"),
                    columns: Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)])),
                    primary_key: vec![0],
                    estimated_rows: None,
                },
            }],
        }])
    }

    async fn run(
        snapshot: CountingSnapshot,
        sink: &Arc<MemorySink>,
        stop: CancellationToken,
    ) -> (Result<()>, Arc<Progress>) {
        run_resuming(snapshot, sink, SnapshotProgress::default(), stop).await
    }

    async fn run_resuming(
        snapshot: CountingSnapshot,
        sink: &Arc<MemorySink>,
        resume: SnapshotProgress,
        stop: CancellationToken,
    ) -> (Result<()>, Arc<Progress>) {
        let progress = Arc::new(Progress::new([(TableId::new("s", "t"), None)]));
        let result = run_snapshot(
            Arc::new(snapshot),
            flows(),
            Arc::clone(sink) as Arc<dyn Sink>,
            Arc::clone(&progress),
            RunOptions {
                parallelism: 3,
                queue_depth: 2,
                limits: Limits::none(),
            },
            resume,
            stop,
        )
        .await;
        (result, progress)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_part_is_committed_once_and_counted() {
        let sink = Arc::new(MemorySink::default());
        let (result, progress) =
            run(CountingSnapshot::new(7, 5), &sink, CancellationToken::new()).await;
        result.unwrap();
        let mut values = sink.committed.lock().unwrap().clone();
        values.sort();
        assert_eq!(values, (0..350).collect::<Vec<_>>());
        let table = &progress.tables()[0];
        assert_eq!(
            (table.rows_read(), table.rows_written(), table.bytes_read()),
            (350, 350, 35 * 80)
        );
        assert_eq!(table.parts(), (7, 7));
        assert!(table.is_finished());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumed_run_skips_finished_parts_and_reports_the_rest() {
        let sink = Arc::new(MemorySink::default());
        let target = TableId::new("s", "t");
        let reported = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reported);
        let resume = SnapshotProgress {
            job: Some("job".into()),
            finished: HashSet::from([(0, target.clone()), (2, target.clone())]),
            upsert: true,
            on_committed: Some(Arc::new(move |part, table: &TableId| {
                seen.lock().unwrap().push((part, table.clone()));
                Ok(())
            })),
        };
        let (result, progress) = run_resuming(
            CountingSnapshot::new(4, 5),
            &sink,
            resume,
            CancellationToken::new(),
        )
        .await;
        result.unwrap();
        let mut values = sink.committed.lock().unwrap().clone();
        values.sort();
        let expected: Vec<i64> = (50..100).chain(150..200).collect();
        assert_eq!(values, expected, "parts 0 and 2 are not written again");
        let mut reported = reported.lock().unwrap().clone();
        reported.sort();
        assert_eq!(reported, [(1, target.clone()), (3, target)]);
        assert_eq!(progress.tables()[0].parts(), (4, 4));
        assert!(progress.tables()[0].is_finished());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_part_commits_nothing_and_fails_the_run() {
        let sink = Arc::new(MemorySink {
            poison: Some(125),
            ..MemorySink::default()
        });
        let (result, _) = run(CountingSnapshot::new(7, 5), &sink, CancellationToken::new()).await;
        assert!(result.unwrap_err().to_string().contains("poisoned"));
        // Part 2 holds values 100..150: none of them may be committed.
        let committed = sink.committed.lock().unwrap().clone();
        assert!(
            committed.iter().all(|v| !(100..150).contains(v)),
            "{committed:?}"
        );
        // Whatever was committed is whole parts.
        for part in 0..7 {
            let count = committed
                .iter()
                .filter(|v| (part * 50..part * 50 + 50).contains(*v))
                .count();
            assert!(
                count == 0 || count == 50,
                "part {part} committed {count} rows"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_run_says_so_and_commits_nothing_partial() {
        let sink = Arc::new(MemorySink::default());
        let stop = CancellationToken::new();
        stop.cancel();
        let (result, _) = run(CountingSnapshot::new(4, 50), &sink, stop).await;
        assert!(matches!(result, Err(Error::Stopped)));
        assert!(sink.committed.lock().unwrap().is_empty());
    }
}
