//! Progress counters shared between the pipeline (which counts) and the CLI (which shows
//! progress bars, log lines and the final summary).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::position::Position;
use crate::schema::TableId;

/// Counters for one source table.
#[derive(Debug)]
pub struct TableProgress {
    /// The source table.
    pub table: TableId,
    /// The source's row estimate, when it has one.
    pub estimated_rows: Option<u64>,
    rows_read: AtomicU64,
    bytes_read: AtomicU64,
    rows_written: AtomicU64,
    parts_total: AtomicU32,
    parts_done: AtomicU32,
    started: OnceLock<Instant>,
    finished: Mutex<Option<Instant>>,
}

impl TableProgress {
    fn new(table: TableId, estimated_rows: Option<u64>) -> TableProgress {
        TableProgress {
            table,
            estimated_rows,
            rows_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            rows_written: AtomicU64::new(0),
            parts_total: AtomicU32::new(0),
            parts_done: AtomicU32::new(0),
            started: OnceLock::new(),
            finished: Mutex::new(None),
        }
    }

    /// Rows read from the source so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Source wire bytes read so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Rows written to the sink so far (after filters; a row routed to two targets counts
    /// twice).
    pub fn rows_written(&self) -> u64 {
        self.rows_written.load(Ordering::Relaxed)
    }

    /// Parts finished and committed, out of all parts.
    pub fn parts(&self) -> (u32, u32) {
        (
            self.parts_done.load(Ordering::Relaxed),
            self.parts_total.load(Ordering::Relaxed),
        )
    }

    /// Whether every part of the table is committed.
    pub fn is_finished(&self) -> bool {
        self.finished.lock().map(|f| f.is_some()).unwrap_or(false)
    }

    /// Time from the first read to the last commit (or to now while running).
    pub fn elapsed(&self) -> Duration {
        let Some(started) = self.started.get() else {
            return Duration::ZERO;
        };
        let end = self
            .finished
            .lock()
            .ok()
            .and_then(|f| *f)
            .unwrap_or_else(Instant::now);
        end.saturating_duration_since(*started)
    }

    pub(crate) fn start(&self) {
        self.started.get_or_init(Instant::now);
    }

