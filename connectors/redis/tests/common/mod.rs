//! Helpers shared by the Redis connector's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use ferry_redis::rdb::{Event, Kind, RdbReader, Values};
use ferry_redis::replica::ReplicaConfig;
use ferry_testkit::RedisServer;

/// How to reach `server` (no password).
pub fn config(server: &RedisServer) -> ReplicaConfig {
    ReplicaConfig::plain(format!("127.0.0.1:{}", server.port()))
}

/// A server's keys: (db, key) → (type, value as text, expiry).
pub type Contents = BTreeMap<(u64, Vec<u8>), (String, String, Option<i64>)>;

/// Every key of a server as (db, key) → (type, value as sorted text, expiry), from its RDB.
pub fn contents(server: &RedisServer) -> Contents {
    server.cli(&["SAVE"]).unwrap();
    let rdb = std::fs::read(server.dir().join("dump.rdb")).unwrap();
    let mut reader = RdbReader::new(&rdb[..]);
    let mut keys = BTreeMap::new();
    let mut current = None;
    let mut values: Vec<String> = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        match event {
            Event::Key(start) => {
                current = Some(start);
                values.clear();
            }
            Event::Values(slice) => match slice {
                Values::String(v) => values.push(String::from_utf8_lossy(&v).into_owned()),
                Values::Items(v) => {
                    values.extend(v.iter().map(|i| String::from_utf8_lossy(i).into_owned()))
                }
                Values::Pairs(v) => values.extend(v.iter().map(|(f, x)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(f),
                        String::from_utf8_lossy(x)
                    )
                })),
                Values::Scored(v) => values.extend(
                    v.iter()
                        .map(|(m, s)| format!("{}@{s}", String::from_utf8_lossy(m))),
                ),
                Values::Entries(v) => values.extend(v.iter().map(|e| format!("{:?}", e))),
                Values::StreamMeta(meta) => values.push(format!("{meta:?}")),
            },
            Event::KeyEnd => {
                let start = current.take().unwrap();
                // Lists keep their order; sets, hashes and sorted sets are compared sorted.
                if start.kind != Kind::List {
                    values.sort();
                }
                keys.insert(
                    (start.db, start.key),
                    (
                        format!("{:?}", start.kind),
                        values.join(","),
                        start.expire_at_ms,
                    ),
                );
            }
            _ => {}
        }
    }
    keys
}

/// Asserts two servers' contents are equal, naming the first few keys that differ.
pub fn assert_same(target: &RedisServer, source: &RedisServer) {
    // ferry's bookkeeping in the target is not data.
    let ours = |key: &(u64, Vec<u8>)| key.1.starts_with(ferry_redis::copy::FERRY_KEY_PREFIX);
    let (mut got, want) = (contents(target), contents(source));
    got.retain(|key, _| !ours(key));
    let mut differences = Vec::new();
    for key in want.keys().chain(got.keys()) {
        if got.get(key) != want.get(key) && differences.len() < 5 {
            let show = |v: Option<&(String, String, Option<i64>)>| {
                v.map(|(kind, value, ttl)| format!("{kind} {:.60} ttl {ttl:?}", value))
            };
            differences.push(format!(
                "db {} key {:?}: target {:?}, source {:?}",
                key.0,
                String::from_utf8_lossy(&key.1),
                show(got.get(key)),
                show(want.get(key))
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} keys at the source, {} at the target; first differences:\n{}",
        want.len(),
        got.len(),
        differences.join("\n")
    );
}

/// Waits until `condition` holds, failing the test after `limit`.
pub async fn wait_until(
    what: &str,
    limit: std::time::Duration,
    mut condition: impl FnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether `server` has no replica connected (it has noticed a dropped link).
pub fn no_replica(server: &RedisServer) -> bool {
    server
        .cli(&["INFO", "replication"])
        .is_ok_and(|info| info.contains("connected_slaves:0"))
}
