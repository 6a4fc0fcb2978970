//! Redis jobs through the `ferry` binary as a user runs them: a live source moved into a
//! target while a writer keeps going, `ferry run` killed with SIGKILL several times (during the
//! copy and while streaming) and run again, then stopped with `ferry stop`; `ferry verify`
//! finds the target equal, and then finds a tampered key.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_redis::replica::ReplicaConfig;
use ferry_redis::sink::RedisWriter;
use ferry_testkit::cli::{self, describe, wait_for, Dice};
use ferry_testkit::RedisServer;

fn write_job(dir: &Path, source: &RedisServer, target: &RedisServer, extra: &str) -> PathBuf {
    let path = dir.join("cache.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"redis://127.0.0.1:{}\"\n[sink]\nurl = \"redis://127.0.0.1:{}\"\n\
             [migration]\ntypes = [\"full\", \"incremental\"]\nbatch_size = 100\n{extra}",
            source.port(),
            target.port()
        ),
    )
    .unwrap();
    path
}

/// Writes counters, lists and transactions until stopped: replaying any twice would show.
fn start_writer(source: &RedisServer, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let config = ReplicaConfig::plain(format!("127.0.0.1:{}", source.port()));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut client = RedisWriter::connect(&config).await.unwrap();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let k = (n % 100).to_string();
                client.select(n % 3);
                client.command(&[b"INCR", format!("count:{k}").as_bytes()]);
                client.command(&[
                    b"RPUSH",
                    format!("list:{k}").as_bytes(),
                    n.to_string().as_bytes(),
                ]);
                if n.is_multiple_of(7) {
                    client.command(&[b"MULTI"]);
                    client.command(&[b"HINCRBY", b"totals", k.as_bytes(), b"2"]);
                    client.command(&[b"PEXPIRE", format!("list:{k}").as_bytes(), b"100000000"]);
                    client.command(&[b"EXEC"]);
                }
                client.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
    })
}

/// Writes marker `n` at the source and waits until the target has it.
fn catch_up(source: &RedisServer, target: &RedisServer, n: u32) {
    source.cli(&["SET", &format!("marker:{n}"), "1"]).unwrap();
    wait_for("the marker in the target", Duration::from_secs(120), || {
        target
            .cli(&["GET", &format!("marker:{n}")])
            .is_ok_and(|v| v.trim() == "1")
    });
}

#[test]
fn a_live_redis_moves_through_kills_and_verifies_equal() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    // Enough data that an early kill lands in the copy.
    source
        .cli(&[
            "EVAL",
            "for i = 1, 50000 do redis.call('HSET', 'h:' .. (i % 500), 'f' .. i, i) redis.call('SET', 's:' .. i, i) end return 1",
            "0",
        ])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(dir.path(), &source, &target, "");
    let check = cli::ferry("check", &job);
    assert!(check.status.success(), "{}", describe(&check));

    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = start_writer(&source, Arc::clone(&stop_writing));
    cli::kill_rounds(&job, 4, 200, &mut Dice(5));
    let run = cli::spawn_logged("run", &job, &dir.path().join("run.log"));
    catch_up(&source, &target, 1);
    // Limits change while the job runs: it logs the change within a second.
    let output = cli::ferry_with("limit", &job, &["--bandwidth-mb", "500"]);
    assert!(output.status.success(), "{}", describe(&output));
    run.wait_for_log(
        Duration::from_secs(30),
        &["limits changed (ferry limit) rows_per_second=None bandwidth_mb=Some(500)"],
    );
    stop_writing.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    catch_up(&source, &target, 2);
    // A report of the state, keys and lag comes every two seconds.
    run.wait_for_log(
        Duration::from_secs(30),
        &["state=\"INCR_MIGRATING\"", "lag_bytes="],
    );
    let output = run.stop(&job);
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("state=\"TERMINATED\""), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("`ferry run` continues from there"),
        "{}",
        describe(&output)
    );

    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("verify passed"),
        "{}",
        describe(&output)
    );

    // A key changed in the target is found and named; exit code 1.
    target.cli(&["-n", "1", "INCR", "count:1"]).unwrap();
    let output = cli::ferry("verify", &job);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("db 1 key \"count:1\": another value") && stdout.contains("DIFFERENT"),
        "{stdout}"
    );

    // A full-only job copies once and ends in SUCCESS.
    let full = dir.path().join("once.toml");
    std::fs::write(
        &full,
        std::fs::read_to_string(&job)
            .unwrap()
            .replace("types = [\"full\", \"incremental\"]", "types = [\"full\"]"),
    )
    .unwrap();
    let output = cli::ferry("run", &full);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("state=\"SUCCESS\""),
        "{}",
        describe(&output)
    );

    // ferry drop removes the job's point from the target.
    let output = cli::ferry("drop", &job);
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        target
            .cli(&["EXISTS", "__ferry__:checkpoint:cache"])
            .unwrap()
            .trim(),
        "0"
    );
}

/// The keys of database `db`, sorted.
fn keys(server: &RedisServer, db: u32) -> Vec<String> {
    let text = server.cli(&["-n", &db.to_string(), "KEYS", "*"]).unwrap();
    let mut keys: Vec<String> = text
        .lines()
        .map(str::to_string)
        .filter(|k| !k.is_empty())
        .collect();
    keys.sort();
    keys
}

