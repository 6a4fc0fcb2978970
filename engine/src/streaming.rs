//! The change runtime: follows a change stream, transforms each change for every rule that
//! selects its table, coalesces whole source transactions per target table and applies them
//! to the sink in groups, one sink transaction per group, with the group's source position
//! committed inside it. Only then is the position acknowledged to the source and saved in the
//! checkpoint, so a crash anywhere repeats nothing and skips nothing.
//!
//! The stream is read by its own task, a bounded channel ahead of the applier, so decoding
//! overlaps with applying and a slow sink slows the reader instead of filling memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::changes::{ChangeEvent, ChangeStream};
use crate::coalesce::Coalescer;
use crate::error::{Error, Result};
use crate::pipeline::TableFlow;
use crate::position::Position;
use crate::progress::StreamProgress;
use crate::rate::Limits;
use crate::schema::TableId;
use crate::sink::ChangeApplier;

/// Called after each group is committed at the sink, with its position, to save it in the
/// job's checkpoint. An error stops the run.
pub type GroupCommitted = Arc<dyn Fn(&Position) -> Result<()> + Send + Sync>;

/// How the change runtime groups work.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Rows of changes held before the group is applied (whole transactions still go
    /// together; one transaction larger than this is applied in pieces inside one sink
    /// transaction).
    pub group_rows: usize,
    /// Longest a committed transaction waits for more to join its group.
    pub max_delay: Duration,
    /// Change rows decoded ahead of the applier (an event without rows counts as one), so
    /// the source keeps streaming the next group while the sink applies this one.
    pub read_ahead_rows: usize,
    /// Change rows and source bytes read per second (shared with the job's snapshot).
    pub limits: Limits,
}

/// Where changes go: the source tables a stream sends (in change-request order) and the
/// routes of each.
#[derive(Clone)]
pub struct ChangeRouting {
    /// The source tables, indexed like the change request's tables.
    pub tables: Vec<TableId>,
    /// The routes of each table, indexed the same way.
    pub flows: Arc<Vec<TableFlow>>,
}

/// Follows `stream` until `stop` is cancelled or the stream fails: every change goes through
/// the routes of its table in `routing` into
/// `applier`. `applied` is the position the sink already holds; `on_committed` hears of each
/// group committed after it.
///
/// Returns `Ok` when stopped after committing everything read so far.
pub async fn run_changes(
    stream: Box<dyn ChangeStream>,
    routing: ChangeRouting,
    applier: Box<dyn ChangeApplier>,
    progress: Arc<StreamProgress>,
    options: StreamOptions,
    on_committed: Option<GroupCommitted>,
    stop: CancellationToken,
) -> Result<()> {
    // Unbounded channel, bounded by the row budget the reader takes from before sending.
    let (events, mut receiver) = mpsc::unbounded_channel();
    let budget = ReadAhead::new(options.read_ahead_rows);
    let (acknowledge, acknowledgements) = mpsc::unbounded_channel();
    let reader_stop = stop.child_token();
    let reader = tokio::spawn(read_stream(
        stream,
        events,
        budget.clone(),
        acknowledgements,
        reader_stop.clone(),
    ));
    let _stop_reader = reader_stop.drop_guard();
    // After a sink commit: record the position in the checkpoint, then acknowledge it.
    let report = |group: &mut Group| -> Result<()> {
        if let Some(position) = group.take_committed() {
            if let Some(on_committed) = &on_committed {
                on_committed(&position)?;
            }
            let _ = acknowledge.send(position);
        }
        Ok(())
    };
    let mut group = Group::new(&routing.tables, routing.flows, applier, progress, options);
    let result = async {
        loop {
            let wait = group.flush_deadline();
            let event = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = sleep_until(wait) => {
                    group.flush().await?;
                    report(&mut group)?;
                    continue;
                }
                event = receiver.recv() => event,
            };
            let Some((event, weight)) = event else { break };
            budget.release(weight);
            match event? {
                ChangeEvent::Rows(batch) => group.rows(&batch).await?,
                ChangeEvent::Truncate(tables) => group.truncate(&tables),
                ChangeEvent::Commit {
                    position,
                    committed_at,
                } => {
                    group.commit(position, committed_at);
                    if group.is_full() {
                        group.flush().await?;
                    }
                }
                ChangeEvent::Idle { position, at } => {
                    group.progress.source_at(&position, at);
                    if !group.in_transaction {
                        group.flush().await?;
                        group.idle(position).await?;
                    }
                }
            }
            report(&mut group)?;
        }
        // Stopped or the stream ended: what is committed at the source and read is applied.
        group.flush().await?;
        report(&mut group)?;
        Ok(())
    }
    .await;
    reader.abort();
    result
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The rows read but not yet taken by the applier, bounded.
#[derive(Clone)]
struct ReadAhead {
    permits: Arc<Semaphore>,
    limit: usize,
}

