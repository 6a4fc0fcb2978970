//! A live Redis moved into another while a writer keeps changing it: the full resync's RDB
//! written as native commands, then the command stream replayed, across a dropped link
//! resumed by partial resync. Both servers then `SAVE`, and their RDBs, read back, must hold
//! the same keys with the same values and expiries.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_redis::copy::{apply_stream, copy_rdb, CopyOptions, Limits, StreamPoint};
use ferry_redis::replica::{Replica, ReplicaConfig, SyncStart};
use ferry_redis::sink::RedisWriter;
use ferry_redis::verify::verify;
use ferry_testkit::RedisServer;

use common::{config, contents};

/// Writes every kind of change to the source until stopped.
async fn write_until(source: ReplicaConfig, stop: Arc<AtomicBool>, count: Arc<AtomicU64>) {
    let mut client = RedisWriter::connect(&source).await.unwrap();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = (n * 7919) % 500;
        let key = |prefix: &str| format!("{prefix}:{k}");
        let (s, l, h, z, set) = (key("s"), key("l"), key("h"), key("z"), key("set"));
        let n_text = n.to_string();
        client.select(0);
        match n % 12 {
            0 => client.command(&[b"SET", s.as_bytes(), n_text.as_bytes()]),
            1 => client.command(&[b"INCR", format!("counter:{}", k % 10).as_bytes()]),
            2 => client.command(&[b"RPUSH", l.as_bytes(), n_text.as_bytes(), b"x"]),
            3 => client.command(&[b"LPOP", l.as_bytes()]),
            4 => client.command(&[b"HSET", h.as_bytes(), n_text.as_bytes(), b"v"]),
            5 => client.command(&[b"ZADD", z.as_bytes(), format!("{}.5", n % 100).as_bytes(), n_text.as_bytes()]),
            6 => client.command(&[b"SADD", set.as_bytes(), n_text.as_bytes()]),
            7 => client.command(&[b"EXPIRE", s.as_bytes(), b"100000"]),
            8 => client.command(&[b"DEL", h.as_bytes()]),
            9 => {
                client.command(&[b"MULTI"]);
                client.command(&[b"INCRBY", b"total", b"3"]);
                client.command(&[b"SREM", set.as_bytes(), b"1"]);
                client.command(&[b"EXEC"]);
            }
            10 => client.command(&[
                b"EVAL",
                b"redis.call('SET', KEYS[1], ARGV[1]); return redis.call('HINCRBY', KEYS[2], 'n', 1)",
                b"2",
                format!("lua:{k}").as_bytes(),
                b"hash:lua",
                n_text.as_bytes(),
            ]),
            _ => {
                // Another database, flushed now and then.
                client.select(1);
                client.command(&[b"SET", s.as_bytes(), n_text.as_bytes()]);
                if n.is_multiple_of(97) {
                    client.command(&[b"FLUSHDB"]);
                }
            }
        }
        if n.is_multiple_of(50) {
            client.command(&[b"RENAME", b"counter:1", b"renamed"]);
        }
        // RENAME of a missing key and LPOP of an empty list are refusals, not failures.
        let _ = client.flush().await;
        count.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_source_lands_equal_across_a_dropped_link() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    // Data before the copy, big enough for several slices per key.
    let mut setup = String::new();
    for i in 0..3000 {
        setup.push_str(&format!("HSET big:hash f{i} {i}\nZADD big:zset {i} m{i}\nRPUSH big:list {i}\nSADD big:set {i}\n"));
    }
    setup.push_str("SET plain value\nPEXPIREAT plain 4102444800000\n");
    source.commands(0, &setup).unwrap();
    // Room for what the writer writes while the link is down (the default backlog, 1 MB, is
    // a few hundred milliseconds of this writer).
    source
        .cli(&["CONFIG", "SET", "repl-backlog-size", "64mb"])
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(
        config(&source),
        Arc::clone(&stop),
        Arc::clone(&written),
    ));
    common::wait_until("the writer to write", Duration::from_secs(30), || {
        written.load(Ordering::Relaxed) > 50
    })
    .await;

    let mut sink = RedisWriter::connect(&config(&target)).await.unwrap();
    let (replica, start) = Replica::connect(config(&source), None).await.unwrap();
    assert!(matches!(start, SyncStart::Full { .. }));
    // Limits far above what this box moves: the path is taken, the run not slowed.
    let limits = Limits::default();
    limits.bytes.set_per_second(500_000_000);
    limits.rows.set_per_second(5_000_000);
    let (mut replica, stats) = copy_rdb(
        replica,
        &mut sink,
        CopyOptions {
            batch: 500,
            target_empty: false,
            rules: None,
        },
        &limits,
    )
    .await
    .unwrap();
    assert!(stats.keys > 4 && stats.rdb_bytes > 10_000, "{stats:?}");

    // Follow the stream a while, drop the link, resume by partial resync from the point
    // the target holds.
    let mut point = StreamPoint {
        replid: replica.replid().to_string(),
        offset: replica.offset(),
        db: 0,
    };
    let until = point.offset + 20_000;
    let mut commits = 0;
    apply_stream(
        &mut replica,
        &mut sink,
        &CopyOptions::default(),
        &limits,
        None,
        &mut point,
        &mut |_| commits += 1,
        &|point| point.offset >= until,
    )
    .await
    .unwrap();
    assert!(commits > 0);
    let (replid, offset) = (point.replid.clone(), point.offset);
    drop(replica);
    common::wait_until(
        "the source to notice the dropped link",
        Duration::from_secs(30),
        || common::no_replica(&source),
    )
    .await;
    let (mut replica, start) = Replica::connect(config(&source), Some((&replid, offset)))
        .await
        .unwrap();
    assert!(matches!(start, SyncStart::Partial { .. }), "{start:?}");

    // More writes after the resync, then stop writing and catch up to where the source's
    // log ends.
    let resumed_at = written.load(Ordering::Relaxed);
    common::wait_until("writes after the resync", Duration::from_secs(30), || {
        written.load(Ordering::Relaxed) > resumed_at + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    assert!(written.load(Ordering::Relaxed) > 100);
    let end = source.replication_offset().unwrap();
    apply_stream(
        &mut replica,
        &mut sink,
        &CopyOptions::default(),
        &limits,
        None,
        &mut point,
        &mut |_| {},
        &|point| point.offset >= end,
    )
    .await
    .unwrap();

    let (want, got) = (contents(&source), contents(&target));
    let keys: BTreeSet<_> = want.keys().chain(got.keys()).collect();
    for key in keys {
        assert_eq!(got.get(key), want.get(key), "key {key:?}");
    }
    assert!(want.len() > 500, "{} keys", want.len());

    // verify agrees, then finds each kind of difference and names the key.
    let report = verify(&config(&source), &config(&target), 1).await.unwrap();
    assert!(report.equal(), "{report:?}");
    assert_eq!(report.compared as usize, want.len());
    target
        .commands(
            0,
            "SET plain changed
DEL big:set
SET only:here 1
PEXPIREAT big:list 4102444800000
HSET big:hash f0 other
",
        )
        .unwrap();
    let report = verify(&config(&source), &config(&target), 1).await.unwrap();
    assert_eq!(
        (report.missing, report.extra, report.different),
        (1, 1, 3),
        "{report:?}"
    );
    let details = report.details.join("\n");
    for expected in [
        "\"big:set\": missing in the target",
        "\"only:here\": in the target only",
        "\"big:hash\": another value",
        "\"big:list\": expiry Some(4102444800000) in the target, None at the source",
    ] {
        assert!(details.contains(expected), "{expected} not in {details}");
    }
    // A sample compares a tenth of the keys and does not look for extra ones.
    let sampled = verify(&config(&source), &config(&target), 10)
        .await
        .unwrap();
    assert!(sampled.compared < report.compared / 5, "{sampled:?}");
    assert_eq!(sampled.extra, 0);
}
