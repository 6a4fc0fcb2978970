//! The one run context every kind of job runs under: a stop signal, live limits, the retry
//! policy, events for the front end, and the status board the job's status snapshot is read
//! from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_engine::{Error, Limits, RetryPolicy};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::spec::JobSpec;
use crate::status::{Counters, EndpointStatus, JobStatus, Phase, RunState, StatusBoard};

/// What a running job tells its front end, in order.
#[derive(Clone)]
pub enum Event {
    /// The job's live counters, once it knows what it moves: a front end draws progress
    /// from them.
    Counters(Counters),
    /// A phase began.
    Phase(Phase),
    /// A try failed on a server or the network; the next begins after `delay`.
    Retrying {
        /// What failed.
        error: String,
        /// This try's number since the job's point last moved.
        try_number: u32,
        /// Tries allowed (`None`: as long as it takes).
        of: Option<u32>,
        /// The pause before the next try.
        delay: Duration,
    },
    /// The limits changed while the job runs.
    LimitsChanged {
        /// Rows a second (0: none).
        rows_per_second: u64,
        /// Source bytes a second (0: none).
        bytes_per_second: u64,
    },
    /// The job was asked to stop.
    Stopping,
}

/// Megabytes as a bandwidth limit counts them.
pub const MEGABYTE: u64 = 1_000_000;

/// What a job runs under.
pub struct RunContext {
    /// Cancelled to stop the job: it commits what it has read and ends.
    pub stop: CancellationToken,
    /// The limits in force, changed in place while the job runs.
    pub limits: Limits,
    /// How the job tries again after an external failure; `None`: the job's own (bounded for
    /// table jobs, the `resume_mode` option for Redis).
    pub retry: Option<RetryPolicy>,
    events: mpsc::UnboundedSender<Event>,
    status: Arc<StatusBoard>,
}

impl RunContext {
    /// A context for `spec`, its limits as the job file sets them, and the receiving end of
    /// its events.
    pub fn new(spec: &JobSpec) -> (RunContext, mpsc::UnboundedReceiver<Event>) {
        let migration = &spec.file.migration;
        let limits = Limits::new(
            migration.max_rows_per_second,
            migration.bandwidth_limit_mb.saturating_mul(MEGABYTE),
        );
        let side = |url: &str, side| EndpointStatus {
            engine: crate::registry::connector(url, side, None).map_or("unknown", |c| c.name),
            url: crate::registry::place(url),
        };
        let status = Arc::new(StatusBoard::new(
            spec.name.clone(),
            side(&spec.file.source.url, crate::registry::Side::Source),
            side(&spec.file.sink.url, crate::registry::Side::Sink),
            migration.types.clone(),
            limits.clone(),
        ));
        let (events, receiver) = mpsc::unbounded_channel();
        (
            RunContext {
                stop: CancellationToken::new(),
                limits,
                retry: None,
                events,
                status,
            },
            receiver,
        )
    }

    /// The job's status now.
    pub fn status(&self) -> JobStatus {
        self.status.snapshot()
    }

    /// The board the job's status is made from, for whoever asks later.
    pub fn status_board(&self) -> Arc<StatusBoard> {
        Arc::clone(&self.status)
    }

    /// What steers the running job from elsewhere (another task, a control file, an API
    /// call): its stop signal and limits, announcing each change as an event.
    pub fn controls(&self) -> Controls {
        Controls {
            stop: self.stop.clone(),
            limits: self.limits.clone(),
            events: self.events.clone(),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        // A front end that stopped listening misses nothing it asked for.
        let _ = self.events.send(event);
    }

    pub(crate) fn phase(&self, phase: Phase) {
        self.status.set_phase(phase);
        self.emit(Event::Phase(phase));
    }

    pub(crate) fn counters(&self, counters: Counters) {
        self.status.set_counters(counters.clone());
        self.emit(Event::Counters(counters));
    }

    pub(crate) fn retrying(
        &self,
        error: &Error,
        try_number: u32,
        of: Option<u32>,
        delay: Duration,
    ) {
        self.status.failed(error, true, try_number);
        self.emit(Event::Retrying {
            error: error.to_string(),
            try_number,
            of,
            delay,
        });
    }

    /// Records how the run ended.
    pub(crate) fn ended(&self, result: &Result<impl Sized, Error>) {
        match result {
            Ok(_) if self.stop.is_cancelled() => self.status.set_state(RunState::Stopped),
            Ok(_) => self.status.set_state(RunState::Completed),
            Err(Error::Stopped) => self.status.set_state(RunState::Stopped),
            Err(error) => self.status.failed(error, false, 0),
        }
    }
}

/// A running job's stop signal and limits, for whoever steers it; each change is announced as
/// an [`Event`].
#[derive(Clone)]
pub struct Controls {
    stop: CancellationToken,
    limits: Limits,
    events: mpsc::UnboundedSender<Event>,
}

impl Controls {
    /// Changes the limits within the running job: rows and source bytes a second (0: none;
    /// `None`: unchanged).
    pub fn set_limits(&self, rows_per_second: Option<u64>, bytes_per_second: Option<u64>) {
        if let Some(rows) = rows_per_second {
            self.limits.rows.set_per_second(rows);
        }
        if let Some(bytes) = bytes_per_second {
            self.limits.bytes.set_per_second(bytes);
        }
        let _ = self.events.send(Event::LimitsChanged {
            rows_per_second: self.limits.rows.per_second(),
            bytes_per_second: self.limits.bytes.per_second(),
        });
    }