impl ReadAhead {
    fn new(rows: usize) -> ReadAhead {
        let limit = rows.clamp(1, 1 << 30);
        ReadAhead {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The share of the budget `event` takes: its rows, at least one, at most all.
    fn weight(&self, event: &Result<ChangeEvent>) -> usize {
        let rows = match event {
            Ok(ChangeEvent::Rows(batch)) => batch.num_rows(),
            _ => 1,
        };
        rows.clamp(1, self.limit)
    }

    /// Waits until `weight` rows fit; false when the applier is gone.
    async fn take(&self, weight: usize) -> bool {
        match self.permits.acquire_many(weight as u32).await {
            Ok(permit) => {
                permit.forget();
                true
            }
            Err(_) => false,
        }
    }

    fn release(&self, weight: usize) {
        self.permits.add_permits(weight);
    }
}

/// Reads the stream into `events`, within the read-ahead budget, and passes acknowledgements
/// back to it.
async fn read_stream(
    mut stream: Box<dyn ChangeStream>,
    events: mpsc::UnboundedSender<(Result<ChangeEvent>, usize)>,
    budget: ReadAhead,
    mut acknowledgements: mpsc::UnboundedReceiver<Position>,
    stop: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            Some(position) = acknowledgements.recv() => {
                stream.acknowledge(&position);
                continue;
            }
            event = stream.next() => event,
        };
        let failed = event.is_err();
        let Some(event) = event.transpose() else {
            return;
        };
        let weight = budget.weight(&event);
        // Acknowledgements still pass while the budget is spent.
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some(position) = acknowledgements.recv() => stream.acknowledge(&position),
                taken = budget.take(weight) => {
                    if !taken {
                        return;
                    }
                    break;
                }
            }
        }
        if events.send((event, weight)).is_err() || failed {
            return;
        }
    }
}

/// The transactions read but not yet applied, coalesced per target table.
struct Group {
    /// Source table → index into `flows`.
    tables: HashMap<TableId, usize>,
    flows: Arc<Vec<TableFlow>>,
    applier: Box<dyn ChangeApplier>,
    progress: Arc<StreamProgress>,
    options: StreamOptions,
    coalescers: HashMap<TableId, Coalescer>,
    /// Target tables in the order their first change arrived, so segments apply in a stable
    /// order.
    order: Vec<TableId>,
    /// Rows held in the coalescers.
    rows: usize,
    /// Rows of the group already applied in the open sink transaction (a large transaction
    /// is applied in pieces).
    applied_rows: usize,
    /// The last transaction read whole, not yet applied, and when its group began.
    pending: Option<(Position, std::time::SystemTime)>,
    group_started: Option<Instant>,
    /// Transactions in the group.
    transactions: u64,
    /// A position committed at the sink, not yet reported.
    committed: Option<Position>,
    /// Rows of a transaction whose commit has not been read yet are held: nothing may be
    /// committed at the sink until it is whole.
    in_transaction: bool,
}

impl Group {
    fn new(
        tables: &[TableId],
        flows: Arc<Vec<TableFlow>>,
        applier: Box<dyn ChangeApplier>,
        progress: Arc<StreamProgress>,
        options: StreamOptions,
    ) -> Group {
        Group {
            tables: tables
                .iter()
                .enumerate()
                .map(|(index, table)| (table.clone(), index))
                .collect(),
            flows,
            applier,
            progress,
            options,
            coalescers: HashMap::new(),
            order: Vec::new(),
            rows: 0,
            applied_rows: 0,
            pending: None,
            group_started: None,
            transactions: 0,
            committed: None,
            in_transaction: false,
        }
    }

    fn flush_deadline(&self) -> Option<Instant> {
        if self.in_transaction {
            return None;
        }
        self.pending
            .as_ref()
            .and(self.group_started)
            .map(|started| started + self.options.max_delay)
    }

    fn is_full(&self) -> bool {
        self.rows + self.applied_rows >= self.options.group_rows
    }

