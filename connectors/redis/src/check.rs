//! What to warn about before moving a Redis: settings of the source and the target that do
//! not stop a migration but can spoil it, each with the command that fixes it.
//!
//! - The target's `maxmemory-policy`: anything but `noeviction` lets the target drop migrated
//!   keys silently once it is full.
//! - The source's `client-output-buffer-limit` for replicas: while the source sends the RDB it
//!   buffers the writes made meanwhile for the replica, and cuts the link when that buffer
//!   passes the hard limit (or the soft limit for longer than its seconds) — a full copy of a
//!   large, busy data set then starts over and over.
//! - The source's `repl-backlog-size`: after a broken link or a restart of ferry the source
//!   continues from its backlog only if the writes made meanwhile still fit in it; otherwise
//!   the target is emptied and copied again (and stays incomplete while that runs).
//!
//! And what refuses a job: a target that is the source itself, decided by the servers' run
//! ids, not by the addresses (`localhost` and `127.0.0.1` are one server).

use redis_protocol::resp2::types::OwnedFrame;

use crate::error::RedisError;
use crate::replica::ReplicaConfig;
use crate::sink::RedisWriter;

/// `CONFIG GET name` on `server`: the value, `None` when the server has no such setting.
async fn config_get(server: &mut RedisWriter, name: &str) -> Result<Option<String>, RedisError> {
    match server
        .request(&[b"CONFIG", b"GET", name.as_bytes()])
        .await?
    {
        OwnedFrame::Array(items) => Ok(items.get(1).and_then(|value| match value {
            OwnedFrame::BulkString(bytes) => Some(String::from_utf8_lossy(bytes).into_owned()),
            _ => None,
        })),
        _ => Ok(None),
    }
}

/// A field of `INFO section` on `server`.
pub async fn info_field(
    server: &mut RedisWriter,
    section: &str,
    field: &str,
) -> Result<Option<String>, RedisError> {
    let prefix = format!("{field}:");
    Ok(server
        .info(section)
        .await?
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|v| v.trim().to_string())))
}

/// How long an interruption (ferry killed and started again, a network cut) the source's
/// backlog should cover: a restart by hand or by a supervisor takes seconds, a minute is
/// a margin for one that waits on a person.
pub const RESTART_ALLOWANCE_SECONDS: u64 = 60;

/// The source's run id when `source` and `target` are one server (whatever their addresses
/// say), `None` when they are two.
pub async fn same_server(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
) -> Result<Option<String>, RedisError> {
    let mut source_server = RedisWriter::connect(source).await?;
    let mut target_server = RedisWriter::connect(target).await?;
    let source_id = info_field(&mut source_server, "server", "run_id").await?;
    let target_id = info_field(&mut target_server, "server", "run_id").await?;
    Ok(source_id.filter(|id| Some(id) == target_id.as_ref()))
}

/// A warning when the source's replication backlog cannot hold the writes of
/// [`RESTART_ALLOWANCE_SECONDS`] at the rate the source takes input now.
fn backlog_warning(address: &str, backlog: u64, input_kbps: f64) -> Option<String> {
    let needed = (input_kbps * 1000.0) as u64 * RESTART_ALLOWANCE_SECONDS;
    (backlog < needed).then(|| {
        let suggested = needed.saturating_mul(2).div_ceil(1 << 20).max(1);
        format!(
            "the source at {address} keeps a {:.1} MB replication backlog, but takes {:.0} kB/s of writes: a ferry restart or a cut link longer than {:.0} s makes it copy everything again (the target is emptied first and stays incomplete until the copy ends); run CONFIG SET repl-backlog-size {suggested}mb on it",
            backlog as f64 / 1e6,
            input_kbps,
            backlog as f64 / (input_kbps * 1000.0).max(1.0),
        )
    })
}

/// The replica class's limits from a `client-output-buffer-limit` setting: (hard bytes, soft
/// bytes, soft seconds); Redis names the class `slave` in what it prints.
fn replica_limits(setting: &str) -> Option<(u64, u64, u64)> {
    let words: Vec<&str> = setting.split_whitespace().collect();
    words.chunks(4).find_map(|class| match class {
        [name, hard, soft, seconds] if *name == "slave" || *name == "replica" => Some((
            hard.parse().ok()?,
            soft.parse().ok()?,
            seconds.parse().ok()?,
        )),
        _ => None,
    })
}

/// Warnings about `source` and `target`, each naming the setting and the fix; empty when both
/// are fine.
pub async fn check(
    source: &ReplicaConfig,
    target: &ReplicaConfig,
) -> Result<Vec<String>, RedisError> {
    let mut warnings = Vec::new();
    let mut target_server = RedisWriter::connect(target).await?;
    if let Some(policy) = config_get(&mut target_server, "maxmemory-policy").await? {
        if policy != "noeviction" {
            warnings.push(format!(
                "the target at {} evicts keys when full (maxmemory-policy {policy}): migrated keys could vanish; run CONFIG SET maxmemory-policy noeviction on it",
                target.address
            ));
        }
    }
    let mut source_server = RedisWriter::connect(source).await?;
    let used: u64 = info_field(&mut source_server, "memory", "used_memory")
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let limits = config_get(&mut source_server, "client-output-buffer-limit")
        .await?
        .as_deref()
        .and_then(replica_limits);
    if let Some((hard, soft, seconds)) = limits {
        // The full copy sends about the data set; writes during it pile up for the replica.
        let tight = |limit: u64| limit > 0 && limit < used;
        if tight(hard) || tight(soft) {
            warnings.push(format!(
                "the source at {} cuts a replica whose pending writes pass {} MB (or {} MB for {seconds} s) while the data set is {} MB: a full copy under writes may be cut and start over; run CONFIG SET client-output-buffer-limit \"replica 0 0 0\" on it for the migration",
                source.address,
                hard / 1_000_000,
                soft / 1_000_000,
                used / 1_000_000
            ));
        }
    }
    let backlog: Option<u64> = config_get(&mut source_server, "repl-backlog-size")
        .await?
        .and_then(|v| v.parse().ok());
    let input_kbps: Option<f64> =
        info_field(&mut source_server, "stats", "instantaneous_input_kbps")
            .await?
            .and_then(|v| v.parse().ok());
    if let (Some(backlog), Some(input_kbps)) = (backlog, input_kbps) {
        warnings.extend(backlog_warning(&source.address, backlog, input_kbps));
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_backlog_too_small_for_a_restart_is_named_with_the_size_that_fits() {
        use super::backlog_warning;
        assert_eq!(backlog_warning("s", 1 << 20, 1.0), None);
        let warning = backlog_warning("s", 1 << 20, 500.0).unwrap();
        assert!(
            warning.contains("CONFIG SET repl-backlog-size 58mb") && warning.contains("2 s"),
            "{warning}"
        );
    }

    use super::replica_limits;

    #[test]
    fn the_replica_class_is_found_in_the_setting() {
        assert_eq!(
            replica_limits("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"),
            Some((268_435_456, 67_108_864, 60))
        );
        assert_eq!(replica_limits("normal 0 0 0"), None);
    }
}
