//! One state model and one status snapshot for every kind of job: what the CLI shows, and what
//! the service's status API serves unchanged.
//!
//! A run is `starting` (connecting, checking), `running` in a [`Phase`] (`schema`, `full`,
//! `incremental`; incremental is `catching_up` or `caught_up`), `retrying` after an external
//! failure, and ends `completed`, `stopped` or `failed`. The Redis (DCS) states are a view of
//! it: see [`JobStatus::redis_state`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_engine::{Limits, Progress, StreamProgress};
use ferry_redis::status::{MigrationState, MigrationStatus};
use ferry_sql::MigrationType;
use serde::Serialize;

/// Where a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Connecting to the servers and checking the job.
    Starting,
    /// Moving data (see the phase).
    Running,
    /// A try failed on a server or the network; the next begins after a pause.
    Retrying,
    /// Done as asked (a full migration copied; nothing more to follow).
    Completed,
    /// Stopped on request, with everything read committed.
    Stopped,
    /// Ended by an error.
    Failed,
}

/// What a running job does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Creating or checking target tables.
    Schema,
    /// Copying the snapshot (Redis: the full copy).
    Full,
    /// Following the source's changes.
    Incremental,
}

/// How far an incremental phase is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Substate {
    /// Behind the source by more than [`CAUGHT_UP_LAG`].
    CatchingUp,
    /// Within [`CAUGHT_UP_LAG`] of the source.
    CaughtUp,
}

/// Lag at or under which an incremental job counts as caught up.
pub const CAUGHT_UP_LAG: Duration = Duration::from_secs(1);

/// Rates are averaged over at least this long.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// One side of a job.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointStatus {
    /// The connector (`PostgreSQL`).
    pub engine: &'static str,
    /// The URL without credentials or parameters.
    pub url: String,
}

/// The full phase.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct FullStatus {
    /// Rows (keys) done.
    pub rows_done: u64,
    /// The source's estimate of the rows (keys) in all, when it gives one.
    pub rows_total_estimate: Option<u64>,
    /// Tables done and in all (Redis: none).
    pub tables_done: u64,
    /// Tables in all.
    pub tables_total: u64,
    /// Source bytes read.
    pub bytes_done: u64,
    /// Done of the estimate, 0–100, at most 99.9 until every table is done.
    pub percent: Option<f64>,
    /// Rows (keys) a second, lately.
    pub rows_per_sec: f64,
    /// Source megabytes (2^20 bytes) a second, lately.
    pub mb_per_sec: f64,
    /// Whether the phase is done.
    pub finished: bool,
}

/// The incremental phase.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct IncrementalStatus {
    /// Seconds since the oldest change not yet applied was committed (0 when caught up).
    pub lag_seconds: f64,
    /// Log bytes the source has written past what is applied, when known.
    pub lag_bytes: Option<u64>,
    /// The position the sink holds.
    pub checkpoint: Option<String>,
    /// Change rows (Redis: commands) applied.
    pub rows_applied: u64,
    /// Source transactions applied (tables only).
    pub transactions_applied: u64,
    /// Change rows (commands) a second, lately.
    pub rows_per_sec: f64,
    /// Source megabytes a second, lately.
    pub mb_per_sec: f64,
}

/// One source table of a table job's full phase.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TableStatus {
    /// The source table (`public.orders`).
    pub source_table: String,
    /// `not_started`, `migrating` or `finished`.
    pub status: &'static str,
    /// Rows read.
    pub rows_done: u64,
    /// The source's estimate of its rows.
    pub rows_total_estimate: Option<u64>,
    /// Snapshot parts committed.
    pub parts_done: u32,
    /// Snapshot parts in all.
    pub parts_total: u32,
}

/// The limits in force.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LimitsStatus {
    /// Rows (keys, commands) a second; none when unlimited.
    pub rows_per_sec: Option<u64>,
    /// Source megabytes (10^6 bytes) a second; none when unlimited.
    pub mb_per_sec: Option<f64>,
}

/// The last failure.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ErrorStatus {
    /// `user error`, `external error` or `internal error`.
    pub class: String,
    /// What failed and what to do.
    pub message: String,
    /// Whether the job tries again.
    pub retrying: bool,
    /// Tries made since the job's point last moved.
    pub retries: u32,
}

