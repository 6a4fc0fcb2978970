//! `ferry-bench redis`: a full sync of a Redis with keys of every type, by ferry's Redis
//! connector (ferry as a replica of the source: the RDB parsed as it arrives and written to
//! the target as pipelined native commands), beside `redis-cli --pipe` loading the same data
//! into another server, in the same run on the same machine; then the same copy under a
//! bandwidth limit, to show how closely the limit holds.
//!
//! Then the incremental phase: a stream of commands of every kind loaded into the source while
//! its backlog keeps them, replayed by ferry from the point before them (a partial resync, as
//! after a broken link) at several batch sizes and under a rule, beside `redis-cli --pipe`
//! of the same commands.
//!
//! ferry's side runs inside this process (the connector as a library, with the rules
//! compiled as `ferry run` compiles them): its time is wall time, its CPU and peak memory this
//! process's.

use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use ferry_engine::Error;
use std::sync::Arc;

use ferry_engine::RetryPolicy;
use ferry_local::RedisServer;
use ferry_redis::copy::{copy_rdb, CopyOptions, Limits, StreamPoint};
use ferry_redis::migrate::{migrate, MigrationOptions};
use ferry_redis::replica::{Replica, ReplicaConfig};
use ferry_redis::rules::{CommandTable, Rules};
use ferry_redis::sink::{RedisWriter, Reply};

use crate::load::{failed, measure, process_cpu_seconds, Measurement};
use ferry_jobs::redis::rules::KeyRules;

/// Options of `ferry-bench redis`.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchRedisArgs {
    /// Keys to generate (40 % strings; hashes, lists, sets and sorted sets of 5 elements).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// Commands per pipelined batch written to the target.
    #[arg(long, default_value_t = 512)]
    pub batch: usize,
    /// Commands of the incremental phase.
    #[arg(long, default_value_t = 500_000)]
    pub commands: u64,
    /// Where to write redis-results.md and the generated commands.
    #[arg(long, default_value = "bench-out")]
    pub out: PathBuf,
}

