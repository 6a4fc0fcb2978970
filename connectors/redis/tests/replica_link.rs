//! The replication link against a real Redis: a full resync (diskless and disk-based RDB
//! framing) whose RDB the reader parses, the command stream after it with the offset the
//! source itself reports, ACKs the source records, and a partial resync after the link drops
//! that carries exactly the commands written meanwhile.

mod common;

use std::time::{Duration, Instant};

use ferry_redis::rdb::{Event, RdbReader};
use ferry_redis::replica::{Replica, ReplicaConfig, SyncStart};
use ferry_testkit::RedisServer;

use common::config;

/// The keys an RDB holds, as (db, key).
fn keys_of(rdb: &[u8]) -> Vec<(u64, String)> {
    let mut reader = RdbReader::new(rdb);
    let mut keys = Vec::new();
    while let Some(event) = reader.next_event().unwrap() {
        if let Event::Key(start) = event {
            keys.push((start.db, String::from_utf8_lossy(&start.key).into_owned()));
        }
    }
    keys.sort();
    keys
}

/// The whole RDB of a full resync.
async fn read_rdb(replica: &mut Replica) -> Vec<u8> {
    let mut rdb = Vec::new();
    replica
        .read_rdb(|bytes| {
            rdb.extend_from_slice(bytes);
            Ok(())
        })
        .await
        .unwrap();
    rdb
}

/// A full copy of `source` into `target` by the connector, with its defaults.
async fn full_copy(source: &RedisServer, target: &RedisServer) -> ferry_redis::copy::CopyStats {
    let mut writer = ferry_redis::sink::RedisWriter::connect(&config(target))
        .await
        .unwrap();
    let (replica, _) = Replica::connect(config(source), None).await.unwrap();
    let (_, stats) = ferry_redis::copy::copy_rdb(
        replica,
        &mut writer,
        ferry_redis::copy::CopyOptions::default(),
        &ferry_redis::copy::Limits::default(),
    )
    .await
    .unwrap();
    stats
}

/// Reads commands until the link's offset reaches the source's; returns them as text.
async fn read_until_caught_up(replica: &mut Replica, server: &RedisServer) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut commands = Vec::new();
    while replica.offset() < server.replication_offset().unwrap() {
        assert!(Instant::now() < deadline, "the stream stopped short");
        let command = tokio::time::timeout(Duration::from_secs(5), replica.next_command())
            .await
            .expect("a command within 5 s")
            .unwrap();
        let words: Vec<String> = command
            .args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        commands.push(words.join(" "));
    }
    commands
}

#[tokio::test]
async fn full_then_partial_resync_with_exact_offsets() {
    let server = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    server.commands(0, "SET a 1\nHSET h f v\n").unwrap();
    server.commands(2, "SET b 2\n").unwrap();

    // A first copy: diskless framing (Redis 7's default).
    let (mut replica, start) = Replica::connect(config(&server), None).await.unwrap();
    let SyncStart::Full { replid, offset } = start else {
        panic!("expected a full resync, got {start:?}");
    };
    assert_eq!(replica.replid(), replid);
    let rdb = read_rdb(&mut replica).await;
    assert_eq!(
        keys_of(&rdb),
        [(0, "a".into()), (0, "h".into()), (2, "b".into())]
    );
    assert_eq!(replica.offset(), offset);

    // The commands after the snapshot, as the source propagates them.
    server
        .commands(
            0,
            "SET c 3\nHSET h g w\nEXPIRE c 100\nDEL a\nMULTI\nSET e 5\nINCR e\nEXEC\n",
        )
        .unwrap();
    server.commands(2, "SET d 4\n").unwrap();
    let commands = read_until_caught_up(&mut replica, &server).await;
    for expected in [
        "SET c 3",
        "HSET h g w",
        "DEL a",
        "MULTI",
        "SET e 5",
        "INCR e",
        "EXEC",
        "SELECT 2",
        "SET d 4",
    ] {
        assert!(
            commands.iter().any(|c| c == expected),
            "{expected:?} not in {commands:?}"
        );
    }
    // EXPIRE travels as an absolute PEXPIREAT.
    assert!(
        commands.iter().any(|c| c.starts_with("PEXPIREAT c ")),
        "{commands:?}"
    );
    assert_eq!(replica.offset(), server.replication_offset().unwrap());

    // The source records the ACKed offset.
    replica.ack().await.unwrap();
    let acked = format!("offset={}", replica.offset());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let info = server.cli(&["INFO", "replication"]).unwrap();
        if info
            .lines()
            .any(|l| l.starts_with("slave0:") && l.contains(&acked))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no ACK recorded: {info}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The link drops; writes go on; a partial resync carries exactly them.
    let (replid, offset) = (replica.replid().to_string(), replica.offset());
    drop(replica);
    server.commands(0, "SET f 6\n").unwrap();
    let (mut replica, start) = Replica::connect(config(&server), Some((&replid, offset)))
        .await
        .unwrap();
    assert_eq!(start, SyncStart::Partial { replid });
    let commands = read_until_caught_up(&mut replica, &server).await;
    assert!(commands.iter().any(|c| c == "SET f 6"), "{commands:?}");
    assert!(!commands.iter().any(|c| c == "SET c 3"), "{commands:?}");

    // A source that writes the RDB to disk first frames it by length.
    server
        .cli(&["CONFIG", "SET", "repl-diskless-sync", "no"])
        .unwrap();
    let (mut replica, start) = Replica::connect(config(&server), None).await.unwrap();
    assert!(matches!(start, SyncStart::Full { .. }), "{start:?}");
    let rdb = read_rdb(&mut replica).await;
    assert_eq!(
        keys_of(&rdb),
        [
            (0, "c".into()),
            (0, "e".into()),
            (0, "f".into()),
            (0, "h".into()),
            (2, "b".into()),
            (2, "d".into())
        ]
    );
    server.commands(0, "SET g 7\n").unwrap();
    let commands = read_until_caught_up(&mut replica, &server).await;
    assert!(commands.iter().any(|c| c == "SET g 7"), "{commands:?}");
}