/// A job's status at one moment: complete and serialisable.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// Where it reads.
    pub source: EndpointStatus,
    /// Where it writes.
    pub sink: EndpointStatus,
    /// The migration types it runs.
    pub types: Vec<MigrationType>,
    /// Where the run is.
    pub state: RunState,
    /// What it does while running (or did when it ended).
    pub phase: Option<Phase>,
    /// In the incremental phase, whether it is caught up.
    pub substate: Option<Substate>,
    /// The state as the Redis migration services name it (`FULL_MIGRATING`).
    pub redis_state: &'static str,
    /// The full phase, when the job runs one.
    pub full: Option<FullStatus>,
    /// The incremental phase, once it began.
    pub incremental: Option<IncrementalStatus>,
    /// Per source table, the full phase (table jobs).
    pub tables: Vec<TableStatus>,
    /// The limits in force.
    pub limits: LimitsStatus,
    /// The last failure, if any.
    pub error: Option<ErrorStatus>,
}

impl RunState {
    /// This state (in `phase`) as the Redis migration services (DCS) name it.
    pub fn redis_name(self, phase: Option<Phase>) -> &'static str {
        match (self, phase) {
            (RunState::Starting | RunState::Retrying, _) => "CONNECTING",
            (RunState::Running, Some(Phase::Incremental)) => "INCR_MIGRATING",
            (RunState::Running, _) => "FULL_MIGRATING",
            (RunState::Completed, _) => "SUCCESS",
            (RunState::Stopped, _) => "TERMINATED",
            (RunState::Failed, _) => "FAILED",
        }
    }
}

/// The live counters of a run.
#[derive(Clone)]
pub enum Counters {
    /// A table job's snapshot and stream counters.
    Tables {
        /// Per table, the snapshot.
        progress: Arc<Progress>,
        /// The change stream.
        streaming: Arc<StreamProgress>,
    },
    /// A Redis job's counters, and the keys the source held when it began.
    Keys {
        /// State and counters.
        status: Arc<MigrationStatus>,
        /// Keys at the source when the job began.
        keys_total: u64,
    },
}

#[derive(Default)]
struct Rate {
    at: Option<Instant>,
    units: u64,
    bytes: u64,
    per_second: f64,
    mb_per_second: f64,
}

impl Rate {
    /// Rates from counters now at `units` and `bytes`, over at least [`RATE_WINDOW`].
    fn sample(&mut self, units: u64, bytes: u64) -> (f64, f64) {
        let now = Instant::now();
        match self.at {
            Some(at) if now.duration_since(at) < RATE_WINDOW => {}
            Some(at) => {
                let seconds = now.duration_since(at).as_secs_f64();
                self.per_second = units.saturating_sub(self.units) as f64 / seconds;
                self.mb_per_second =
                    bytes.saturating_sub(self.bytes) as f64 / seconds / f64::from(1 << 20);
                (self.at, self.units, self.bytes) = (Some(now), units, bytes);
            }
            None => (self.at, self.units, self.bytes) = (Some(now), units, bytes),
        }
        (self.per_second, self.mb_per_second)
    }
}

impl Board {
    /// The run's state and phase: a Redis connector's own state is the finer one while it
    /// runs.
    fn current(&self) -> (RunState, Option<Phase>) {
        let (state, phase) = (self.state, self.phase);
        let Some(Counters::Keys { status, .. }) = &self.counters else {
            return (state, phase);
        };
        if state != RunState::Running && state != RunState::Starting {
            return (state, phase);
        }
        match status.state() {
            MigrationState::Connecting => (RunState::Starting, phase),
            MigrationState::FullMigrating => (RunState::Running, Some(Phase::Full)),
            MigrationState::IncrMigrating => (RunState::Running, Some(Phase::Incremental)),
            MigrationState::Success => (RunState::Completed, phase),
            MigrationState::Failed => (RunState::Failed, phase),
            MigrationState::Terminated => (RunState::Stopped, phase),
        }
    }
}

struct Board {
    state: RunState,
    phase: Option<Phase>,
    counters: Option<Counters>,
    error: Option<ErrorStatus>,
    lag_bytes: Option<u64>,
    full_rate: Rate,
    stream_rate: Rate,
}

/// Where a run keeps what its status snapshot is made of; shared with whoever asks.
pub struct StatusBoard {
    name: String,
    source: EndpointStatus,
    sink: EndpointStatus,
    types: Vec<MigrationType>,
    limits: Limits,
    board: Mutex<Board>,
}

