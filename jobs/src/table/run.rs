//! Running a plan: schema migration (create or check target tables), the full snapshot
//! through the pipeline, committed part by part, then the change stream, applied group by
//! group — each step resuming from the job's checkpoint.
//!
//! With `incremental`, the change feed is created first and the snapshot is read under the
//! snapshot it exports, so streaming starts exactly where the snapshot ends. A run that stops
//! during the snapshot resumes the parts not yet committed (under a new snapshot, written as
//! upserts) and then streams from the feed's start: every change after that point is applied
//! again in order, so the target converges on the source.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_engine::checkpoint::{FeedState, SnapshotState};
use ferry_engine::pipeline::DEFAULT_QUEUE_DEPTH;
use ferry_engine::{
    run_changes, run_snapshot, ChangeFeed, ChangeRouting, CheckpointStore, Error, ErrorClass,
    JobState, Position, Progress, RetryPolicy, RunOptions, SnapshotProgress, StreamOptions,
    StreamProgress,
};
use ferry_sql::MigrationType;
use tracing::{info, warn};

use crate::context::RunContext;
use crate::job::RunReport;
use crate::status::{Counters, Phase};
use crate::table::Plan;

/// Longest a committed source transaction waits for others to join its group: short enough
/// that lag stays well under a second, long enough to batch a busy source.
pub const GROUP_DELAY: Duration = Duration::from_millis(200);

/// Longest the checkpoint file's copy of the applied position may lag the sink's record.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// Fewest change rows decoded ahead of the applier; a job reads one group (`batch_size`
/// rows) ahead when that is more, so the source streams the next group while the sink
/// applies this one.
pub const MIN_READ_AHEAD_ROWS: usize = 1024;

/// Progress counters for the tables `plan` reads, all at zero.
pub fn progress_for(plan: &Plan) -> Arc<Progress> {
    Arc::new(Progress::new(
        plan.request
            .tables
            .iter()
            .map(|t| (t.table.id.clone(), t.table.estimated_rows)),
    ))
}