/// One command in RESP.
fn resp(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes the data set as RESP commands (what `redis-cli --pipe` reads), a key at a time so
/// this process's peak memory stays ferry's.
fn generate(keys: u64, file: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut out = Vec::new();
    for i in 0..keys {
        out.clear();
        let key = format!(
            "{}:{i}",
            ["s", "s", "h", "l", "set", "z", "s", "s", "h", "l"][(i % 10) as usize]
        );
        let v = |j: u64| format!("v{}-{j}", i * 7 + j);
        let five: Vec<String> = (0..5).map(v).collect();
        let five: Vec<&[u8]> = five.iter().map(|s| s.as_bytes()).collect();
        match key.split(':').next().unwrap_or_default() {
            "s" => resp(
                &mut out,
                &[
                    b"SET",
                    key.as_bytes(),
                    format!("value-{i}-{}", "x".repeat((i % 40) as usize)).as_bytes(),
                ],
            ),
            "h" => {
                let mut args: Vec<&[u8]> = vec![b"HSET", key.as_bytes()];
                for (j, value) in five.iter().enumerate() {
                    args.push([b"f0", b"f1", b"f2", b"f3", b"f4"][j]);
                    args.push(value);
                }
                resp(&mut out, &args);
            }
            "l" => {
                let mut args: Vec<&[u8]> = vec![b"RPUSH", key.as_bytes()];
                args.extend(&five);
                resp(&mut out, &args);
            }
            "set" => {
                let mut args: Vec<&[u8]> = vec![b"SADD", key.as_bytes()];
                args.extend(&five);
                resp(&mut out, &args);
            }
            _ => {
                let scores: Vec<String> = (0..5).map(|j| format!("{}.5", i + j)).collect();
                let mut args: Vec<&[u8]> = vec![b"ZADD", key.as_bytes()];
                for (score, member) in scores.iter().zip(&five) {
                    args.push(score.as_bytes());
                    args.push(member);
                }
                resp(&mut out, &args);
            }
        }
        file.write_all(&out)?;
    }
    file.flush()
}

/// Writes `commands` stream commands over keys `t:*` that succeed on any target (INCR,
/// HINCRBY, RPUSH, SADD, ZINCRBY, SET with an expiry, DEL, a MULTI/EXEC every 50th).
fn generate_stream(commands: u64, file: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut out = Vec::new();
    for i in 0..commands {
        out.clear();
        let key = |kind: &str| format!("t:{}:{kind}:{}", i % 2, i % 10_000);
        let n = i.to_string();
        match i % 8 {
            0 => resp(&mut out, &[b"INCR", key("n").as_bytes()]),
            1 => resp(&mut out, &[b"HINCRBY", key("h").as_bytes(), b"f", b"3"]),
            2 => resp(&mut out, &[b"RPUSH", key("l").as_bytes(), n.as_bytes()]),
            3 => resp(&mut out, &[b"SADD", key("s").as_bytes(), n.as_bytes()]),
            4 => resp(&mut out, &[b"ZINCRBY", key("z").as_bytes(), b"1.5", b"m"]),
            5 => resp(
                &mut out,
                &[b"SET", key("v").as_bytes(), n.as_bytes(), b"EX", b"100000"],
            ),
            6 => resp(
                &mut out,
                &[b"DEL", key("v").as_bytes(), key("x").as_bytes()],
            ),
            _ if i % 50 == 7 => {
                resp(&mut out, &[b"MULTI"]);
                resp(&mut out, &[b"INCR", key("n").as_bytes()]);
                resp(&mut out, &[b"RPUSH", key("l").as_bytes(), n.as_bytes()]);
                resp(&mut out, &[b"EXEC"]);
            }
            _ => resp(&mut out, &[b"APPEND", key("a").as_bytes(), b"x"]),
        }
        file.write_all(&out)?;
    }
    file.flush()
}

/// The source's replication id and offset now.
fn stream_point(source: &RedisServer) -> Result<StreamPoint, Error> {
    let info = source.cli(&["INFO", "replication"]).map_err(failed)?;
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .ok_or_else(|| failed(format!("no {name} in INFO replication")))
    };
    Ok(StreamPoint {
        replid: field("master_replid")?,
        offset: field("master_repl_offset")?.parse().map_err(failed)?,
        db: 0,
    })
}

/// Replays the source's stream from `from` to `to` into `target` (a partial resync).
async fn ferry_replay(
    source: &RedisServer,
    target: &RedisServer,
    copy: CopyOptions,
    (from, to): (&StreamPoint, u64),
    name: String,
) -> Result<Measurement, Error> {
    target.cli(&["FLUSHALL"]).map_err(failed)?;
    let options = MigrationOptions {
        copy,
        retry: RetryPolicy::NEVER,
        ..MigrationOptions::default()
    };
    let cpu_before = process_cpu_seconds(std::process::id());
    let started = Instant::now();
    let report = migrate(
        &config(source),
        &config(target),
        &options,
        &Limits::default(),
        Some(from.clone()),
        &mut |_| {},
        &|point| point.offset >= to,
    )
    .await
    .map_err(failed)?;
    if report.full_copies > 0 {
        return Err(failed(
            "the source could not continue from the point (its backlog lost it): a full copy ran instead",
        ));
    }
    Ok(Measurement {
        name,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds(std::process::id()) - cpu_before,
        peak_rss_kb: own_peak_kb(),
    })
}

/// `rule` compiled for `source`, as `ferry run` compiles a job's rules.
async fn rules_for(source: &RedisServer, rule: &str) -> Result<Rules, Error> {
    let selector = KeyRules::compile(
        &[ferry_sql::RuleConfig {
            sql: rule.to_string(),
        }],
        16,
    )?;
    let mut conn = RedisWriter::connect(&config(source))
        .await
        .map_err(failed)?;
    Ok(Rules {
        selector: Arc::new(selector),
        commands: Arc::new(CommandTable::fetch(&mut conn).await.map_err(failed)?),
    })
}