impl StatusBoard {
    pub(crate) fn new(
        name: String,
        source: EndpointStatus,
        sink: EndpointStatus,
        types: Vec<MigrationType>,
        limits: Limits,
    ) -> StatusBoard {
        StatusBoard {
            name,
            source,
            sink,
            types,
            limits,
            board: Mutex::new(Board {
                state: RunState::Starting,
                phase: None,
                counters: None,
                error: None,
                lag_bytes: None,
                full_rate: Rate::default(),
                stream_rate: Rate::default(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Board) -> T) -> T {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut board)
    }

    pub(crate) fn set_state(&self, state: RunState) {
        self.with(|b| b.state = state);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.with(|b| {
            b.state = RunState::Running;
            b.phase = Some(phase);
        });
    }

    pub(crate) fn set_counters(&self, counters: Counters) {
        self.with(|b| b.counters = Some(counters));
    }

    pub(crate) fn set_lag_bytes(&self, bytes: Option<u64>) {
        self.with(|b| b.lag_bytes = bytes);
    }

    pub(crate) fn failed(&self, error: &ferry_engine::Error, retrying: bool, retries: u32) {
        self.with(|b| {
            b.state = if retrying {
                RunState::Retrying
            } else {
                RunState::Failed
            };
            b.error = Some(ErrorStatus {
                class: error.class().to_string(),
                message: error.to_string(),
                retrying,
                retries,
            });
        });
    }

    /// The phase the run is in now, without sampling rates or building a snapshot.
    pub fn phase(&self) -> Option<Phase> {
        self.with(|b| b.current().1)
    }

    /// The status now.
    pub fn snapshot(&self) -> JobStatus {
        let limits = LimitsStatus {
            rows_per_sec: Some(self.limits.rows.per_second()).filter(|&n| n > 0),
            mb_per_sec: Some(self.limits.bytes.per_second())
                .filter(|&n| n > 0)
                .map(|n| n as f64 / 1e6),
        };
        let runs_full = self.types.contains(&MigrationType::Full);
        self.with(|b| {
            let (state, phase) = b.current();
            let (mut full, mut incremental, mut table_list) = (None, None, Vec::new());
            match b.counters.clone() {
                Some(Counters::Tables {
                    progress,
                    streaming,
                }) => {
                    if runs_full {
                        full = Some(table_full(&progress, &mut b.full_rate));
                        table_list = progress.tables().iter().map(table_status).collect();
                    }
                    if phase == Some(Phase::Incremental) {
                        let (rows_per_sec, mb_per_sec) = b
                            .stream_rate
                            .sample(streaming.rows_applied(), streaming.bytes_read());
                        let lag = streaming.lag();
                        incremental = Some(IncrementalStatus {
                            lag_seconds: lag.seconds,
                            lag_bytes: lag.bytes,
                            checkpoint: streaming.applied_position().map(|p| p.to_string()),
                            rows_applied: streaming.rows_applied(),
                            transactions_applied: streaming.transactions_applied(),
                            rows_per_sec,
                            mb_per_sec,
                        });
                    }
                }
                Some(Counters::Keys { status, keys_total }) => {
                    let in_stream = phase == Some(Phase::Incremental);
                    let (keys_per_sec, full_mb) = if in_stream {
                        (0.0, 0.0)
                    } else {
                        b.full_rate.sample(status.keys(), status.bytes())
                    };
                    full = Some(FullStatus {
                        rows_done: status.keys(),
                        rows_total_estimate: Some(keys_total),
                        tables_done: 0,
                        tables_total: 0,
                        bytes_done: status.bytes(),
                        percent: Some(percent(status.keys(), Some(keys_total), in_stream)),
                        rows_per_sec: keys_per_sec,
                        mb_per_sec: full_mb,
                        finished: in_stream,
                    });
                    if in_stream {
                        let (rows_per_sec, mb_per_sec) =
                            b.stream_rate.sample(status.commands(), status.bytes());
                        incremental = Some(IncrementalStatus {
                            lag_seconds: 0.0,
                            lag_bytes: b.lag_bytes,
                            checkpoint: Some(status.offset().to_string()),
                            rows_applied: status.commands(),
                            transactions_applied: 0,
                            rows_per_sec,
                            mb_per_sec,
                        });
                    }
                }
                None => {}
            }
            let substate = incremental.as_ref().map(|i| {
                if i.lag_seconds <= CAUGHT_UP_LAG.as_secs_f64() && i.lag_bytes.unwrap_or(0) == 0 {
                    Substate::CaughtUp
                } else {
                    Substate::CatchingUp
                }
            });
            JobStatus {
                name: self.name.clone(),
                source: self.source.clone(),
                sink: self.sink.clone(),
                types: self.types.clone(),
                state,
                phase,
                substate,
                redis_state: state.redis_name(phase),
                full,
                incremental,
                tables: table_list,
                limits,
                error: b.error.clone(),
            }
        })
    }
}

/// Done of `total`, 0–100, held under 100 until `finished`.
fn percent(done: u64, total: Option<u64>, finished: bool) -> f64 {
    if finished {
        return 100.0;
    }
    let total = total.unwrap_or(0).max(done).max(1);
    (done as f64 * 100.0 / total as f64).min(99.9)
}

fn table_status(table: &ferry_engine::TableProgress) -> TableStatus {
    let (parts_done, parts_total) = table.parts();
    TableStatus {
        source_table: table.table.to_string(),
        status: if table.is_finished() {
            "finished"
        } else if table.rows_read() > 0 || parts_done > 0 {
            "migrating"
        } else {
            "not_started"
        },
        rows_done: table.rows_read(),
        rows_total_estimate: table.estimated_rows,
        parts_done,
        parts_total,
    }
}

fn table_full(progress: &Progress, rate: &mut Rate) -> FullStatus {
    let tables = progress.tables();
    let done = tables.iter().filter(|t| t.is_finished()).count() as u64;
    let rows: u64 = tables.iter().map(|t| t.rows_read()).sum();
    let bytes: u64 = tables.iter().map(|t| t.bytes_read()).sum();
    let estimate = tables.iter().map(|t| t.estimated_rows).sum::<Option<u64>>();
    let finished = !tables.is_empty() && done == tables.len() as u64;
    let (rows_per_sec, mb_per_sec) = if finished {
        (0.0, 0.0)
    } else {
        rate.sample(rows, bytes)
    };
    FullStatus {
        rows_done: rows,
        rows_total_estimate: estimate,
        tables_done: done,
        tables_total: tables.len() as u64,
        bytes_done: bytes,
        percent: Some(percent(rows, estimate, finished)),
        rows_per_sec,
        mb_per_sec,
        finished,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redis_states_are_a_view_of_the_one_model() {
        assert_eq!(RunState::Starting.redis_name(None), "CONNECTING");
        assert_eq!(
            RunState::Running.redis_name(Some(Phase::Full)),
            "FULL_MIGRATING"
        );
        assert_eq!(
            RunState::Running.redis_name(Some(Phase::Incremental)),
            "INCR_MIGRATING"
        );
        assert_eq!(RunState::Completed.redis_name(Some(Phase::Full)), "SUCCESS");
        assert_eq!(RunState::Failed.redis_name(None), "FAILED");
        assert_eq!(RunState::Stopped.redis_name(None), "TERMINATED");
    }

    #[test]
    fn percent_stays_under_100_until_done() {
        assert_eq!(percent(50, Some(100), false), 50.0);
        assert_eq!(percent(150, Some(100), false), 99.9);
        assert_eq!(percent(0, None, false), 0.0);
        assert_eq!(percent(10, Some(100), true), 100.0);
    }

    #[test]
    fn a_snapshot_serialises_with_every_part() {
        let board = StatusBoard::new(
            "orders".into(),
            EndpointStatus {
                engine: "PostgreSQL",
                url: "postgres://h:1/shop".into(),
            },
            EndpointStatus {
                engine: "MySQL/MariaDB",
                url: "mysql://h:2/".into(),
            },
            vec![MigrationType::Full, MigrationType::Incremental],
            Limits::new(500, 2_000_000),
        );
        let progress = Arc::new(Progress::new([(
            ferry_engine::TableId::new("shop", "orders"),
            Some(10),
        )]));
        board.set_counters(Counters::Tables {
            progress,
            streaming: Arc::new(StreamProgress::default()),
        });
        board.set_phase(Phase::Full);
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(json["phase"], "full");
        assert_eq!(json["redis_state"], "FULL_MIGRATING");
        assert_eq!(json["full"]["tables_total"], 1);
        assert_eq!(json["full"]["rows_total_estimate"], 10);
        assert_eq!(json["limits"]["rows_per_sec"], 500);
        assert_eq!(json["limits"]["mb_per_sec"], 2.0);
        assert!(json["incremental"].is_null());
        board.failed(&ferry_engine::Error::Internal("x".into()), true, 2);
        let json = serde_json::to_value(board.snapshot()).unwrap();
        assert_eq!(json["state"], "retrying");
        assert_eq!(json["error"]["retries"], 2);
    }
}