#[test]
fn rules_choose_keys_move_databases_and_leave_commands_out() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    source
        .commands(
            0,
            "HSET user:1 name ann\nSET user:2 x\nSET order:1 y\nRPUSH user:list a b c\n\
             SET user:ttl v PX 100000000\nSET user:moved m\n",
        )
        .unwrap();
    source.commands(1, "SET keep:1 a\nSET keep:2 b\n").unwrap();
    source.commands(2, "SET other:1 z\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &target,
        "[[rules]]\nsql = \"INSERT INTO db3 SELECT * FROM db0 WHERE key LIKE 'user:%'\"\n\
         [[rules]]\nsql = \"SELECT * FROM db1 WHERE command <> 'DEL'\"\n",
    );
    let check = cli::ferry("check", &job);
    assert!(check.status.success(), "{}", describe(&check));
    let child = cli::spawn("run", &job);
    wait_for("the copy in target db 3", Duration::from_secs(60), || {
        keys(&target, 3).contains(&"user:moved".to_string())
    });

    // Commands whose keys part ways under the rules, in a transaction and from Lua too.
    source
        .commands(
            0,
            "HSET user:1 age 30\nSET order:2 q\nRENAME user:2 user:3\n\
             RENAME user:list order:list\nMSET user:m 1 order:m 2\nDEL user:ttl order:1\n\
             MULTI\nINCR user:n\nINCR order:n\nEXEC\nMOVE user:moved 2\n\
             EVAL \"redis.call('SET', 'user:lua', '1') redis.call('SET', 'order:lua', '1')\" 0\n",
        )
        .unwrap();
    source.commands(1, "SET keep:3 c\nDEL keep:1\n").unwrap();
    source.commands(2, "SET other:2 w\nFLUSHDB\n").unwrap();
    source.cli(&["SET", "user:marker", "1"]).unwrap();
    wait_for("the marker in target db 3", Duration::from_secs(60), || {
        target
            .cli(&["-n", "3", "GET", "user:marker"])
            .is_ok_and(|v| v.trim() == "1")
    });
    let output = cli::stop(&job, child);
    assert!(output.status.success(), "{}", describe(&output));

    let selected: Vec<String> = keys(&source, 0)
        .into_iter()
        .filter(|k| k.starts_with("user:"))
        .collect();
    assert_eq!(
        selected,
        [
            "user:1",
            "user:3",
            "user:lua",
            "user:m",
            "user:marker",
            "user:n"
        ]
    );
    assert_eq!(keys(&target, 3), selected);
    assert_eq!(keys(&target, 0), ["__ferry__:checkpoint:cache"]);
    assert_eq!(keys(&target, 2), Vec::<String>::new());
    assert_eq!(
        keys(&target, 1),
        ["keep:1", "keep:2", "keep:3"],
        "DEL left out"
    );
    assert_eq!(
        target.cli(&["-n", "3", "GET", "user:3"]).unwrap().trim(),
        "x"
    );
    assert_eq!(
        target
            .cli(&["-n", "3", "HGET", "user:1", "age"])
            .unwrap()
            .trim(),
        "30"
    );

    // verify compares what the rules select, where they send it: the key whose DEL the
    // rules left out is the one difference.
    let output = cli::ferry("verify", &job);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("db 1 key \"keep:1\": in the target only")
            && stdout.contains("0 missing in the target, 1 in the target only, 0 with another"),
        "{stdout}"
    );
    target.cli(&["-n", "1", "DEL", "keep:1"]).unwrap();
    let output = cli::ferry("verify", &job);
    assert!(output.status.success(), "{}", describe(&output));

    // A value moving into the selection from outside it cannot be followed: the run stops,
    // naming the command and the fix, with the target at the point before it.
    source
        .commands(
            0,
            "SET user:before 1\nSET order:x 1\nRENAME order:x user:x\n",
        )
        .unwrap();
    let output = cli::ferry("run", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the source ran `RENAME order:x user:x`")
            && stderr.contains("widen the rule"),
        "{stderr}"
    );
    // The refused command is not applied, and the point the target records stays before
    // it: a run after the rule is fixed continues from there.
    assert!(!keys(&target, 3).contains(&"user:x".to_string()));
    let point = target.cli(&["GET", "__ferry__:checkpoint:cache"]).unwrap();
    let offset: u64 = point.split(' ').nth(1).unwrap().parse().unwrap();
    assert!(offset < source.replication_offset().unwrap(), "{point}");
}

#[test]
fn redis_jobs_refuse_bad_rules_and_a_non_redis_target() {
    let source = RedisServer::start().expect("start Redis (apt-get install -y redis-server)");
    let target = RedisServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &source,
        &target,
        "[[rules]]\nsql = 'SELECT key FROM db0'\n",
    );
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("write SELECT *"),
        "{}",
        describe(&output)
    );
    let job = dir.path().join("to_pg.toml");
    std::fs::write(
        &job,
        format!(
            "[source]\nurl = \"redis://127.0.0.1:{}\"\n[sink]\nurl = \"postgres://u@127.0.0.1:1/x\"\n",
            source.port()
        ),
    )
    .unwrap();
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Redis target"),
        "{}",
        describe(&output)
    );
    // Into itself: refused before anything is read.
    let job = write_job(dir.path(), &source, &source, "");
    let output = cli::ferry("check", &job);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("is the source itself"),
        "{}",
        describe(&output)
    );
}
