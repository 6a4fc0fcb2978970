//! What the user sees: the plan (`ferry check`), progress while running (a bar per table or
//! for the keys on a terminal, log lines otherwise) and the summaries at the end.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use ferry_jobs::status::StatusBoard;
use ferry_jobs::{Counters, Event, PlanSummary, Progress, StreamProgress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The plan in words: per source table, what is read, what the source filters, where rows go.
pub fn describe_plan(plan: &PlanSummary) -> String {
    let mut text = String::new();
    let types: Vec<String> = plan
        .types
        .iter()
        .map(|t| format!("{t:?}").to_lowercase())
        .collect();
    let _ = writeln!(
        text,
        "migration: {} · batch_size {} · parallelism {}",
        types.join(" + "),
        plan.batch_size,
        plan.parallelism
    );
    for table in &plan.tables {
        let estimate = table.estimated_rows.map_or_else(
            || "rows unknown".to_string(),
            |rows| format!("~{rows} rows"),
        );
        let _ = writeln!(text, "{} ({estimate})", table.source);
        let _ = writeln!(text, "  reads    {}", table.columns.join(", "));
        if let Some(condition) = &table.pushed_down {
            let _ = writeln!(text, "  source filters  WHERE {condition}");
        }
        for route in &table.routes {
            let _ = writeln!(
                text,
                "  → {} ({}) by rules[{}]",
                route.target,
                route.columns.join(", "),
                route.rule
            );
            if let Some(condition) = &route.filter_in_ferry {
                let _ = writeln!(text, "      ferry filters  WHERE {condition}");
            }
        }
    }
    text
}

fn rate(amount: f64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        amount / seconds
    } else {
        0.0
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// Shows a running job's progress, as its events say what it moves, until
/// [`Follower::finish`].
pub struct Follower {
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl Follower {
    /// Follows `events` of the run whose status is on `board`: bars when `interactive`, else
    /// log lines.
    pub fn start(
        mut events: UnboundedReceiver<Event>,
        board: Arc<StatusBoard>,
        interactive: bool,
    ) -> Follower {
        let done = CancellationToken::new();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            let mut tables: Option<ProgressDisplay> = None;
            let mut keys: Option<JoinHandle<()>> = None;
            loop {
                let event = tokio::select! {
                    _ = stop.cancelled() => break,
                    event = events.recv() => event,
                };
                match event {
                    Some(Event::Counters(Counters::Tables {
                        progress,
                        streaming,
                    })) => {
                        if let Some(old) = tables.take() {
                            old.finish().await;
                        }
                        tables = Some(ProgressDisplay::start(
                            progress,
                            streaming,
                            interactive,
                            Duration::from_secs(5),
                        ));
                    }
                    Some(Event::Counters(Counters::Keys { keys_total, .. })) => {
                        if keys.is_none() {
                            keys = Some(tokio::spawn(show_keys(
                                interactive,
                                Arc::clone(&board),
                                keys_total,
                                stop.clone(),
                            )));
                        }
                    }
                    Some(_) => {}
                    None => stop.cancelled().await,
                }
            }
            if let Some(display) = tables {
                display.finish().await;
            }
            if let Some(task) = keys {
                let _ = task.await;
            }
        });
        Follower { done, task }
    }

    /// Stops following (bars are left at their final state).
    pub async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

/// A Redis job's state, keys done of total, commands, MB/s and the lag in bytes: on a bar
/// redrawn five times a second (`bars`), or in a log line every two seconds.
async fn show_keys(bars: bool, board: Arc<StatusBoard>, keys_total: u64, done: CancellationToken) {
    let tick = if bars {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    };
    let bar = bars.then(|| {
        let bar = ProgressBar::with_draw_target(Some(keys_total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:25}] {pos}/{len} keys") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    });
    let mut incremental = false;
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
        let status = board.snapshot();
        let full = status.full.clone().unwrap_or_default();
        let stream = status.incremental.clone().unwrap_or_default();
        let rate = if status.incremental.is_some() {
            stream.mb_per_sec
        } else {
            full.mb_per_sec
        };
        let lag = stream.lag_bytes.map_or("-".to_string(), |l| l.to_string());
        match &bar {
            Some(bar) => {
                if status.incremental.is_some() && !incremental {
                    incremental = true;
                    if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg}") {
                        bar.set_style(style);
                    }
                }
                bar.set_position(full.rows_done);
                bar.set_message(if incremental {
                    format!(
                        "{} · {} commands · {rate:.2} MB/s · lag {lag} bytes · {} keys copied",
                        status.redis_state, stream.rows_applied, full.rows_done
                    )
                } else {
                    format!("{} {rate:>6.2} MB/s", status.redis_state)
                });
                bar.tick();
            }
            None => info!(
                state = status.redis_state,
                keys = full.rows_done,
                keys_total,
                commands = stream.rows_applied,
                mb_per_second = format!("{rate:.2}"),
                lag_bytes = lag,
                "Redis migration"
            ),
        }
    }
    if let Some(bar) = bar {
        bar.abandon();
    }
}

/// Shows progress until [`ProgressDisplay::finish`].
struct ProgressDisplay {
    done: CancellationToken,
    task: JoinHandle<()>,
}

impl ProgressDisplay {
    /// Starts showing `progress`: bars when `interactive`, else a log line per table every
    /// `log_every`.
    fn start(
        progress: Arc<Progress>,
        streaming: Arc<StreamProgress>,
        interactive: bool,
        log_every: Duration,
    ) -> ProgressDisplay {
        let done = CancellationToken::new();
        let stop = done.clone();
        let task = tokio::spawn(async move {
            if interactive {
                show_bars(progress, streaming, stop).await
            } else {
                log_lines(progress, streaming, stop, log_every).await
            }
        });
        ProgressDisplay { done, task }
    }

    /// Stops showing progress (bars are left at their final state).
    async fn finish(self) {
        self.done.cancel();
        let _ = self.task.await;
    }
}

/// One line on the change stream: applied changes/s, lag, position.
fn stream_line(streaming: &StreamProgress) -> String {
    let lag = streaming.lag();
    format!(
        "{} changes applied ({:.0}/s) in {} transactions · lag {}{:.1} s · at {}",
        streaming.rows_applied(),
        rate(streaming.rows_applied() as f64, streaming.elapsed()),
        streaming.transactions_applied(),
        lag.bytes
            .map_or_else(String::new, |b| format!("{:.1} MB / ", megabytes(b))),
        lag.seconds,
        streaming
            .applied_position()
            .map_or_else(|| "the feed's start".to_string(), |p| p.to_string())
    )
}

/// Whether the change stream has begun.
fn streaming_started(streaming: &StreamProgress) -> bool {
    streaming.rows_read() > 0 || streaming.applied_position().is_some()
}

async fn show_bars(
    progress: Arc<Progress>,
    streaming: Arc<StreamProgress>,
    done: CancellationToken,
) {
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:<28} [{bar:30}] {pos:>10}/{len:<10} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let per_table: Vec<ProgressBar> = progress
        .tables()
        .iter()
        .map(|table| {
            let bar = bars.add(ProgressBar::new(table.estimated_rows.unwrap_or(0)));
            bar.set_style(style.clone());
            bar.set_prefix(table.table.to_string());
            bar
        })
        .collect();
    let mut stream_bar: Option<ProgressBar> = None;
    loop {
        if streaming_started(&streaming) {
            let bar = stream_bar.get_or_insert_with(|| {
                let bar = bars.add(ProgressBar::new_spinner());
                bar.set_prefix("changes");
                bar
            });
            bar.set_message(stream_line(&streaming));
            bar.tick();
        }
        for (bar, table) in per_table.iter().zip(progress.tables()) {
            let rows = table.rows_read();
            // The estimate counts the whole table; a source filter reads fewer rows, so a
            // finished table's bar ends at what was read.
            if rows > bar.length().unwrap_or(0) || table.is_finished() {
                bar.set_length(rows);
            }
            bar.set_position(rows);
            let elapsed = table.elapsed();
            bar.set_message(format!(
                "{:>9.0} rows/s {:>7.1} MB/s{}",
                rate(rows as f64, elapsed),
                rate(megabytes(table.bytes_read()), elapsed),
                if table.is_finished() { " done" } else { "" }
            ));
        }
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    for bar in per_table.into_iter().chain(stream_bar) {
        bar.abandon();
    }
}

async fn log_lines(
    progress: Arc<Progress>,
    streaming: Arc<StreamProgress>,
    done: CancellationToken,
    every: Duration,
) {
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        if streaming_started(&streaming) {
            let lag = streaming.lag();
            info!(
                changes_applied = streaming.rows_applied(),
                changes_per_second =
                    rate(streaming.rows_applied() as f64, streaming.elapsed()) as u64,
                transactions = streaming.transactions_applied(),
                lag_bytes = lag.bytes.unwrap_or(0),
                lag_seconds = format!("{:.1}", lag.seconds),
                position = %streaming
                    .applied_position()
                    .map_or_else(|| "start".to_string(), |p| p.to_string()),
                "streaming"
            );
        }
        for table in progress.tables() {
            if table.is_finished() || table.rows_read() == 0 {
                continue;
            }
            let elapsed = table.elapsed();
            let (parts_done, parts) = table.parts();
            info!(
                table = %table.table,
                rows = table.rows_read(),
                estimated_rows = table.estimated_rows.unwrap_or(0),
                parts_done,
                parts,
                rows_per_second = rate(table.rows_read() as f64, elapsed) as u64,
                megabytes_per_second = format!("{:.1}", rate(megabytes(table.bytes_read()), elapsed)),
                "progress"
            );
        }
    }
}

