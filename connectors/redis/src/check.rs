//! What to warn about before moving a Redis: settings of the source and the target that do
//! not stop a migration but can spoil it, each with the command that fixes it.
//!
//! - The target's `maxmemory-policy`: anything but `noeviction` lets the target drop migrated
//!   keys silently once it is full.
//! - The source's `client-output-buffer-limit` for replicas: while the source sends the RDB it
//!   buffers the writes made meanwhile for the replica, and cuts the link when that buffer
//!   passes the hard limit (or the soft limit for longer than its seconds) — a full copy of a
//!   large, busy data set then starts over and over.

use redis_protocol::resp2::types::OwnedFrame;

use crate::replica::{ReplicaConfig, ReplicaError};
use crate::sink::RedisWriter;

/// `CONFIG GET name` on `server`: the value, `None` when the server has no such setting.
async fn config_get(server: &mut RedisWriter, name: &str) -> Result<Option<String>, ReplicaError> {
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
) -> Result<Option<String>, ReplicaError> {
    let prefix = format!("{field}:");
    Ok(server
        .info(section)
        .await?
        .lines()
        .find_map(|line| line.strip_prefix(&prefix).map(|v| v.trim().to_string())))
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
) -> Result<Vec<String>, ReplicaError> {
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
    Ok(warnings)
}

#[cfg(test)]
mod tests {
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
