//! Resume modes against real servers: the source cuts its replicas (`CLIENT KILL TYPE
//! replica`) once during the full copy and once while the stream is followed, with a writer
//! busy throughout. `auto` copies again after the first cut (nothing was committed yet) and
//! continues by partial resync after the second; `manual` stops at a cut and the next run
//! continues from the point the first committed. Both end with the target equal to the source.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_engine::RetryPolicy;
use ferry_redis::copy::{CopyOptions, Limits, StreamPoint};
use ferry_redis::migrate::{migrate, MigrationOptions};
use ferry_redis::sink::RedisWriter;
use ferry_testkit::RedisServer;

use common::config;

/// A source with about 20 MB of data written uncompressed into its RDB (more than the
/// loopback socket buffers hold, so a cut lands inside the transfer), and a large backlog.
fn source() -> RedisServer {
    let server = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    server
        .cli(&[
            "EVAL",
            "for i = 1, 20000 do redis.call('SET', 'key:' .. i, string.rep(string.format('%08x', i), 128)) end return 1",
            "0",
        ])
        .unwrap();
    for (name, value) in [("rdbcompression", "no"), ("repl-backlog-size", "64mb")] {
        server.cli(&["CONFIG", "SET", name, value]).unwrap();
    }
    server
}

/// Writes until stopped: counters, hashes, a second database, transactions.
async fn write_until(source: ferry_redis::replica::ReplicaConfig, stop: Arc<AtomicBool>) {
    let mut client = RedisWriter::connect(&source).await.unwrap();
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let k = (n % 200).to_string();
        client.select(n % 2);
        client.command(&[b"INCR", format!("count:{k}").as_bytes()]);
        client.command(&[b"HSET", b"hash", k.as_bytes(), n.to_string().as_bytes()]);
        if n.is_multiple_of(10) {
            client.command(&[b"MULTI"]);
            client.command(&[b"SET", b"in-multi", n.to_string().as_bytes()]);
            client.command(&[b"DEL", format!("key:{k}").as_bytes()]);
            client.command(&[b"EXEC"]);
        }
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Cuts every replica of `server`.
fn cut(server: &RedisServer) {
    server.cli(&["CLIENT", "KILL", "TYPE", "replica"]).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_copies_again_before_a_commit_and_resyncs_partially_after() {
    let source = source();
    let target = RedisServer::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(config(&source), Arc::clone(&stop)));

    // 4 MB/s: the 20 MB copy would take five seconds, time to cut it.
    let limits = Limits::default();
    limits.bytes.set_per_second(4_000_000);
    let end = Arc::new(AtomicU64::new(u64::MAX));
    let points = Arc::new(Mutex::new(Vec::<StreamPoint>::new()));
    let migration = {
        let (source, target) = (config(&source), config(&target));
        let (end, points, limits) = (Arc::clone(&end), Arc::clone(&points), limits.clone());
        tokio::spawn(async move {
            let options = MigrationOptions {
                copy: CopyOptions {
                    batch: 200,
                    target_empty: true,
                    rules: None,
                },
                retry: RetryPolicy {
                    tries: None,
                    first_delay: Duration::from_millis(100),
                    max_delay: Duration::from_millis(500),
                },
                checkpoint_key: None,
            };
            migrate(
                &source,
                &target,
                &options,
                &limits,
                None,
                &mut |p| points.lock().unwrap().push(p.clone()),
                &|p| p.offset >= end.load(Ordering::Relaxed),
            )
            .await
        })
    };
    common::wait_until("the copy to begin", Duration::from_secs(60), || {
        limits.status.keys() > 0
    })
    .await;
    assert!(points.lock().unwrap().is_empty(), "the copy ended too soon");
    cut(&source);
    limits.bytes.set_per_second(0);
    // Let the second copy finish and the stream run, then cut the stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while points.lock().unwrap().len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never streamed: {}",
            std::fs::read_to_string(source.dir().join("server.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let at_cut = points.lock().unwrap().len();
    cut(&source);
    // The stream continues after the cut (a partial resync) before the writer stops.
    common::wait_until(
        "the stream to continue after the cut",
        Duration::from_secs(60),
        || points.lock().unwrap().len() > at_cut,
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    end.store(source.replication_offset().unwrap(), Ordering::Relaxed);
    let report = migration.await.unwrap().unwrap();
    assert_eq!(report.full_copies, 2, "{report:?}");
    assert!(report.partial_resyncs >= 1, "{report:?}");
    common::assert_same(&target, &source);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_stops_at_a_cut_and_the_next_run_continues_from_its_point() {
    let source = source();
    let target = RedisServer::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(config(&source), Arc::clone(&stop)));
    let options = MigrationOptions {
        retry: RetryPolicy::NEVER,
        ..MigrationOptions::default()
    };
    let last = Arc::new(Mutex::new(None::<StreamPoint>));
    let first = {
        let (source, target, last) = (config(&source), config(&target), Arc::clone(&last));
        let options = options.clone();
        tokio::spawn(async move {
            migrate(
                &source,
                &target,
                &options,
                &Limits::default(),
                None,
                &mut |p| *last.lock().unwrap() = Some(p.clone()),
                &|_| false,
            )
            .await
        })
    };
    // Wait until it streams (a point past the copy's), then cut: the run stops with the error.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let streamed = last
            .lock()
            .unwrap()
            .as_ref()
            .map(|p| p.offset)
            .filter(|&o| o > 0);
        if let Some(first) = streamed {
            // A later point too: the run streams, not only began to.
            common::wait_until("a second streamed point", Duration::from_secs(60), || {
                last.lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|p| p.offset > first)
            })
            .await;
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never streamed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cut(&source);
    let error = first.await.unwrap().unwrap_err().to_string();
    assert!(error.contains("Redis at"), "{error}");

    // The next run continues from the point the first committed: a partial resync.
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let end = source.replication_offset().unwrap();
    let start = last.lock().unwrap().clone();
    assert!(start.is_some());
    let report = migrate(
        &config(&source),
        &config(&target),
        &options,
        &Limits::default(),
        start,
        &mut |_| {},
        &|p| p.offset >= end,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.full_copies, report.partial_resyncs),
        (0, 1),
        "{report:?}"
    );
    common::assert_same(&target, &source);
}

/// Runs a migration that keeps its point in the target, as a task that can be killed.
fn spawn_migration(
    source: &RedisServer,
    target: &RedisServer,
    end: Arc<AtomicU64>,
    points: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<Result<ferry_redis::migrate::MigrationReport, ferry_redis::RedisError>>
{
    let (source, target) = (config(source), config(target));
    tokio::spawn(async move {
        let options = MigrationOptions {
            copy: CopyOptions {
                batch: 50,
                target_empty: true,
                rules: None,
            },
            checkpoint_key: Some(b"__ferry__:checkpoint:test".to_vec()),
            ..MigrationOptions::default()
        };
        migrate(
            &source,
            &target,
            &options,
            &Limits::default(),
            None,
            &mut |_| {
                points.fetch_add(1, Ordering::Relaxed);
            },
            &|p| p.offset >= end.load(Ordering::Relaxed),
        )
        .await
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_continues_from_the_point_the_target_records_without_counting_twice() {
    let source = source();
    let target = RedisServer::start().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // INCR, RPUSH and MULTI blocks: replaying any of them twice would show.
    let writer = tokio::spawn(write_until(config(&source), Arc::clone(&stop)));
    let end = Arc::new(AtomicU64::new(u64::MAX));
    let points = Arc::new(AtomicU64::new(0));

    // Killed during the copy: the next run finds the copy cut, empties the target and
    // copies again.
    let run = spawn_migration(&source, &target, Arc::clone(&end), Arc::clone(&points));
    common::wait_until("the copy to begin", Duration::from_secs(60), || {
        target
            .cli(&["GET", "__ferry__:checkpoint:test"])
            .is_ok_and(|v| v.trim() == "copying")
    })
    .await;
    run.abort();
    let _ = run.await;
    // Killed several times while streaming: each next run reads the point from the target.
    for round in 0..4u64 {
        let before = points.load(Ordering::Relaxed);
        let run = spawn_migration(&source, &target, Arc::clone(&end), Arc::clone(&points));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while points.load(Ordering::Relaxed) < before + 3 + round {
            assert!(tokio::time::Instant::now() < deadline, "never streamed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        run.abort();
        let _ = run.await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    end.store(source.replication_offset().unwrap(), Ordering::Relaxed);
    let report = spawn_migration(&source, &target, Arc::clone(&end), points)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.full_copies, 0, "the last run continued: {report:?}");
    common::assert_same(&target, &source);
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert!(report.equal(), "{report:?}");
}