/// The change stream's summary: changes read and applied, rates, lag.
pub fn stream_summary(streaming: &StreamProgress) -> String {
    let elapsed = streaming.elapsed();
    format!(
        "changes read {} ({:.1} MB) · applied {} in {} transactions · {:.0} changes/s over {:.1} s · final lag {:.1} s\n",
        streaming.rows_read(),
        megabytes(streaming.bytes_read()),
        streaming.rows_applied(),
        streaming.transactions_applied(),
        rate(streaming.rows_applied() as f64, elapsed),
        elapsed.as_secs_f64(),
        streaming.lag().seconds
    )
}

/// The summary table: per source table rows read and written, size, time and rates.
pub fn summary(progress: &Progress) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<32} {:>12} {:>12} {:>10} {:>8} {:>12} {:>8}",
        "table", "rows read", "rows written", "MB", "seconds", "rows/s", "MB/s"
    );
    for table in progress.tables() {
        let elapsed = table.elapsed();
        let _ = writeln!(
            text,
            "{:<32} {:>12} {:>12} {:>10.1} {:>8.2} {:>12.0} {:>8.1}",
            table.table.to_string(),
            table.rows_read(),
            table.rows_written(),
            megabytes(table.bytes_read()),
            elapsed.as_secs_f64(),
            rate(table.rows_read() as f64, elapsed),
            rate(megabytes(table.bytes_read()), elapsed)
        );
    }
    let (rows, bytes) = progress.totals();
    let elapsed = progress.elapsed();
    let _ = writeln!(
        text,
        "{:<32} {:>12} {:>12} {:>10.1} {:>8.2} {:>12.0} {:>8.1}",
        "total",
        rows,
        progress
            .tables()
            .iter()
            .map(|t| t.rows_written())
            .sum::<u64>(),
        megabytes(bytes),
        elapsed.as_secs_f64(),
        rate(rows as f64, elapsed),
        rate(megabytes(bytes), elapsed)
    );
    text
}