/// The job's saved state, checked against the plan; a new state when there is none.
fn load_state(plan: &Plan, store: &CheckpointStore) -> ferry_engine::Result<JobState> {
    let tables = plan.source_tables();
    let Some(state) = store.load()? else {
        return Ok(JobState::new(&plan.name, &plan.source_display, tables));
    };
    let mismatch = |what: String| Error::Checkpoint {
        path: store.describe(),
        message: format!(
            "{what}; run `ferry drop` on the job to start it over, or give the job another name"
        ),
    };
    if state.job != plan.name {
        return Err(mismatch(format!(
            "belongs to job {}, not {}",
            state.job, plan.name
        )));
    }
    if state.source != plan.source_display {
        return Err(mismatch(format!(
            "was made reading {}, but the job now reads {}",
            state.source, plan.source_display
        )));
    }
    if state.tables != tables {
        let names = |t: &[ferry_engine::TableId]| {
            t.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(mismatch(format!(
            "the rules selected {} when the job began, now {}",
            names(&state.tables),
            names(&tables)
        )));
    }
    let definition = plan.definition();
    if let Some(recorded) = state.definition.as_ref().filter(|d| **d != definition) {
        return Err(Error::NameTaken {
            job: plan.name.clone(),
            place: format!("the checkpoint {}", store.describe()),
            theirs: recorded.clone(),
            ours: definition,
        });
    }
    Ok(state)
}

/// The source tables without a primary key whose snapshot an earlier run began under a change
/// feed but did not finish, judged by `state` as [`reconcile_snapshot`] left it (its finished
/// parts are what the sink holds). Their unfinished parts cannot be read again under a newer snapshot
/// as other tables' are: the changes replayed from the feed's start would add rows twice.
fn unfinished_without_key(plan: &Plan, state: &JobState) -> Vec<ferry_engine::TableId> {
    let keyless: Vec<usize> = (0..plan.request.tables.len())
        .filter(|&t| plan.request.tables[t].table.primary_key.is_empty())
        .collect();
    let complete = state.snapshot.as_ref().is_some_and(|s| s.complete);
    if keyless.is_empty() || state.feed.is_none() || complete {
        return Vec::new();
    }
    let id = |t: usize| plan.request.tables[t].table.id.clone();
    let Some(snapshot) = &state.snapshot else {
        return keyless.into_iter().map(id).collect();
    };
    keyless
        .into_iter()
        .filter(|&t| {
            let routes = plan.flows.get(t).map_or(&[][..], |f| &f.routes[..]);
            snapshot.parts.iter().filter(|p| p.table == t).any(|p| {
                routes
                    .iter()
                    .any(|r| !snapshot.finished.contains(&(p.index, r.target.id.clone())))
            })
        })
        .map(id)
        .collect()
}

/// Checks the checkpoint's snapshot against the plan and the sink, whose part records are
/// committed in the same transactions as the rows (a file sink: the part files themselves):
/// the parts must still cover every table exactly once, only parts the sink holds count as
/// finished, and the snapshot is complete only when the sink holds every part of every
/// route. A checkpoint that claims more (damaged, edited, or a target emptied or made anew
/// since) never makes a run skip rows.
async fn reconcile_snapshot(
    plan: &Plan,
    state: &mut JobState,
    store: &CheckpointStore,
) -> ferry_engine::Result<()> {
    let Some(snapshot) = state.snapshot.as_mut() else {
        return Ok(());
    };
    ferry_engine::check_tiling(&snapshot.parts, plan.request.tables.len()).map_err(|message| {
        Error::Checkpoint {
            path: store.describe(),
            message: format!(
                "{message}: the file was damaged or edited; run `ferry drop` on the job to start it over"
            ),
        }
    })?;
    let held: std::collections::BTreeSet<(u32, ferry_engine::TableId)> = plan
        .sink
        .finished_parts(&plan.name, &plan.targets)
        .await?
        .into_iter()
        .collect();
    // Parts the checkpoint calls done that the sink holds no record of: copied again where
    // that is safe — a keyed target (written as upserts), or an empty one. A target without
    // a key that still has rows might hold them already: refused, never doubled.
    let mut keyless_checked = std::collections::BTreeSet::new();
    for (part, target) in snapshot.finished.difference(&held) {
        let Some(schema) = plan.targets.iter().find(|t| t.id == *target) else {
            continue;
        };
        if !schema.primary_key.is_empty() || !keyless_checked.insert(target.clone()) {
            continue;
        }
        if !plan.sink.is_empty(target).await? {
            return Err(Error::Checkpoint {
                path: store.describe(),
                message: format!(
                    "it says part {part} of {target} was copied, but the sink holds no record of it ({target} was emptied, made anew or altered since, or the checkpoint edited), and {target} has no primary key and still has rows: copying the part again could add rows twice. Empty {target} to have its parts copied again, or `ferry drop` the job and run it again"
                ),
            });
        }
    }
    let missing = snapshot
        .parts
        .iter()
        .flat_map(|part| {
            plan.flows[part.table]
                .routes
                .iter()
                .map(move |route| (part.index, route.target.id.clone()))
        })
        .filter(|part| !held.contains(part))
        .count();
    if snapshot.complete && missing > 0 {
        warn!(
            parts = missing,
            "the checkpoint says the full migration is complete, but the sink holds no record of some parts (a target emptied or made anew, or the checkpoint edited): they are copied again"
        );
        snapshot.complete = false;
    }
    snapshot.finished = held;
    Ok(())
}

/// Saves `state` under its lock.
fn save(store: &CheckpointStore, state: &Mutex<JobState>) -> ferry_engine::Result<()> {
    let state = state
        .lock()
        .map_err(|_| Error::Internal("the job state lock is poisoned".into()))?;
    store.save(&state)
}

/// Runs `plan` under `context`, resuming from and recording in `store`. Stops with
/// [`ferry_engine::Error::Stopped`] when stopped during the snapshot; committed parts stay.
/// Stopped while streaming, it returns normally after committing what it read.
///
/// A lost connection (a server restarting, the network) is retried after a pause by the
/// context's retry policy (bounded by default), during the snapshot as while streaming: each
/// try resumes from the checkpoint, exactly as `ferry run` after a crash would. What the
/// failed try had not committed was rolled back with its connection, so nothing is lost and
/// nothing applied twice. The count of tries starts again whenever the checkpoint moves.
pub async fn run(
    plan: &Plan,
    store: &CheckpointStore,
    context: &RunContext,
) -> ferry_engine::Result<RunReport> {
    let progress = progress_for(plan);
    let streaming = Arc::new(StreamProgress::default());
    context.counters(Counters::Tables {
        progress: Arc::clone(&progress),
        streaming: Arc::clone(&streaming),
    });
    let retry = context.retry.unwrap_or(RetryPolicy::BOUNDED);
    let stop = &context.stop;
    let mut failures = 0u32;
    let mut checkpoint_before = store.load()?;
    loop {
        let attempt = attempt(
            plan,
            store,
            Arc::clone(&progress),
            Arc::clone(&streaming),
            context,
        );
        let error = match attempt.await {
            Ok(outcome) => {
                return Ok(RunReport::Tables {
                    copied: outcome.copied_rows.then(|| Arc::clone(&progress)),
                    streamed: outcome
                        .streamed_to
                        .map(|position| (position, Arc::clone(&streaming))),
                    targets: plan.targets.len(),
                    runs_full: plan.job.runs(MigrationType::Full),
                })
            }
            Err(error) if error.class() == ErrorClass::External && !stop.is_cancelled() => error,
            Err(error) => return Err(error),
        };
        let checkpoint_now = store.load()?;
        if checkpoint_now != checkpoint_before {
            failures = 0;
            checkpoint_before = checkpoint_now;
        }
        failures += 1;
        let Some(delay) = retry.delay(failures) else {
            warn!(
                tries = failures - 1,
                "giving up: the failure persists; `ferry run` resumes from the checkpoint"
            );
            return Err(error);
        };
        warn!(
            %error,
            try_number = failures,
            of = ?retry.tries,
            delay_seconds = delay.as_secs_f64(),
            "a server, the network or the disk failed; trying again after a pause"
        );
        context.retrying(&error, failures, retry.tries, delay);
        tokio::select! {
            _ = stop.cancelled() => return Err(Error::Stopped),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// What one successful try did.
struct Outcome {
    /// Whether a full snapshot was copied by this try.
    copied_rows: bool,
    /// The position the sink holds after streaming, when the job streams changes.
    streamed_to: Option<Position>,
}

/// One try at the whole job, from its checkpoint.
async fn attempt(
    plan: &Plan,
    store: &CheckpointStore,
    progress: Arc<Progress>,
    streaming: Arc<StreamProgress>,
    context: &RunContext,
) -> ferry_engine::Result<Outcome> {
    let stop = context.stop.clone();
    let full = plan.job.runs(MigrationType::Full);
    let incremental = plan.job.runs(MigrationType::Incremental);
    // One runner per job name in this sink, whichever directory or host it runs from.
    let _sink_lock = plan
        .sink
        .lock(&plan.name, &ferry_engine::Holder::this_process())
        .await?;
    let definition = plan.definition();
    let mut state = load_state(plan, store)?;
    state.definition = Some(definition.clone());
    state.job_file = store.job_file();
    // What the checkpoint says is checked against the sink before anything is decided on it.
    if full {
        reconcile_snapshot(plan, &mut state, store).await?;
    }
    // Every check of the source runs before the first write to the sink.
    if incremental {
        let had_feed = state.feed.is_some();
        if had_feed
            && plan.source.keeps_feeds()
            && plan.source.retained_log(&plan.feed_name()).await?.is_none()
        {
            return Err(Error::Checkpoint {
                path: store.describe(),
                message: format!(
                    "the job followed replication slot {} but the slot is gone from the source, and with it the changes since; run `ferry drop` on the job and start it over",
                    plan.feed_name()
                ),
            });
        }
        plan.source.check_changes(&plan.change_request()).await?;
    }
    if full || incremental {
        // The name is this job's in the sink, before anything else is written there.
        plan.sink.claim(&plan.name, &definition, false).await?;
    }
    let mut options = plan.prepare_options(false);
    let restart = if full && incremental {
        unfinished_without_key(plan, &state)
    } else {
        Vec::new()
    };
    if !restart.is_empty() {
        let names: Vec<String> = restart.iter().map(ToString::to_string).collect();
        warn!(
            tables = %names.join(", "),
            "the full migration was interrupted, and a table without a primary key cannot resume part by part (a change applied twice would add a row twice): the job starts over, its targets emptied"
        );
        plan.source
            .drop_changes(&plan.feed_name(), Some(&definition))
            .await?;
        plan.sink.forget(&plan.name).await?;
        store.remove()?;
        state = JobState::new(&plan.name, &plan.source_display, plan.source_tables());
        state.definition = Some(definition.clone());
        state.job_file = store.job_file();
        plan.sink.claim(&plan.name, &definition, false).await?;
        options.existing_rows = ferry_engine::ExistingRows::Truncate;
    } else if state.snapshot.is_some() || state.applied.is_some() {
        // The rows in the targets are this job's own: resume, never empty or refuse them.
        options.existing_rows = ferry_engine::ExistingRows::Append;
        info!(job = %plan.name, checkpoint = %store.describe(), "resuming the job from its checkpoint");
    }
    context.phase(Phase::Schema);
    plan.sink.prepare(&plan.targets, &options).await?;
    info!(targets = plan.targets.len(), "targets prepared");
    if !full && !incremental {
        return Ok(Outcome {
            copied_rows: false,
            streamed_to: None,
        });
    }
    let state = Arc::new(Mutex::new(state));
    let snapshot_done = |state: &Mutex<JobState>| {
        state
            .lock()
            .map(|s| s.snapshot.as_ref().is_some_and(|s| s.complete))
            .unwrap_or(false)
    };

    let mut feed = None;
    if incremental {
        let request = plan.change_request();
        let had_feed = state.lock().map(|s| s.feed.is_some()).unwrap_or(false);
        let opened = plan.source.changes(request).await?;
        // A source that keeps no feed (MySQL) opens a new one on every run; the point
        // recorded by the run that began it stays the feed's start.
        let recorded = had_feed && !plan.source.keeps_feeds();
        if let Some(point) = opened.consistent_point().filter(|_| !recorded) {
            if let Ok(mut state) = state.lock() {
                state.feed = Some(FeedState {
                    name: plan.feed_name(),
                    consistent_point: point,
                });
            }
            save(store, &state)?;
        }
        feed = Some(opened);
    }

    let mut copied_rows = false;
    if full && !snapshot_done(&state) {
        // `finished` is what the sink holds (see reconcile_snapshot).
        let (saved_parts, finished) = match state.lock() {
            Ok(s) => match &s.snapshot {
                Some(snapshot) => (Some(snapshot.parts.clone()), snapshot.finished.clone()),
                None => (None, Default::default()),
            },
            Err(_) => return Err(Error::Internal("the job state lock is poisoned".into())),
        };
        let mut request = plan.request.clone();
        request.parts = saved_parts.clone();
        // The feed's own snapshot exists only when this run created the feed; a resumed
        // snapshot reads its remaining parts under a new one.
        let fresh = saved_parts.is_none();
        let snapshot = match feed.as_mut() {
            Some(feed) if fresh && feed.consistent_point().is_some() => {
                let snapshot = feed.snapshot(request).await?;
                // The feed's exact start may be known only now (see ChangeFeed).
                if let (Some(point), Ok(mut state)) = (feed.consistent_point(), state.lock()) {
                    if let Some(recorded) = state.feed.as_mut() {
                        recorded.consistent_point = point;
                    }
                }
                snapshot
            }
            _ => plan.source.snapshot(request).await?,
        };
        if !fresh {
            info!(
                finished = finished.len(),
                "resuming the full migration: parts not yet committed are read again"
            );
        }
        if let Ok(mut state) = state.lock() {
            state.snapshot = Some(SnapshotState {
                parts: snapshot.parts().to_vec(),
                finished: finished.clone(),
                complete: false,
            });
        }
        save(store, &state)?;
        let recorder = Arc::clone(&state);
        let recorder_store = store.clone();
        let resume = SnapshotProgress {
            job: Some(plan.name.clone()),
            finished: finished.into_iter().collect::<HashSet<_>>(),
            upsert: !fresh,
            on_committed: Some(Arc::new(move |part, target| {
                if let Ok(mut state) = recorder.lock() {
                    if let Some(snapshot) = state.snapshot.as_mut() {
                        snapshot.finished.insert((part, target.clone()));
                    }
                }
                save(&recorder_store, &recorder)
            })),
        };
        let options = RunOptions {
            parallelism: plan.job.migration.parallelism,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            limits: context.limits.clone(),
        };
        context.phase(Phase::Full);
        let result = run_snapshot(
            Arc::clone(&snapshot),
            Arc::new(plan.flows.clone()),
            Arc::clone(&plan.sink),
            progress,
            options,
            resume,
            stop.clone(),
        )
        .await;
        let closed = snapshot.close().await;
        result?;
        closed?;
        if let Ok(mut state) = state.lock() {
            if let Some(snapshot) = state.snapshot.as_mut() {
                snapshot.complete = true;
            }
        }
        save(store, &state)?;
        copied_rows = true;
        info!("full migration complete");
    } else if full {
        info!("the full migration was completed by an earlier run");
    }

    let Some(feed) = feed else {
        return Ok(Outcome {
            copied_rows,
            streamed_to: None,
        });
    };
    if stop.is_cancelled() {
        return Err(Error::Stopped);
    }
    context.phase(Phase::Incremental);
    stream_changes(plan, feed, &state, store, &streaming, context).await?;
    Ok(Outcome {
        copied_rows,
        streamed_to: streaming.applied_position(),
    })
}

/// Streams changes from `feed` until stopped or a failure, resuming after the furthest
/// position the sink and the checkpoint hold.
async fn stream_changes(
    plan: &Plan,
    feed: Box<dyn ChangeFeed>,
    state: &Arc<Mutex<JobState>>,
    store: &CheckpointStore,
    streaming: &Arc<StreamProgress>,
    context: &RunContext,
) -> ferry_engine::Result<()> {
    let mut applier = plan.sink.applier(&plan.name).await?;
    let recorded = applier.applied_position().await?;
    let saved = state.lock().ok().and_then(|s| s.applied.clone());
    // The sink records each group's position in the group's own transaction, so its record
    // is the truth; the checkpoint file only trails it. A file that claims more (edited,
    // or from another sink) would skip changes.
    let applied = match (recorded, saved) {
        (Some(recorded), Some(saved)) if saved > recorded => {
            warn!(
                checkpoint = %saved,
                sink = %recorded,
                "the checkpoint file is ahead of the position the sink records; streaming resumes from the sink's"
            );
            Some(recorded)
        }
        (recorded, saved) => recorded.or(saved),
    };
    ferry_engine::streaming::log_resume(applied.as_ref());
    let began = state
        .lock()
        .ok()
        .and_then(|s| s.feed.as_ref().map(|f| f.consistent_point.clone()));
    let stream = feed.start(applied.clone().or(began)).await?;
    // The sink records each group's position in the group's own transaction; the checkpoint
    // file's copy only has to be recent, so it is written at most once per
    // CHECKPOINT_INTERVAL (two fsyncs per group would cap small groups), and at the end.
    let recorder = Arc::clone(state);
    let recorder_store = store.clone();
    let last_saved = Mutex::new(std::time::Instant::now());
    let on_committed: ferry_engine::streaming::GroupCommitted = Arc::new(move |position| {
        if let Ok(mut state) = recorder.lock() {
            state.applied = Some(position.clone());
        }
        let due = last_saved
            .lock()
            .map(|mut last| {
                let due = last.elapsed() >= CHECKPOINT_INTERVAL;
                if due {
                    *last = std::time::Instant::now();
                }
                due
            })
            .unwrap_or(true);
        if due {
            save(&recorder_store, &recorder)?;
        }
        Ok(())
    });
    let options = StreamOptions {
        group_rows: plan.job.migration.batch_size,
        max_delay: GROUP_DELAY,
        read_ahead_rows: plan.job.migration.batch_size.max(MIN_READ_AHEAD_ROWS),
        limits: context.limits.clone(),
    };
    let result = run_changes(
        stream,
        ChangeRouting {
            tables: plan.source_tables(),
            flows: Arc::new(plan.flows.clone()),
        },
        applier,
        Arc::clone(streaming),
        options,
        Some(on_committed),
        context.stop.clone(),
    )
    .await;
    // Whatever ended the stream, the file gets the last committed position.
    let saved = save(store, state);
    result.and(saved)
}