    /// Asks the job to stop: it commits what it has read and ends.
    pub fn request_stop(&self) {
        if !self.stop.is_cancelled() {
            let _ = self.events.send(Event::Stopping);
            self.stop.cancel();
        }
    }
}

/// The files through which `ferry stop` and `ferry limit` reach a job running in another
/// process: beside the job file, named after the job.
#[derive(Clone, Debug)]
pub struct ControlFiles {
    /// Its appearance asks the run to stop.
    pub stop: PathBuf,
    /// `rows_per_second = N` and `bandwidth_mb = N` lines: the limits to apply.
    pub limits: PathBuf,
}

impl ControlFiles {
    /// The control files of job `name` whose job file is `path`.
    pub fn beside(path: &Path, name: &str) -> ControlFiles {
        ControlFiles {
            stop: path.with_file_name(format!("{name}.stop")),
            limits: path.with_file_name(format!("{name}.limits")),
        }
    }

    /// Asks the job to stop.
    pub fn request_stop(&self) -> Result<(), Error> {
        write_private(&self.stop, b"stop\n").map_err(|e| Error::Checkpoint {
            path: self.stop.display().to_string(),
            message: format!("cannot write the stop request: {e}"),
        })
    }

    /// Asks the job to change its limits (rows a second, megabytes a second; 0: none;
    /// `None`: as an earlier request left it). Returns the limits asked for, as written.
    pub fn request_limits(
        &self,
        rows_per_second: Option<u64>,
        bandwidth_mb: Option<u64>,
    ) -> Result<String, Error> {
        // Keep what an earlier request set and this one does not change.
        let (old_rows, old_bandwidth) =
            parse_limits(&std::fs::read_to_string(&self.limits).unwrap_or_default());
        let mut text = String::new();
        if let Some(rows) = rows_per_second.or(old_rows) {
            text.push_str(&format!("rows_per_second = {rows}\n"));
        }
        if let Some(mb) = bandwidth_mb.or(old_bandwidth) {
            text.push_str(&format!("bandwidth_mb = {mb}\n"));
        }
        write_private(&self.limits, text.as_bytes()).map_err(|e| Error::Checkpoint {
            path: self.limits.display().to_string(),
            message: format!("cannot write the new limits: {e}"),
        })?;
        Ok(text)
    }

    /// Watches both files for the run under `context` until it stops: a stop request cancels
    /// it (checked every half second), a limits file changes its limits (checked every
    /// second). Old requests are removed first.
    pub fn watch(&self, context: &RunContext) -> ControlWatch {
        let _ = std::fs::remove_file(&self.stop);
        let _ = std::fs::remove_file(&self.limits);
        let (stop_file, limits_file) = (self.stop.clone(), self.limits.clone());
        let stop = context.stop.clone();
        let controls = context.controls();
        let task = tokio::spawn(async move {
            let mut applied = String::new();
            let mut tick = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                tick += 1;
                if stop_file.exists() {
                    let _ = std::fs::remove_file(&stop_file);
                    warn!("stop requested (ferry stop)");
                    controls.request_stop();
                    break;
                }
                if !tick.is_multiple_of(2) {
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&limits_file) else {
                    continue;
                };
                if text == applied {
                    continue;
                }
                let (rows, bandwidth) = parse_limits(&text);
                controls.set_limits(rows, bandwidth.map(|mb| mb.saturating_mul(MEGABYTE)));
                info!(rows_per_second = ?rows, bandwidth_mb = ?bandwidth, "limits changed (ferry limit)");
                applied = text;
            }
        });
        ControlWatch(task)
    }
}

/// The watch of a job's control files; ends when dropped.
pub struct ControlWatch(tokio::task::JoinHandle<()>);

impl Drop for ControlWatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The limits a limits file sets: `rows_per_second = N` and `bandwidth_mb = N` lines (`None`
/// for one it does not set).
pub fn parse_limits(text: &str) -> (Option<u64>, Option<u64>) {
    let mut rows = None;
    let mut bandwidth = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().parse().ok();
        match key.trim() {
            "rows_per_second" => rows = value,
            "bandwidth_mb" => bandwidth = value,
            _ => {}
        }
    }
    (rows, bandwidth)
}

/// Writes `bytes` to a file at `path` only its owner can read (0600), as every state file.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    ferry_engine::private_file(path)?.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_limits;

    #[test]
    fn limits_files_set_what_they_name() {
        assert_eq!(
            parse_limits("rows_per_second = 10\nbandwidth_mb = 5\n"),
            (Some(10), Some(5))
        );
        assert_eq!(parse_limits("bandwidth_mb = 0\n# note\n"), (None, Some(0)));
        assert_eq!(parse_limits("rows_per_second = many"), (None, None));
    }
}
