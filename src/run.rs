//! Running a plan: schema migration (create or check target tables), then the full snapshot
//! through the pipeline, committed part by part.

use std::sync::Arc;

use ferry_engine::pipeline::DEFAULT_QUEUE_DEPTH;
use ferry_engine::{run_snapshot, Progress, RunOptions};
use ferry_sql::MigrationType;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::plan::Plan;

/// What a finished run did.
#[derive(Debug)]
pub struct RunSummary {
    /// Whether a full snapshot was copied (false for a schema-only job).
    pub copied_rows: bool,
}

/// Progress counters for the tables `plan` reads, all at zero.
pub fn progress_for(plan: &Plan) -> Arc<Progress> {
    Arc::new(Progress::new(
        plan.request
            .tables
            .iter()
            .map(|t| (t.table.id.clone(), t.table.estimated_rows)),
    ))
}

/// Runs `plan`. Stops with [`ferry_engine::Error::Stopped`] when `stop` is cancelled; parts
/// committed by then stay, the others are rolled back.
pub async fn run(
    plan: &Plan,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> ferry_engine::Result<RunSummary> {
    plan.sink
        .prepare(&plan.targets, &plan.prepare_options(false))
        .await?;
    info!(targets = plan.targets.len(), "targets prepared");
    if !plan.job.runs(MigrationType::Full) {
        return Ok(RunSummary { copied_rows: false });
    }
    let snapshot = plan.source.snapshot(plan.request.clone()).await?;
    let options = RunOptions {
        parallelism: plan.job.migration.parallelism,
        queue_depth: DEFAULT_QUEUE_DEPTH,
    };
    let result = run_snapshot(
        Arc::clone(&snapshot),
        Arc::new(plan.flows.clone()),
        Arc::clone(&plan.sink),
        progress,
        options,
        stop,
    )
    .await;
    let closed = snapshot.close().await;
    result?;
    closed?;
    Ok(RunSummary { copied_rows: true })
}
