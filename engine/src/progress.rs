//! Progress counters shared between the pipeline (which counts) and the CLI (which shows
//! progress bars, log lines and the final summary).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

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
