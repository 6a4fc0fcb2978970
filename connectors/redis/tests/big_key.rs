//! A sorted set of 2 000 000 members moved through a full resync: the copy's memory stays far
//! below the key's size, because the RDB is parsed as it arrives and the key is written in
//! slices. The figure is this test process's peak resident memory (the servers are other
//! processes).

mod common;

use ferry_redis::copy::{copy_rdb, CopyOptions, Limits};
use ferry_redis::replica::Replica;
use ferry_redis::sink::RedisWriter;
use ferry_testkit::RedisServer;

use common::config;

const MEMBERS: u64 = 2_000_000;

/// This process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn memory_of(server: &RedisServer, key: &str) -> u64 {
    server
        .cli(&["MEMORY", "USAGE", key])
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_million_member_sorted_set_is_copied_in_slices() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    source
        .cli(&[
            "EVAL",
            "for i = 1, tonumber(ARGV[1]) do redis.call('ZADD', KEYS[1], i, 'member:' .. i) end return 1",
            "1",
            "big",
            &MEMBERS.to_string(),
        ])
        .unwrap();
    let key_bytes = memory_of(&source, "big");
    let before = peak_rss();

    let mut sink = RedisWriter::connect(&config(&target)).await.unwrap();
    let (replica, _) = Replica::connect(config(&source), None).await.unwrap();
    let (_replica, stats) = copy_rdb(
        replica,
        &mut sink,
        CopyOptions {
            batch: 64,
            target_empty: true,
            rules: None,
        },
        &Limits::default(),
    )
    .await
    .unwrap();
    let peak = peak_rss();

    assert_eq!(stats.keys, 1);
    assert_eq!(
        target.cli(&["ZCARD", "big"]).unwrap().trim(),
        MEMBERS.to_string()
    );
    assert_eq!(
        target
            .cli(&["ZRANGE", "big", "-1", "-1", "WITHSCORES"])
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        [format!("member:{MEMBERS}"), MEMBERS.to_string()]
    );
    let grew = peak.saturating_sub(before);
    eprintln!(
        "key: {:.1} MB in Redis, {:.1} MB of RDB; copy's peak RSS grew {:.1} MB (to {:.1} MB)",
        key_bytes as f64 / 1e6,
        stats.rdb_bytes as f64 / 1e6,
        grew as f64 / 1e6,
        peak as f64 / 1e6
    );
    // Far below the key: a few slices and channel buffers, not the key (measured: 8 MB for
    // a key of 199 MB in Redis, 45 MB of RDB).
    assert!(
        grew * 10 < key_bytes,
        "peak RSS grew {grew} bytes for a key of {key_bytes} bytes"
    );
}