fn config(server: &RedisServer) -> ReplicaConfig {
    ReplicaConfig::plain(format!("127.0.0.1:{}", server.port()))
}

fn dbsize(server: &RedisServer) -> Result<u64, Error> {
    server
        .cli(&["DBSIZE"])
        .map_err(failed)?
        .trim()
        .parse()
        .map_err(failed)
}

/// `redis-cli --pipe` of `file` into `server`.
fn pipe(server: &RedisServer, file: &PathBuf) -> Result<Measurement, Error> {
    let input = fs::File::open(file).map_err(failed)?;
    let child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p"])
        .arg(server.port().to_string())
        .arg("--pipe")
        .stdin(Stdio::from(input))
        .stdout(Stdio::null())
        .spawn()
        .map_err(failed)?;
    measure("redis-cli --pipe of the generated commands", vec![child])
}

/// This process's peak resident memory, in kB.
fn own_peak_kb() -> u64 {
    crate::load::peak_rss_kb(std::process::id()).unwrap_or(0)
}

/// A full sync of `source` into `target` by ferry's connector, under `limits`.
async fn ferry_copy(
    source: &RedisServer,
    target: &RedisServer,
    copy: CopyOptions,
    limits: &Limits,
    name: &str,
) -> Result<(Measurement, u64), Error> {
    let cpu_before = process_cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut writer = RedisWriter::connect(&config(target))
        .await
        .map_err(failed)?;
    let (replica, _) = Replica::connect(config(source), None)
        .await
        .map_err(failed)?;
    let (_, stats) = copy_rdb(replica, &mut writer, copy, limits)
        .await
        .map_err(failed)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        Measurement {
            name: name.into(),
            seconds,
            cpu_seconds: process_cpu_seconds(std::process::id()) - cpu_before,
            peak_rss_kb: own_peak_kb(),
        },
        stats.rdb_bytes,
    ))
}