    fn coalescer(&mut self, target: &crate::schema::TableSchema) -> Result<&mut Coalescer> {
        if !self.coalescers.contains_key(&target.id) {
            let coalescer = Coalescer::new(
                Arc::new(target.id.clone()),
                Arc::clone(&target.columns),
                target.primary_key.clone(),
            )?;
            self.coalescers.insert(target.id.clone(), coalescer);
            self.order.push(target.id.clone());
        }
        self.coalescers
            .get_mut(&target.id)
            .ok_or_else(|| Error::Internal("coalescer vanished".into()))
    }

    async fn rows(&mut self, batch: &crate::batch::ChangeBatch) -> Result<()> {
        self.in_transaction = true;
        let Some(&table) = self.tables.get(batch.table.as_ref()) else {
            return Err(Error::Internal(format!(
                "the change stream sent rows of {}, which no rule selects",
                batch.table
            )));
        };
        self.options
            .limits
            .take(batch.num_rows() as u64, batch.source_bytes)
            .await;
        self.group_started.get_or_insert_with(Instant::now);
        self.progress
            .read(batch.num_rows() as u64, batch.source_bytes);
        let flows = Arc::clone(&self.flows);
        for route in &flows[table].routes {
            if let Some(out) = route.transform.apply(batch)? {
                self.rows += out.num_rows();
                self.coalescer(&route.target)?.push(&out)?;
            }
        }
        // One huge transaction: apply what is held so far inside the open sink transaction,
        // so memory stays bounded by the group size.
        if self.rows >= self.options.group_rows.saturating_mul(2) {
            self.apply_held().await?;
        }
        Ok(())
    }

    fn truncate(&mut self, tables: &[usize]) {
        self.in_transaction = true;
        let flows = Arc::clone(&self.flows);
        for &table in tables {
            for route in flows.get(table).map_or(&[][..], |f| &f.routes[..]) {
                if let Ok(coalescer) = self.coalescer(&route.target) {
                    coalescer.truncate();
                }
            }
        }
        self.group_started.get_or_insert_with(Instant::now);
    }

    fn commit(&mut self, position: Position, committed_at: std::time::SystemTime) {
        self.in_transaction = false;
        self.group_started.get_or_insert_with(Instant::now);
        self.pending = Some((position, committed_at));
        self.transactions += 1;
    }

    async fn apply_held(&mut self) -> Result<()> {
        for table in &self.order {
            if let Some(coalescer) = self.coalescers.get_mut(table) {
                let changes = coalescer.finish()?;
                if !changes.is_empty() {
                    self.applier.apply(&changes).await?;
                }
            }
        }
        self.applied_rows += self.rows;
        self.rows = 0;
        Ok(())
    }

    /// Applies and commits every whole transaction read. Does nothing inside a transaction.
    async fn flush(&mut self) -> Result<()> {
        if self.in_transaction {
            return Ok(());
        }
        let Some((position, committed_at)) = self.pending.take() else {
            return Ok(());
        };
        self.apply_held().await?;
        self.applier.commit(&position).await?;
        let rows = std::mem::take(&mut self.applied_rows);
        debug!(%position, rows, transactions = self.transactions, "group committed");
        self.progress
            .applied(&position, committed_at, rows as u64, self.transactions);
        self.transactions = 0;
        self.group_started = None;
        self.committed = Some(position);
        Ok(())
    }

    /// The source has sent everything up to `position` and all of it is applied: record
    /// that position too, so the source may recycle its log (a server shutting down waits
    /// for exactly this) and a restart resumes there.
    async fn idle(&mut self, position: Position) -> Result<()> {
        let caught_up = !self.in_transaction
            && self.pending.is_none()
            && self.rows == 0
            && self.applied_rows == 0;
        let ahead = self
            .progress
            .applied_position()
            .is_none_or(|applied| applied.comparable(&position) && applied < position);
        if caught_up && ahead {
            self.applier.commit(&position).await?;
            self.progress.applied(&position, SystemTime::now(), 0, 0);
            self.committed = Some(position);
        }
        Ok(())
    }

    fn take_committed(&mut self) -> Option<Position> {
        self.committed.take()
    }
}

/// Logs where a stream resumes.
pub fn log_resume(applied: Option<&Position>) {
    match applied {
        Some(position) => info!(%position, "streaming changes after the last applied position"),
        None => info!("streaming changes from the start of the feed"),
    }
}
