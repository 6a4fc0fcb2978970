//! An online migration of one Redis into another, as the cloud services' `migration_method`
//! and `resume_mode` describe it: a full copy, then the command stream until told to stop;
//! after a broken link (a network error, the source restarting, `CLIENT KILL TYPE replica`)
//! `auto` reconnects with backoff and continues with `PSYNC <replid> <offset>` from the last
//! point the target holds (a partial resync: nothing copied twice), `manual` stops and leaves
//! that point to the next run. Only when the source can no longer continue (its backlog has
//! moved past the point) does a copy start over — and it says so.

use ferry_engine::RetryPolicy;
use redis_protocol::resp2::types::OwnedFrame;
use tracing::{info, warn};

use crate::copy::{
    apply_stream, copy_rdb, queue_mark, CopyOptions, CopyStats, Limits, StreamPoint,
};
use crate::error::RedisError;
use crate::replica::{Replica, ReplicaConfig, SyncStart};
use crate::rules::Rules;
use crate::sink::RedisWriter;
use crate::status::MigrationState;

/// What the checkpoint key holds while a full copy is under way.
const COPYING: &[u8] = b"copying";

/// How a migration runs.
#[derive(Clone, Debug)]
pub struct MigrationOptions {
    /// How the full copy writes.
    pub copy: CopyOptions,
    /// What to do when the link breaks: the job's retry policy (`resume_mode = "auto"` is
    /// [`RetryPolicy::UNBOUNDED`], `"manual"` [`RetryPolicy::NEVER`]).
    pub retry: RetryPolicy,
    /// Keep the point in this target key (database 0), written in the same transaction as
    /// each batch, and continue from it when a run starts without a point — after ferry
    /// itself was killed. See [`apply_stream`].
    pub checkpoint_key: Option<Vec<u8>>,
}

impl Default for MigrationOptions {
    fn default() -> MigrationOptions {
        MigrationOptions {
            copy: CopyOptions::default(),
            retry: RetryPolicy::UNBOUNDED,
            checkpoint_key: None,
        }
    }
}

/// What a migration did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Full copies made (more than one: the source could not continue after a break).
    pub full_copies: u32,
    /// Times the stream continued by partial resync after a break.
    pub partial_resyncs: u32,
    /// Keys written by the full copies.
    pub keys_copied: u64,
    /// Commands replayed from the stream.
    pub commands_replayed: u64,
    /// Where it stands.
    pub point: Option<StreamPoint>,
}

/// Moves `source` into `target`, from `start` (a point an earlier run committed) or from a
/// full copy, until `done` says the point reached is enough. `committed` hears of every point
/// the target holds (keep it: it is where the next run continues).
pub async fn migrate(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
    options: &MigrationOptions,
    limits: &Limits,
    start: Option<StreamPoint>,
    committed: &mut (dyn FnMut(&StreamPoint) + Send),
    done: &(dyn Fn(&StreamPoint) -> bool + Sync),
) -> Result<MigrationReport, RedisError> {
    let mut report = MigrationReport {
        point: start,
        ..MigrationReport::default()
    };
    let mut failures = 0u32;
    let mut point_before = report.point.clone();
    loop {
        limits.status.set_state(MigrationState::Connecting);
        let attempt = run_once(
            source,
            target,
            options,
            limits,
            &mut report,
            committed,
            done,
        )
        .await;
        match attempt {
            Ok(()) => {
                limits.status.set_state(MigrationState::Success);
                return Ok(report);
            }
            Err(error) if error.is_broken_link() => {
                // The count of tries starts again whenever the target's point moves.
                if report.point != point_before {
                    failures = 0;
                    point_before = report.point.clone();
                }
                failures += 1;
                let Some(pause) = options.retry.delay(failures) else {
                    limits.status.set_state(MigrationState::Failed);
                    return Err(error);
                };
                warn!(%error, try_number = failures, pause_seconds = pause.as_secs_f64(), point = ?report.point, "the replication link broke; reconnecting");
                tokio::time::sleep(pause).await;
            }
            Err(error) => {
                limits.status.set_state(MigrationState::Failed);
                return Err(error);
            }
        }
    }
}