#[tokio::test]
async fn a_password_is_asked_for_and_settings_that_spoil_a_migration_are_named() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    // About 2 MB of data, a replica buffer limit of 1 MB, a target that evicts; a backlog
    // that holds a minute of these writes.
    source
        .cli(&["CONFIG", "SET", "repl-backlog-size", "512mb"])
        .unwrap();
    let mut data = String::new();
    for i in 0..2000 {
        data.push_str(&format!("SET key:{i} {}\n", "v".repeat(1000)));
    }
    source.commands(0, &data).unwrap();
    source
        .cli(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 1mb 1mb 60",
        ])
        .unwrap();
    target
        .cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        .unwrap();
    let warnings = ferry_redis::check::check(&config(&source), &config(&target))
        .await
        .unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("CONFIG SET maxmemory-policy noeviction"));
    assert!(warnings[1].contains("client-output-buffer-limit \"replica 0 0 0\""));
    target
        .cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
        .unwrap();
    source
        .cli(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 0 0 0",
        ])
        .unwrap();
    let warnings = ferry_redis::check::check(&config(&source), &config(&target))
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // The smallest backlog under the same writes: a restart of ferry would copy again.
    source
        .cli(&["CONFIG", "SET", "repl-backlog-size", "16384"])
        .unwrap();
    source.commands(0, &data).unwrap();
    let warnings = ferry_redis::check::check(&config(&source), &config(&target))
        .await
        .unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("0.0 MB replication backlog")
            && warnings[0].contains("CONFIG SET repl-backlog-size"),
        "{warnings:?}"
    );

    // A source with a password: without it the link says what to give; with it, it syncs.
    source
        .cli(&["CONFIG", "SET", "requirepass", "s3cret"])
        .unwrap();
    let error = Replica::connect(config(&source), None)
        .await
        .err()
        .expect("refused without the password")
        .to_string();
    assert!(error.contains("password"), "{error}");
    let with_password = ReplicaConfig {
        password: Some(ferry_tls::Secret::new("s3cret")),
        ..config(&source)
    };
    let (mut replica, start) = Replica::connect(with_password, None).await.unwrap();
    assert!(matches!(start, SyncStart::Full { .. }));
    let rdb = read_rdb(&mut replica).await;
    assert_eq!(keys_of(&rdb).len(), 2000);
}

#[tokio::test]
async fn a_refused_command_fails_its_batch_and_is_named() {
    let server = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let mut writer = ferry_redis::sink::RedisWriter::connect(&config(&server))
        .await
        .unwrap();
    writer.command(&[b"SET", b"word", b"hello"]);
    writer.command(&[b"INCR", b"word"]);
    writer.command(&[b"SET", b"after", b"1"]);
    let error = writer.flush().await.unwrap_err().to_string();
    assert!(
        error.contains("the server refused INCR") && error.contains("not an integer"),
        "{error}"
    );
    // The batch is answered whole; the connection goes on.
    writer.command(&[b"GET", b"after"]);
    writer.flush().await.unwrap();
    assert_eq!(server.cli(&["GET", "after"]).unwrap().trim(), "1");
}

#[tokio::test]
async fn function_libraries_travel_with_the_copy() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    source
        .cli(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=mylib\nredis.register_function('echo_back', function(keys, args) return args[1] end)",
        ])
        .unwrap();
    source.cli(&["SET", "k", "v"]).unwrap();
    let stats = full_copy(&source, &target).await;
    assert_eq!(stats.keys, 1);
    assert_eq!(
        target
            .cli(&["FCALL", "echo_back", "0", "hello"])
            .unwrap()
            .trim(),
        "hello"
    );
}