    pub(crate) fn add_read(&self, rows: u64, bytes: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_written(&self, rows: u64) {
        self.rows_written.fetch_add(rows, Ordering::Relaxed);
    }

    /// Takes back what a part that did not commit had counted: it is read again, and a
    /// summary counts each row once.
    pub(crate) fn undo(&self, rows_read: u64, bytes_read: u64, rows_written: u64) {
        self.rows_read.fetch_sub(rows_read, Ordering::Relaxed);
        self.bytes_read.fetch_sub(bytes_read, Ordering::Relaxed);
        self.rows_written.fetch_sub(rows_written, Ordering::Relaxed);
    }

    /// Forgets the parts counted by an earlier attempt of the same run.
    pub(crate) fn reset_parts(&self) {
        self.parts_total.store(0, Ordering::Relaxed);
        self.parts_done.store(0, Ordering::Relaxed);
    }

    pub(crate) fn add_part(&self) {
        self.parts_total.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn part_done(&self) {
        let done = self.parts_done.fetch_add(1, Ordering::Relaxed) + 1;
        if done == self.parts_total.load(Ordering::Relaxed) {
            if let Ok(mut finished) = self.finished.lock() {
                *finished = Some(Instant::now());
            }
        }
    }
}

/// Progress of a whole run: one entry per source table, in request order.
#[derive(Debug)]
pub struct Progress {
    tables: Vec<TableProgress>,
    started: Instant,
}

impl Progress {
    /// Counters for these tables (id and estimated rows), all at zero.
    pub fn new(tables: impl IntoIterator<Item = (TableId, Option<u64>)>) -> Progress {
        Progress {
            tables: tables
                .into_iter()
                .map(|(id, estimate)| TableProgress::new(id, estimate))
                .collect(),
            started: Instant::now(),
        }
    }

    /// The per-table counters, in request order.
    pub fn tables(&self) -> &[TableProgress] {
        &self.tables
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Rows and bytes read over all tables.
    pub fn totals(&self) -> (u64, u64) {
        self.tables.iter().fold((0, 0), |(rows, bytes), t| {
            (rows + t.rows_read(), bytes + t.bytes_read())
        })
    }
}

/// Counters of a change stream, shared between the change runtime and the CLI.
#[derive(Debug)]
pub struct StreamProgress {
    started: Instant,
    rows_read: AtomicU64,
    bytes_read: AtomicU64,
    rows_applied: AtomicU64,
    transactions_applied: AtomicU64,
    state: Mutex<StreamState>,
}

#[derive(Debug, Default)]
struct StreamState {
    applied: Option<Position>,
    applied_commit_time: Option<SystemTime>,
    source: Option<Position>,
    source_seen_at: Option<SystemTime>,
}

/// How far the sink is behind the source.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Lag {
    /// Log bytes the source has written past the last applied transaction, when known.
    pub bytes: Option<u64>,
    /// Time since the oldest change not yet applied was committed at the source (zero when
    /// caught up).
    pub seconds: f64,
}

impl Default for StreamProgress {
    fn default() -> Self {
        StreamProgress::new(None)
    }
}

impl StreamProgress {
    /// Counters at zero; `applied` is where the sink already is.
    pub fn new(applied: Option<Position>) -> StreamProgress {
        StreamProgress {
            started: Instant::now(),
            rows_read: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            rows_applied: AtomicU64::new(0),
            transactions_applied: AtomicU64::new(0),
            state: Mutex::new(StreamState {
                applied,
                ..StreamState::default()
            }),
        }
    }

    pub(crate) fn read(&self, rows: u64, bytes: u64) {
        self.rows_read.fetch_add(rows, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn applied(
        &self,
        position: &Position,
        committed_at: SystemTime,
        rows: u64,
        transactions: u64,
    ) {
        self.rows_applied.fetch_add(rows, Ordering::Relaxed);
        self.transactions_applied
            .fetch_add(transactions, Ordering::Relaxed);
        if let Ok(mut state) = self.state.lock() {
            state.applied = Some(position.clone());
            state.applied_commit_time = Some(committed_at);
        }
    }

    pub(crate) fn source_at(&self, position: &Position, at: SystemTime) {
        if let Ok(mut state) = self.state.lock() {
            if state.source.as_ref().is_none_or(|seen| seen < position) {
                state.source = Some(position.clone());
            }
            state.source_seen_at = Some(at);
        }
    }

    /// Change rows read from the source (before rules).
    pub fn rows_read(&self) -> u64 {
        self.rows_read.load(Ordering::Relaxed)
    }

    /// Source wire bytes of the changes read.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Change rows applied to the sink (after rules).
    pub fn rows_applied(&self) -> u64 {
        self.rows_applied.load(Ordering::Relaxed)
    }

    /// Source transactions applied.
    pub fn transactions_applied(&self) -> u64 {
        self.transactions_applied.load(Ordering::Relaxed)
    }

    /// The last applied position.
    pub fn applied_position(&self) -> Option<Position> {
        self.state.lock().ok().and_then(|s| s.applied.clone())
    }

    /// Time since streaming started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// How far behind the source the sink is, as of the last word from the source.
    pub fn lag(&self) -> Lag {
        let Ok(state) = self.state.lock() else {
            return Lag::default();
        };
        let bytes = match (&state.source, &state.applied) {
            (
                Some(Position::Postgres { lsn: source }),
                Some(Position::Postgres { lsn: applied }),
            ) => Some(source.saturating_sub(*applied)),
            (
                Some(Position::Mysql {
                    file: source_file,
                    offset: source,
                    ..
                }),
                Some(Position::Mysql { file, offset, .. }),
            ) if source_file == file => Some(source.saturating_sub(*offset)),
            _ => None,
        };
        // Caught up when the source said it was idle at or before what is applied.
        let caught_up = bytes == Some(0)
            || matches!((state.source_seen_at, state.applied_commit_time), (Some(seen), Some(applied)) if seen <= applied);
        let seconds = match state.applied_commit_time {
            Some(committed) if !caught_up => SystemTime::now()
                .duration_since(committed)
                .map_or(0.0, |d| d.as_secs_f64()),
            _ => 0.0,
        };
        Lag { bytes, seconds }
    }
}