/// Empties what a new copy will fill: the whole target, or under rules the databases they
/// write (ferry owns those: keys there that the rules do not select are not its to keep).
async fn empty_target(
    writer: &mut RedisWriter,
    target: &ReplicaConfig,
    rules: Option<&Rules>,
) -> Result<(), RedisError> {
    match rules {
        None => {
            warn!("emptying the target (FLUSHALL) before copying again, so no key deleted at the source since the earlier copy survives there");
            if let OwnedFrame::Error(message) = writer.request(&[b"FLUSHALL"]).await? {
                return Err(RedisError::Protocol {
                    address: target.address.clone(),
                    message: format!("emptying the target before a new copy: {message}"),
                });
            }
        }
        Some(rules) => {
            let dbs = rules.selector.target_dbs();
            warn!(databases = ?dbs, "emptying the target databases the rules write (FLUSHDB) before copying again, so no key deleted at the source since the earlier copy survives there");
            for db in dbs {
                writer.select(db);
                writer.command(&[b"FLUSHDB"]);
            }
            writer.flush().await?;
        }
    }
    Ok(())
}

/// One connection's worth: a full copy or a partial resync, then the stream.
async fn run_once(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
    options: &MigrationOptions,
    limits: &Limits,
    report: &mut MigrationReport,
    committed: &mut (dyn FnMut(&StreamPoint) + Send),
    done: &(dyn Fn(&StreamPoint) -> bool + Sync),
) -> Result<(), RedisError> {
    // A new target connection each time: one the link left inside a MULTI would swallow
    // what comes next.
    let mut writer = RedisWriter::connect(target).await?;
    // What the target itself records: a point (ferry stopped after it), or that a copy was
    // under way (ferry stopped during it: the target holds part of a copy).
    let mut copy_cut = false;
    if let (Some(key), None) = (&options.checkpoint_key, &report.point) {
        writer.select(0);
        match writer.request(&[b"GET", key]).await? {
            OwnedFrame::BulkString(text) if text == COPYING => copy_cut = true,
            OwnedFrame::BulkString(text) => {
                report.point = StreamPoint::decode(&text);
                if let Some(point) = &report.point {
                    info!(replid = %point.replid, offset = point.offset, "continuing from the point the target records");
                }
            }
            _ => {}
        }
    }
    let from = report.point.as_ref().map(|p| (p.replid.as_str(), p.offset));
    let (replica, sync) = Replica::connect(source.clone(), from).await?;
    let (mut replica, mut point) = match sync {
        SyncStart::Full { replid, offset } => {
            if let Some(point) = &report.point {
                warn!(replid = %point.replid, offset = point.offset, "the source cannot continue from the last point (its backlog no longer holds it, or it restarted with a new replication id): copying everything again");
            }
            // A copy after an earlier one (cut short, or superseded because the source could
            // not continue) would leave keys the source has deleted since: the target holds
            // only this migration's keys, so it is emptied first.
            let again = report.full_copies > 0 || report.point.is_some() || copy_cut;
            if again {
                empty_target(&mut writer, target, options.copy.rules.as_ref()).await?;
            }
            if let Some(key) = &options.checkpoint_key {
                queue_mark(&mut writer, key, COPYING);
                writer.flush().await?;
            }
            let copy = CopyOptions {
                target_empty: options.copy.target_empty || again,
                ..options.copy.clone()
            };
            report.full_copies += 1;
            limits.status.set_state(MigrationState::FullMigrating);
            info!(%replid, offset, "full copy");
            let (replica, stats): (Replica, CopyStats) =
                copy_rdb(replica, &mut writer, copy, limits).await?;
            report.keys_copied += stats.keys;
            let point = StreamPoint {
                replid,
                offset,
                db: 0,
            };
            if let Some(key) = &options.checkpoint_key {
                queue_mark(&mut writer, key, point.encode().as_bytes());
                writer.flush().await?;
            }
            report.point = Some(point.clone());
            committed(&point);
            (replica, point)
        }
        SyncStart::Partial { replid } => {
            report.partial_resyncs += 1;
            let mut point = report.point.clone().unwrap_or(StreamPoint {
                replid: replid.clone(),
                offset: 0,
                db: 0,
            });
            info!(%replid, offset = point.offset, "continuing by partial resync");
            point.replid = replid;
            (replica, point)
        }
    };
    limits.status.set_state(MigrationState::IncrMigrating);
    limits.status.set_offset(point.offset);
    let result = apply_stream(
        &mut replica,
        &mut writer,
        &options.copy,
        limits,
        options.checkpoint_key.as_deref(),
        &mut point,
        &mut |p| {
            report.point = Some(p.clone());
            committed(p);
        },
        done,
    )
    .await;
    match result {
        Ok(commands) => {
            report.commands_replayed += commands;
            report.point = Some(point);
            Ok(())
        }
        Err(error) => Err(error),
    }
}