#[tokio::test]
async fn streams_travel_with_their_ids_counters_and_groups() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    let mut commands = String::new();
    // Enough entries for several nodes, with the same and with other fields.
    for i in 1..=500 {
        if i % 7 == 0 {
            commands.push_str(&format!("XADD events {i}-1 kind other extra {i}\n"));
        } else {
            commands.push_str(&format!("XADD events {i}-1 kind click n {i}\n"));
        }
    }
    commands.push_str(
        "XDEL events 3-1 500-1\nXGROUP CREATE events readers 0\nXGROUP CREATE events late 100-1\n\
         XREADGROUP GROUP readers alice COUNT 10 STREAMS events >\n\
         XREADGROUP GROUP readers bob COUNT 5 STREAMS events >\nXACK events readers 1-1 4-1\n\
         XCLAIM events readers bob 0 5-1 RETRYCOUNT 3\nXGROUP CREATECONSUMER events readers carol\n\
         XREADGROUP GROUP late alice COUNT 2 STREAMS events >\n\
         XADD empty 1-1 a b\nXDEL empty 1-1\n",
    );
    source.commands(0, &commands).unwrap();
    let stats = full_copy(&source, &target).await;
    assert_eq!(stats.keys, 2);
    let both = |args: &[&str]| (target.cli(args).unwrap(), source.cli(args).unwrap());
    let (got, want) = both(&["XRANGE", "events", "-", "+"]);
    assert_eq!(got, want);
    assert_eq!(
        got.lines().filter(|l| l.contains('-')).count(),
        498,
        "{got}"
    );
    for key in ["events", "empty"] {
        // Length, last ID, entries added and the largest deleted ID; not the radix-tree
        // figures, which depend on how entries were packed.
        let info = |server: &RedisServer| {
            let text = server.cli(&["XINFO", "STREAM", key]).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            lines
                .chunks(2)
                .filter(|pair| {
                    matches!(
                        pair[0],
                        "length" | "last-generated-id" | "entries-added" | "max-deleted-entry-id"
                    )
                })
                .map(|pair| pair.join("="))
                .collect::<Vec<_>>()
        };
        assert_eq!(info(&target), info(&source), "{key}");
        assert_eq!(info(&source).len(), 4);
    }
    let groups = |server: &RedisServer| {
        let text = server.cli(&["XINFO", "GROUPS", "events"]).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter(|pair| {
                matches!(
                    pair[0],
                    "name" | "consumers" | "pending" | "last-delivered-id" | "entries-read"
                )
            })
            .map(|pair| pair.join("="))
            .collect::<Vec<_>>()
    };
    assert_eq!(groups(&target), groups(&source));
    assert_eq!(groups(&source).len(), 10);
    // Pending entries: ID, consumer and delivery count (not the idle time, which runs on).
    for group in ["readers", "late"] {
        let pending = |server: &RedisServer| {
            let text = server
                .cli(&["XPENDING", "events", group, "-", "+", "100"])
                .unwrap();
            text.lines()
                .enumerate()
                .filter(|(i, _)| i % 4 != 2)
                .map(|(_, line)| line.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(pending(&target), pending(&source), "{group}");
        let consumers = |server: &RedisServer| {
            let text = server
                .cli(&["XINFO", "CONSUMERS", "events", group])
                .unwrap();
            let lines: Vec<&str> = text.lines().collect();
            lines
                .chunks(2)
                .filter(|pair| matches!(pair[0], "name" | "pending"))
                .map(|pair| pair.join("="))
                .collect::<Vec<_>>()
        };
        assert_eq!(consumers(&target), consumers(&source), "{group}");
    }
    assert_eq!(
        source
            .cli(&["XPENDING", "events", "readers"])
            .unwrap()
            .lines()
            .next(),
        Some("13"),
        "10 to alice, 5 to bob, 2 acknowledged"
    );
    // verify reads streams too, and sees one entry fewer.
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert!(report.equal(), "{report:?}");
    target.cli(&["XDEL", "events", "250-1"]).unwrap();
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert_eq!(report.different, 1, "{report:?}");
    // and a group's state: an acknowledgement the source did not see.
    source.cli(&["XDEL", "events", "250-1"]).unwrap();
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert!(report.equal(), "{report:?}");
    assert_eq!(
        target
            .cli(&["XACK", "events", "readers", "2-1"])
            .unwrap()
            .trim(),
        "1"
    );
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert_eq!(report.different, 1, "{report:?}");
}

#[tokio::test]
async fn verify_compares_expiries_within_a_tolerance_without_pexpiretime() {
    // A source without PEXPIRETIME, as before Redis 7.0: its expiries come from PTTL.
    let source = RedisServer::start_with("rename-command PEXPIRETIME \"\"")
        .expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    source
        .commands(
            0,
            "SET a 1 PX 600000\nSET b 2\nHSET h f v\nPEXPIRE h 900000\n",
        )
        .unwrap();
    assert!(source
        .cli(&["PEXPIRETIME", "a"])
        .unwrap()
        .contains("unknown command"));
    full_copy(&source, &target).await;
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert!(report.equal() && report.compared == 3, "{report:?}");
    // Ten seconds off is beyond the tolerance; a lost expiry is a difference too.
    target.cli(&["PEXPIRE", "a", "590000"]).unwrap();
    target.cli(&["PERSIST", "h"]).unwrap();
    let report = ferry_redis::verify::verify(&config(&source), &config(&target), 1)
        .await
        .unwrap();
    assert_eq!(report.different, 2, "{report:?}");
}