/// The other way to move keys: `DUMP` each at the source (with `PEXPIRETIME`) and `RESTORE …
/// REPLACE ABSTTL` it into the target, pipelined in batches of `batch` keys, the keys listed
/// by `SCAN`. Measured beside the native commands ferry writes, to choose between them.
async fn dump_restore(
    source: &RedisServer,
    target: &RedisServer,
    batch: usize,
) -> Result<Measurement, Error> {
    let cpu_before = process_cpu_seconds(std::process::id());
    let started = Instant::now();
    let mut from = RedisWriter::connect(&config(source))
        .await
        .map_err(failed)?;
    let mut to = RedisWriter::connect(&config(target))
        .await
        .map_err(failed)?;
    let mut cursor = b"0".to_vec();
    loop {
        let count = batch.to_string();
        let reply = from
            .request(&[b"SCAN", &cursor, b"COUNT", count.as_bytes()])
            .await
            .map_err(failed)?;
        let Reply::Array(mut parts) = reply else {
            return Err(failed("a bad SCAN reply"));
        };
        let keys: Vec<Vec<u8>> = match parts.pop() {
            Some(Reply::Array(keys)) => keys
                .into_iter()
                .filter_map(|k| match k {
                    Reply::BulkString(k) => Some(k),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        cursor = match parts.pop() {
            Some(Reply::BulkString(c)) => c,
            _ => return Err(failed("a bad SCAN cursor")),
        };
        let mut asks: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * 2);
        for key in &keys {
            asks.push(vec![b"DUMP", key]);
            asks.push(vec![b"PEXPIRETIME", key]);
        }
        let answers = from.request_many(&asks).await.map_err(failed)?;
        let mut restores: Vec<(Vec<u8>, String, Vec<u8>)> = Vec::new();
        for (key, pair) in keys.iter().zip(answers.chunks(2)) {
            if let [Reply::BulkString(payload), Reply::Integer(at)] = pair {
                let ttl = if *at > 0 { at.to_string() } else { "0".into() };
                restores.push((key.clone(), ttl, payload.clone()));
            }
        }
        for (key, ttl, payload) in &restores {
            let mut args: Vec<&[u8]> = vec![b"RESTORE", key, ttl.as_bytes(), payload, b"REPLACE"];
            if ttl != "0" {
                args.push(b"ABSTTL");
            }
            to.command(&args);
        }
        to.flush().await.map_err(failed)?;
        if cursor == b"0" {
            break;
        }
    }
    Ok(Measurement {
        name: "DUMP / RESTORE … REPLACE, pipelined".into(),
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: process_cpu_seconds(std::process::id()) - cpu_before,
        peak_rss_kb: own_peak_kb(),
    })
}

/// Runs the benchmark and prints the table.
pub async fn run(args: BenchRedisArgs) -> Result<(), Error> {
    fs::create_dir_all(&args.out).map_err(failed)?;
    let source = RedisServer::start().map_err(failed)?;
    let piped = RedisServer::start().map_err(failed)?;
    let target = RedisServer::start().map_err(failed)?;
    eprintln!("generating {} keys …", args.keys);
    let file = args.out.join("redis-load.resp");
    fs::File::create(&file)
        .and_then(|f| generate(args.keys, &mut std::io::BufWriter::new(f)))
        .map_err(failed)?;
    let load = pipe(&source, &file)?;
    if dbsize(&source)? != args.keys {
        return Err(failed("the source did not load every key"));
    }

    eprintln!("baseline: redis-cli --pipe …");
    let baseline = pipe(&piped, &file)?;
    // The backlog keeps the stream commands loaded later, for the replay measured below.
    source
        .cli(&["CONFIG", "SET", "repl-backlog-size", "1gb"])
        .map_err(failed)?;
    let copy = CopyOptions {
        batch: args.batch,
        target_empty: true,
        rules: None,
    };
    eprintln!("ferry: full sync …");
    let (unlimited, rdb_bytes) = ferry_copy(
        &source,
        &target,
        copy.clone(),
        &Limits::default(),
        "ferry full sync",
    )
    .await?;
    if dbsize(&target)? != args.keys {
        return Err(failed("ferry did not copy every key"));
    }
    eprintln!("DUMP / RESTORE …");
    let restored = RedisServer::start().map_err(failed)?;
    let dump = dump_restore(&source, &restored, args.batch).await?;
    if dbsize(&restored)? != args.keys {
        return Err(failed("DUMP / RESTORE did not copy every key"));
    }
    drop(restored);
    // The same copy at about a third of the rate it reached.
    let limit = ((rdb_bytes as f64 / unlimited.seconds) / 3.0).max(1.0) as u64;
    target.cli(&["FLUSHALL"]).map_err(failed)?;
    let limits = Limits::default();
    limits.bytes.set_per_second(limit);
    eprintln!(
        "ferry: full sync limited to {:.1} MB/s …",
        limit as f64 / 1e6
    );
    let (limited, _) = ferry_copy(
        &source,
        &target,
        copy.clone(),
        &limits,
        "ferry full sync, bandwidth-limited",
    )
    .await?;
    if dbsize(&target)? != args.keys {
        return Err(failed("the limited copy did not copy every key"));
    }
    // Under a rule keeping the strings (40 % of the keys).
    target.cli(&["FLUSHALL"]).map_err(failed)?;
    eprintln!("ferry: full sync under a rule …");
    let rule = "SELECT * FROM db0 WHERE key LIKE 's:%'";
    let (ruled, _) = ferry_copy(
        &source,
        &target,
        CopyOptions {
            rules: Some(rules_for(&source, rule).await?),
            ..copy.clone()
        },
        &Limits::default(),
        "ferry full sync, rule keeping the 40 % strings",
    )
    .await?;
    if dbsize(&target)? != args.keys * 4 / 10 {
        return Err(failed("the rule did not keep exactly the strings"));
    }

    // The incremental phase: commands the backlog holds, replayed from the point before them.
    eprintln!("generating {} stream commands …", args.commands);
    let stream_file = args.out.join("redis-stream.resp");
    fs::File::create(&stream_file)
        .and_then(|f| generate_stream(args.commands, &mut std::io::BufWriter::new(f)))
        .map_err(failed)?;
    let before = stream_point(&source)?;
    let stream_load = pipe(&source, &stream_file)?;
    let end = stream_point(&source)?.offset;
    let stream_piped = RedisServer::start().map_err(failed)?;
    eprintln!("baseline: redis-cli --pipe of the stream …");
    let stream_baseline = pipe(&stream_piped, &stream_file)?;
    let mut replays = vec![stream_baseline];
    for batch in [64, 1024, 8192] {
        eprintln!("ferry: stream replay, batch {batch} …");
        replays.push(
            ferry_replay(
                &source,
                &target,
                CopyOptions {
                    batch,
                    ..copy.clone()
                },
                (&before, end),
                format!("ferry stream replay, batch {batch}"),
            )
            .await?,
        );
        if dbsize(&target)? != dbsize(&stream_piped)? {
            return Err(failed(
                "the replay did not end with the keys the commands make",
            ));
        }
    }
    eprintln!("ferry: stream replay under a rule …");
    replays.push(
        ferry_replay(
            &source,
            &target,
            CopyOptions {
                batch: 1024,
                rules: Some(rules_for(&source, "SELECT * FROM db0 WHERE key LIKE 't:0:%'").await?),
                ..copy.clone()
            },
            (&before, end),
            "ferry stream replay, batch 1024, rule keeping half the keys".into(),
        )
        .await?,
    );

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{} keys (40 % strings; hashes, lists, sets, sorted sets of 5 elements), RDB {:.1} MB; loading the source with redis-cli --pipe took {:.2} s\n",
        args.keys,
        rdb_bytes as f64 / 1e6,
        load.seconds
    );
    let _ = writeln!(
        table,
        "| configuration | seconds | keys/s | MB/s of RDB | CPU s | peak RSS MB |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|---:|");
    for m in [&baseline, &dump, &unlimited, &limited, &ruled] {
        let _ = writeln!(
            table,
            "| {} | {:.2} | {:.0} | {:.1} | {:.2} | {:.1} |",
            m.name,
            m.seconds,
            args.keys as f64 / m.seconds,
            rdb_bytes as f64 / 1e6 / m.seconds,
            m.cpu_seconds,
            m.peak_rss_kb as f64 / 1024.0
        );
    }
    let achieved = rdb_bytes as f64 / limited.seconds;
    let _ = writeln!(
        table,
        "\nbandwidth limit {:.2} MB/s, achieved {:.2} MB/s ({:+.1} %)",
        limit as f64 / 1e6,
        achieved / 1e6,
        (achieved / limit as f64 - 1.0) * 100.0
    );
    let _ = writeln!(
        table,
        "\nincremental phase: {} commands ({:.1} MB of stream) loaded into the source in {:.2} s, replayed from the point before them\n",
        args.commands,
        (end - before.offset) as f64 / 1e6,
        stream_load.seconds
    );
    let _ = writeln!(
        table,
        "| configuration | seconds | commands/s | MB/s of stream | CPU s |"
    );
    let _ = writeln!(table, "|---|---:|---:|---:|---:|");
    for m in &replays {
        let _ = writeln!(
            table,
            "| {} | {:.2} | {:.0} | {:.1} | {:.2} |",
            m.name,
            m.seconds,
            args.commands as f64 / m.seconds,
            (end - before.offset) as f64 / 1e6 / m.seconds,
            m.cpu_seconds
        );
    }
    let _ = fs::remove_file(&file);
    let _ = fs::remove_file(&stream_file);
    crate::load::publish(&args.out, "redis-results.md", &table)
}
