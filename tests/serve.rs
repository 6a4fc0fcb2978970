//! `ferry serve` as a user runs it: a process holding jobs, driven over HTTP by a real
//! client, against real PostgreSQL, MariaDB and Redis servers — jobs to `completed`, a
//! precheck that fails and names the fix, pause and resume without loss, a `kill -9` of
//! the server with jobs paused and running, cutover, drop, limits, metrics parsed as
//! Prometheus text, and bad requests refused without changing anything.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferry_testkit::cli::{binary, describe, wait_for};
use ferry_testkit::serve::Serve;
use ferry_testkit::{MariaServer, PgServer, RedisServer};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

fn source(server: &PgServer, tables: &[(&str, u64)]) {
    server.create_database("src").unwrap();
    for (table, rows) in tables {
        server
            .psql(
                "src",
                &format!(
                    "CREATE TABLE public.{table} (id bigint PRIMARY KEY, v text);
                     INSERT INTO public.{table} SELECT g, 'row ' || g FROM generate_series(1, {rows}) g;
                     ANALYZE public.{table};"
                ),
            )
            .unwrap();
    }
}

fn spec(source: &str, sink: &str, types: &str, rules: &[&str]) -> String {
    let mut text = format!(
        "[source]\nurl = \"{source}\"\n[sink]\nurl = \"{sink}\"\n[migration]\ntypes = [{types}]\nbatch_size = 500\n"
    );
    for rule in rules {
        text.push_str(&format!("[[rules]]\nsql = '{rule}'\n"));
    }
    text
}

fn count(server: &PgServer, database: &str, table: &str) -> u64 {
    server
        .psql(database, &format!("SELECT count(*) FROM {table}"))
        .map(|out| out.trim().parse().unwrap_or(0))
        .unwrap_or(0)
}

fn rows(server: &PgServer, database: &str, table: &str) -> String {
    server
        .psql(database, &format!("SELECT id, v FROM {table} ORDER BY id"))
        .unwrap()
}

fn code(answer: &ferry_testkit::serve::Answer) -> &str {
    answer.body["error"]["code"].as_str().unwrap_or("")
}

fn total(serve: &Serve) -> u64 {
    serve.get("/v1/jobs").body["total"].as_u64().unwrap()
}

/// Scrapes `/metrics` and returns the value of `metric` for `job` (and `state`, when given),
/// the text parsed as Prometheus text.
fn metric(serve: &Serve, metric: &str, job: &str, state: Option<&str>) -> Option<f64> {
    let answer = serve.get("/metrics");
    assert_eq!(answer.status, 200);
    let lines = answer.text.lines().map(|l| Ok(l.to_string()));
    let scrape =
        prometheus_parse::Scrape::parse(lines).expect("the metrics parse as Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == metric
                && s.labels.get("job") == Some(job)
                && state.is_none_or(|state| s.labels.get("state") == Some(state))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn ferry_cli(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .output()
        .expect("run ferry")
}

#[test]
fn a_full_job_completes_and_bad_requests_change_nothing() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, &[("t", 10_000)]);
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);

    assert_eq!(serve.get("/healthz").status, 200);
    assert_eq!(total(&serve), 0);

    // A password the server ignores (trust), which must never come back.
    let source_url = pg.url("src").replace("ferry@", "ferry:hunter2@");
    let good = spec(
        &source_url,
        &pg.url("dst"),
        "\"schema\", \"full\"",
        &["SELECT * FROM public.t"],
    );

    let refused: Vec<(&str, ferry_testkit::serve::Answer, u16, &str)> = vec![
        (
            "malformed TOML",
            serve.create("j1", "[source\nurl = 1"),
            400,
            "InvalidParameter",
        ),
        (
            "an unknown field",
            serve.create(
                "j1",
                &good.replace("[migration]\n", "[migration]\ncolour = \"red\"\n"),
            ),
            400,
            "InvalidParameter",
        ),
        (
            "a rule that does not parse",
            serve.create(
                "j1",
                &good.replace("SELECT * FROM public.t", "SELEKT FROM WHERE"),
            ),
            400,
            "InvalidParameter",
        ),
        (
            "malformed JSON",
            serve.post(
                "/v1/jobs?name=j1",
                Some(("application/json", "{\"source\": {")),
            ),
            400,
            "InvalidParameter",
        ),
        (
            "a path in the name",
            serve.create("..%2F..%2Fetc", &good),
            400,
            "InvalidParameter",
        ),
        (
            "an upper-case name",
            serve.create("Orders", &good),
            400,
            "InvalidParameter",
        ),
        (
            "no name",
            serve.post("/v1/jobs", Some(("application/toml", good.as_str()))),
            400,
            "MissingParameter",
        ),
        (
            "an unknown parameter",
            serve.post(
                "/v1/jobs?name=j1&strat=false",
                Some(("application/toml", good.as_str())),
            ),
            400,
            "InvalidParameter",
        ),
        (
            "a body of 10 MB",
            serve.create("j1", &format!("{good}# {}\n", "x".repeat(10 << 20))),
            413,
            "PayloadTooLarge",
        ),
        (
            "an unknown source",
            serve.create("j1", &good.replace("postgres://", "oracle://")),
            400,
            "InvalidParameter",
        ),
    ];
    for (what, answer, status, error) in &refused {
        assert_eq!(answer.status, *status, "{what}: {answer:?}");
        assert_eq!(code(answer), *error, "{what}: {answer:?}");
        assert!(
            !answer.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty(),
            "{what}"
        );
    }
    assert!(refused[1].1.text.contains("colour"), "{:?}", refused[1].1);
    assert_eq!(total(&serve), 0, "refused requests created nothing");

    let created = serve.create("j1", &good);
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["name"], "j1");
    let doc = serve.wait_state("j1", "completed", MINUTE);
    assert_eq!(doc["full"]["rows_done"], 10_000, "{doc}");
    assert_eq!(doc["full"]["percent"], 100.0, "{doc}");
    assert_eq!(doc["full"]["status"], "finished", "{doc}");
    assert_eq!(doc["schema"]["status"], "finished", "{doc}");
    assert_eq!(doc["precheck"]["status"], "passed", "{doc}");
    assert_eq!(
        doc["allowed_actions"],
        serde_json::json!(["duplicate", "drop"])
    );
    assert_eq!(count(&pg, "dst", "public.t"), 10_000);
    assert_eq!(rows(&pg, "src", "public.t"), rows(&pg, "dst", "public.t"));

    // Taken names, illegal transitions, unknown jobs.
    let again = serve.create("j1", &good);
    assert_eq!(
        (again.status, code(&again)),
        (409, "JobAlreadyExists"),
        "{again:?}"
    );
    let pause = serve.post("/v1/jobs/j1/pause", None);
    assert_eq!(
        (pause.status, code(&pause)),
        (409, "InvalidJobState"),
        "{pause:?}"
    );
    assert_eq!(pause.body["error"]["state"], "completed");
    let allowed = pause.body["error"]["allowed_actions"].as_array().unwrap();
    assert!(!allowed.contains(&Value::from("pause")) && allowed.contains(&Value::from("drop")));
    let missing = serve.get("/v1/jobs/nope");
    assert_eq!((missing.status, code(&missing)), (404, "JobNotFound"));
    let missing = serve.post("/v1/jobs/nope/pause", None);
    assert_eq!((missing.status, code(&missing)), (404, "JobNotFound"));
    let no_route = serve.post("/v1/jobs/j1/explode", None);
    assert_eq!(no_route.status, 404, "{no_route:?}");
    let stop = serve.post("/v1/jobs/j1/stop", None);
    assert_eq!(
        stop.status, 409,
        "a completed job cannot be stopped: {stop:?}"
    );

    // Tables, events, spec.
    let tables = serve.get("/v1/jobs/j1/tables").body;
    assert_eq!(tables["tables"][0]["source_table"], "public.t", "{tables}");
    assert_eq!(tables["tables"][0]["rows_done"], 10_000, "{tables}");
    let events = serve.get("/v1/jobs/j1/events").body;
    let states: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["to_state"].as_str())
        .collect();
    assert_eq!(states, ["prechecking", "running", "completed"], "{events}");
    let spec_answer = serve.get("/v1/jobs/j1/spec");
    assert!(
        spec_answer.text.contains("ferry:********@"),
        "{spec_answer:?}"
    );

    // Metrics, parsed.
    assert_eq!(
        metric(&serve, "ferry_job_rows_total", "j1", None),
        Some(10_000.0)
    );
    assert_eq!(
        metric(&serve, "ferry_job_state", "j1", Some("completed")),
        Some(1.0)
    );
    assert_eq!(
        metric(&serve, "ferry_job_state", "j1", Some("running")),
        Some(0.0)
    );
    assert_eq!(
        metric(&serve, "ferry_job_full_percent", "j1", None),
        Some(100.0)
    );

    // The CLI over the server.
    let jobs = ferry_cli(&["jobs", "--server", &serve.url]);
    assert!(jobs.status.success(), "{}", describe(&jobs));
    let listed = String::from_utf8_lossy(&jobs.stdout);
    assert!(
        listed.contains("j1") && listed.contains("completed"),
        "{listed}"
    );
    let status = ferry_cli(&["status", "j1", "--server", &serve.url]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("completed"),
        "{}",
        describe(&status)
    );
    let pause = ferry_cli(&["pause", "j1", "--server", &serve.url]);
    assert_eq!(pause.status.code(), Some(2), "{}", describe(&pause));
    assert!(
        String::from_utf8_lossy(&pause.stderr).contains("allowed now"),
        "{}",
        describe(&pause)
    );
    let stop = ferry_cli(&["stop", "j1", "--server", &serve.url]);
    assert_eq!(stop.status.code(), Some(2), "{}", describe(&stop));
    assert!(
        String::from_utf8_lossy(&stop.stderr).contains("ferry terminate"),
        "{}",
        describe(&stop)
    );

    // Duplicate makes a draft; drop removes it.
    let copy = serve.post("/v1/jobs/j1/duplicate?name=j1_again", None);
    assert_eq!(copy.status, 201, "{copy:?}");
    assert_eq!(copy.body["state"], "draft");
    let gone = serve.delete("/v1/jobs/j1_again");
    assert_eq!(gone.status, 200, "{gone:?}");
    assert_eq!(serve.get("/v1/jobs/j1_again").status, 404);

    // Every GET route of the OpenAPI document answers (none falls through to "no route").
    let openapi = serve.get("/v1/openapi.json").body;
    for (path, operations) in openapi["paths"].as_object().unwrap() {
        if operations.get("get").is_some() {
            let answer = serve.get(&path.replace("{name}", "j1"));
            assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
        }
    }

    // The secret appears nowhere.
    for path in [
        "/v1/jobs",
        "/v1/jobs/j1",
        "/v1/jobs/j1/spec",
        "/v1/jobs/j1/events",
        "/metrics",
        "/",
    ] {
        assert!(
            !serve.get(path).text.contains("hunter2"),
            "{path} shows the password"
        );
    }
    assert!(
        !serve.log().contains("hunter2"),
        "the log shows the password"
    );
}

#[test]
fn a_failed_precheck_names_the_fix_and_the_patched_job_completes() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, &[("t", 3_000)]);
    let maria = MariaServer::start().expect("start MariaDB");
    maria
        .sql(
            "mysql",
            "CREATE DATABASE dst; CREATE USER 'writer'@'%' IDENTIFIED BY 'good'; GRANT ALL ON *.* TO 'writer'@'%';",
        )
        .unwrap();
    let sink = |password: &str| format!("mysql://writer:{password}@127.0.0.1:{}/dst", maria.port());
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);

    let job = spec(
        &pg.url("src"),
        &sink("wrong"),
        "\"schema\", \"full\"",
        &["INSERT INTO dst.t SELECT * FROM public.t"],
    );
    let created = serve.create("to_maria", &job);
    assert_eq!(created.status, 201, "{created:?}");
    let doc = serve.wait_state("to_maria", "precheck_failed", MINUTE);
    let items = doc["precheck"]["items"].as_array().unwrap();
    let item = items
        .iter()
        .find(|i| i["name"] == "sink.connectivity")
        .expect("a sink.connectivity item");
    assert_eq!(item["status"], "failed", "{doc}");
    assert!(
        item["message"].as_str().unwrap().contains("denied"),
        "{item}"
    );
    assert!(item["fix"].as_str().unwrap().contains("sink.url"), "{item}");
    assert!(
        items
            .iter()
            .any(|i| i["name"] == "source.connectivity" && i["status"] == "passed"),
        "{doc}"
    );
    assert_eq!(
        serve.get("/v1/jobs/to_maria/precheck").body["status"],
        "failed"
    );
    assert!(
        !doc.to_string().contains("wrong"),
        "the status shows the password: {doc}"
    );
    let tables = maria.sql("dst", "SHOW TABLES").unwrap();
    assert!(tables.trim().is_empty(), "nothing written: {tables}");

    // Started as it is, waiting: refused with the items.
    let blocked = serve.post("/v1/jobs/to_maria/start?wait=30s", None);
    assert_eq!(
        (blocked.status, code(&blocked)),
        (409, "PrecheckFailed"),
        "{blocked:?}"
    );
    assert!(blocked.text.contains("sink.connectivity"), "{blocked:?}");

    // Fixed by a patch (JSON this time), started again, it completes.
    let patch = serve.patch(
        "/v1/jobs/to_maria",
        "application/json",
        &format!("{{\"sink\": {{\"url\": \"{}\"}}}}", sink("good")),
    );
    assert_eq!(patch.status, 200, "{patch:?}");
    assert_eq!(patch.body["state"], "precheck_failed");
    let bad_patch = serve.patch(
        "/v1/jobs/to_maria",
        "application/toml",
        "[migration]\nbatch_sise = 3\n",
    );
    assert_eq!(bad_patch.status, 400, "{bad_patch:?}");
    let started = serve.post("/v1/jobs/to_maria/start", None);
    assert_eq!(started.status, 202, "{started:?}");
    let doc = serve.wait_state("to_maria", "completed", MINUTE);
    assert_eq!(doc["full"]["rows_done"], 3_000, "{doc}");
    assert_eq!(
        maria.sql("dst", "SELECT count(*) FROM t").unwrap().trim(),
        "3000"
    );
    assert_eq!(
        maria
            .sql("dst", "SELECT count(DISTINCT id) FROM t")
            .unwrap()
            .trim(),
        "3000"
    );
}

fn verify(spec: &str, dir: &Path, name: &str) {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, spec).unwrap();
    let output = Command::new(binary())
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run ferry verify");
    assert!(
        output.status.success(),
        "ferry verify {name}: {}",
        describe(&output)
    );
}

#[test]
fn paused_jobs_stay_paused_across_a_kill_and_running_ones_resume() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, &[("a", 2_000), ("p", 2_000)]);
    pg.create_database("sink_a").unwrap();
    pg.create_database("sink_p").unwrap();
    let redis_source = RedisServer::start().expect("start Redis");
    let redis_target = RedisServer::start().expect("start Redis");
    for i in 0..200 {
        redis_source
            .cli(&["SET", &format!("k{i}"), &format!("v{i}")])
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let serve = Serve::start(&data, &[]);

    let all = "\"schema\", \"full\", \"incremental\"";
    let spec_a = spec(
        &pg.url("src"),
        &pg.url("sink_a"),
        all,
        &["INSERT INTO public.a SELECT * FROM public.a"],
    );
    let spec_p = spec(
        &pg.url("src"),
        &pg.url("sink_p"),
        all,
        &["INSERT INTO public.p SELECT * FROM public.p"],
    );
    let spec_keys = format!(
        "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"full\", \"incremental\"]\nbatch_size = 100\n",
        redis_source.url(0),
        redis_target.url(0)
    );
    for (name, text) in [("cdc_a", &spec_a), ("cdc_p", &spec_p), ("keys", &spec_keys)] {
        let created = serve.create(name, text);
        assert_eq!(created.status, 201, "{name}: {created:?}");
    }
    let caught_up = |doc: &Value| doc["phase"] == "incremental" && doc["substate"] == "caught_up";
    for name in ["cdc_a", "cdc_p", "keys"] {
        serve.wait_job(name, "caught up", MINUTE, caught_up);
    }
    assert_eq!(count(&pg, "sink_p", "public.p"), 2_000);

    // Paused: nothing applied, the slot's retained WAL said.
    let paused = serve.post("/v1/jobs/cdc_p/pause?wait=10s", None);
    assert_eq!(paused.status, 200, "{paused:?}");
    assert_eq!(paused.body["state"], "paused", "{paused:?}");
    assert_eq!(paused.body["desired_state"], "paused");
    let again = serve.post("/v1/jobs/cdc_p/pause", None);
    assert_eq!(
        again.status, 200,
        "pausing a paused job is satisfied: {again:?}"
    );
    let warnings = paused.body["warnings"].to_string();
    assert!(
        warnings.contains("retains") && warnings.contains("ferry_cdc_p"),
        "{warnings}"
    );
    pg.psql(
        "src",
        "INSERT INTO public.p SELECT g, 'paused ' || g FROM generate_series(2001, 2500) g",
    )
    .unwrap();
    pg.psql(
        "src",
        "INSERT INTO public.a SELECT g, 'live ' || g FROM generate_series(2001, 2300) g",
    )
    .unwrap();
    for i in 200..300 {
        redis_source
            .cli(&["SET", &format!("k{i}"), &format!("v{i}")])
            .unwrap();
    }
    wait_for("cdc_a to apply the new rows", MINUTE, || {
        count(&pg, "sink_a", "public.a") == 2_300
    });

    // Killed with SIGKILL while one job is paused and two run; rows written meanwhile.
    let data = serve.kill9();
    pg.psql(
        "src",
        "INSERT INTO public.a SELECT g, 'after kill ' || g FROM generate_series(2301, 2500) g",
    )
    .unwrap();
    pg.psql(
        "src",
        "INSERT INTO public.p SELECT g, 'after kill ' || g FROM generate_series(2501, 2600) g",
    )
    .unwrap();
    pg.psql(
        "src",
        "UPDATE public.a SET v = v || ' updated' WHERE id % 10 = 0",
    )
    .unwrap();
    for i in 300..400 {
        redis_source
            .cli(&["SET", &format!("k{i}"), &format!("v{i}")])
            .unwrap();
    }
    redis_source.cli(&["DEL", "k0"]).unwrap();
    let serve = Serve::start(&data, &[]);
    let doc = serve.job("cdc_p");
    assert_eq!(
        (doc["state"].as_str(), doc["desired_state"].as_str()),
        (Some("paused"), Some("paused")),
        "{doc}"
    );
    for name in ["cdc_a", "keys"] {
        serve.wait_job(name, "caught up after the restart", MINUTE, caught_up);
    }
    wait_for("cdc_a to catch up after the restart", MINUTE, || {
        rows(&pg, "src", "public.a") == rows(&pg, "sink_a", "public.a")
    });
    verify(&spec_a, dir.path(), "cdc_a");
    wait_for("the Redis target to catch up", MINUTE, || {
        redis_target.cli(&["EXISTS", "k399"]).unwrap().trim() == "1"
            && redis_target.cli(&["EXISTS", "k0"]).unwrap().trim() == "0"
    });
    verify(&spec_keys, dir.path(), "keys");
    assert_eq!(
        count(&pg, "sink_p", "public.p"),
        2_000,
        "nothing applied while paused"
    );

    // Resumed: every row once.
    let resumed = serve.post("/v1/jobs/cdc_p/resume", None);
    assert_eq!(resumed.status, 202, "{resumed:?}");
    wait_for("cdc_p to catch up", MINUTE, || {
        count(&pg, "sink_p", "public.p") == 2_600
    });
    assert_eq!(
        rows(&pg, "src", "public.p"),
        rows(&pg, "sink_p", "public.p")
    );

    // Cutover stops a caught-up job at lag 0; drop removes its slot and publication.
    let cutover = serve.post("/v1/jobs/cdc_a/cutover?wait=60s", None);
    assert_eq!(cutover.status, 200, "{cutover:?}");
    assert_eq!(cutover.body["state"], "stopped", "{cutover:?}");
    assert_eq!(
        cutover.body["incremental"]["lag_seconds"], 0.0,
        "{cutover:?}"
    );
    let resume = serve.post("/v1/jobs/cdc_a/resume", None);
    assert_eq!(
        resume.status, 409,
        "a stopped job stays stopped: {resume:?}"
    );
    let slot = |name: &str| {
        pg.psql(
            "src",
            &format!("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'ferry_{name}'"),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    let publication = |name: &str| {
        pg.psql(
            "src",
            &format!("SELECT count(*) FROM pg_publication WHERE pubname = 'ferry_{name}'"),
        )
        .unwrap()
        .trim()
        .to_string()
    };
    assert_eq!(
        (slot("cdc_a"), publication("cdc_a")),
        ("1".into(), "1".into())
    );
    let dropped = serve.delete("/v1/jobs/cdc_a");
    assert_eq!(dropped.status, 200, "{dropped:?}");
    assert_eq!(
        (slot("cdc_a"), publication("cdc_a")),
        ("0".into(), "0".into())
    );
    assert_eq!(serve.get("/v1/jobs/cdc_a").status, 404);
    // Dropping a running job stops it first.
    let dropped = serve.delete("/v1/jobs/cdc_p");
    assert_eq!(dropped.status, 200, "{dropped:?}");
    assert_eq!(slot("cdc_p"), "0");
    let stopped = serve.post("/v1/jobs/keys/stop?wait=30s", None);
    assert_eq!(stopped.body["state"], "stopped", "{stopped:?}");
}

#[test]
fn a_limit_change_shows_in_the_status_and_the_rate() {
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, &[("big", 60_000)]);
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    let job = spec(
        &pg.url("src"),
        &pg.url("dst"),
        "\"schema\", \"full\"",
        &["SELECT * FROM public.big"],
    )
    .replace(
        "batch_size = 500\n",
        "batch_size = 200\nmax_rows_per_second = 2000\n",
    );
    assert_eq!(serve.create("slow", &job).status, 201);
    let doc = serve.wait_job("slow", "rows moving", MINUTE, |d| {
        d["full"]["rows_done"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(doc["limits"]["rows_per_sec"], 2000, "{doc}");
    let bad = serve.put("/v1/jobs/slow/limits", "{\"mb_per_sec\": 0}");
    assert_eq!(
        (bad.status, code(&bad)),
        (400, "InvalidParameter"),
        "{bad:?}"
    );
    let bad = serve.put("/v1/jobs/slow/limits", "{\"rows\": 5}");
    assert_eq!(bad.status, 400, "{bad:?}");

    // Under the limit: about 2 000 rows a second (a generous bound: batches land whole).
    let before = serve.job("slow")["full"]["rows_done"].as_u64().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let after = serve.job("slow")["full"]["rows_done"].as_u64().unwrap();
    assert!(
        after - before <= 3 * 2_000 * 2,
        "{before} → {after} rows in 3 s under 2 000 rows/s"
    );
    assert!(metric(&serve, "ferry_job_limit_rows_per_sec", "slow", None) == Some(2000.0));

    // Lifted: the rest moves at once.
    let lifted = serve.put("/v1/jobs/slow/limits", "{\"rows_per_sec\": null}");
    assert_eq!(lifted.status, 200, "{lifted:?}");
    assert_eq!(lifted.body["limits"]["rows_per_sec"], Value::Null);
    let doc = serve.wait_state("slow", "completed", MINUTE);
    assert_eq!(doc["full"]["rows_done"], 60_000, "{doc}");
    assert_eq!(count(&pg, "dst", "public.big"), 60_000);
}

/// The README's curl session, run as written against a real server.
#[test]
fn the_readme_service_examples_run_as_written() {
    let script = ferry_testkit::serve::readme_example("service-example");
    let pg = PgServer::start().expect("start PostgreSQL");
    source(&pg, &[("t", 1_000)]);
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    ferry_testkit::serve::run_example(
        &serve,
        &script,
        &[("SOURCE", pg.url("src")), ("SINK", pg.url("dst"))],
    );
    assert_eq!(rows(&pg, "src", "public.t"), rows(&pg, "dst", "public.t"));
    assert_eq!(total(&serve), 0, "the example drops its job");
}

/// Ten jobs of mixed kinds in one server at once — PostgreSQL and MariaDB sources and sinks,
/// full and incremental, and a Redis — all end verify-equal.
#[test]
fn ten_jobs_run_at_once_and_end_verify_equal() {
    let pg = PgServer::start().expect("start PostgreSQL");
    let tables: Vec<(String, u64)> = (0..7).map(|i| (format!("t{i}"), 1_500 + i * 100)).collect();
    let table_refs: Vec<(&str, u64)> = tables.iter().map(|(t, n)| (t.as_str(), *n)).collect();
    source(&pg, &table_refs);
    let maria = MariaServer::start().expect("start MariaDB");
    maria
        .sql(
            "mysql",
            "CREATE DATABASE msrc; CREATE DATABASE m_full; CREATE DATABASE m_cdc;
             CREATE TABLE msrc.d (id bigint PRIMARY KEY, v varchar(40));",
        )
        .unwrap();
    let values: Vec<String> = (1..=800).map(|i| format!("({i}, 'm{i}')")).collect();
    maria
        .sql(
            "msrc",
            &format!("INSERT INTO d VALUES {}", values.join(",")),
        )
        .unwrap();
    let redis_source = RedisServer::start().expect("start Redis");
    let redis_target = RedisServer::start().expect("start Redis");
    for i in 0..300 {
        redis_source
            .cli(&["RPUSH", &format!("l{}", i % 30), &i.to_string()])
            .unwrap();
    }
    for db in ["p_full", "p_cdc0", "p_cdc1", "from_maria"] {
        pg.create_database(db).unwrap();
    }
    let full = "\"schema\", \"full\"";
    let all = "\"schema\", \"full\", \"incremental\"";
    let m_full = format!("mysql://ferry@127.0.0.1:{}/m_full", maria.port());
    let m_cdc = format!("mysql://ferry@127.0.0.1:{}/m_cdc", maria.port());
    let jobs: Vec<(String, String)> = vec![
        ("pg_full_0", spec(&pg.url("src"), &pg.url("p_full"), full, &["SELECT * FROM public.t0"])),
        ("pg_full_1", spec(&pg.url("src"), &pg.url("p_full"), full, &["SELECT * FROM public.t1"])),
        ("pg_full_2", spec(&pg.url("src"), &pg.url("p_full"), full, &["SELECT * FROM public.t2"])),
        ("pg_cdc_0", spec(&pg.url("src"), &pg.url("p_cdc0"), all, &["SELECT * FROM public.t3"])),
        ("pg_cdc_1", spec(&pg.url("src"), &pg.url("p_cdc1"), all, &["SELECT * FROM public.t4"])),
        ("to_maria_full", spec(&pg.url("src"), &m_full, full, &["INSERT INTO m_full.t5 SELECT * FROM public.t5"])),
        ("to_maria_cdc", spec(&pg.url("src"), &m_cdc, all, &["INSERT INTO m_cdc.t6 SELECT * FROM public.t6"])),
        (
            "from_maria",
            spec(&maria.url("msrc"), &pg.url("from_maria"), all, &["INSERT INTO public.d SELECT * FROM msrc.d"]),
        ),
        (
            "keys",
            format!(
                "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"full\", \"incremental\"]\n",
                redis_source.url(0),
                redis_target.url(0)
            ),
        ),
        (
            "pg_full_again",
            spec(&pg.url("src"), &pg.url("p_full"), full, &["INSERT INTO copy.t0 SELECT * FROM public.t0"]),
        ),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_string(), text))
    .collect();
    assert_eq!(jobs.len(), 10);
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    for (name, text) in &jobs {
        let created = serve.create(name, text);
        assert_eq!(created.status, 201, "{name}: {created:?}");
    }
    let settled = |doc: &Value| {
        doc["state"] == "completed"
            || (doc["phase"] == "incremental" && doc["substate"] == "caught_up")
    };
    for (name, _) in &jobs {
        serve.wait_job(name, "completed or caught up", MINUTE * 2, settled);
    }
    // Changes while the incremental ones follow.
    pg.psql("src", "INSERT INTO public.t3 SELECT g, 'new' FROM generate_series(5001, 5300) g; DELETE FROM public.t4 WHERE id % 7 = 0; UPDATE public.t6 SET v = 'changed' WHERE id < 100").unwrap();
    maria
        .sql(
            "msrc",
            "UPDATE d SET v = 'mm' WHERE id % 5 = 0; DELETE FROM d WHERE id > 790",
        )
        .unwrap();
    redis_source.cli(&["SET", "fresh", "1"]).unwrap();
    for (name, text) in &jobs {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        wait_for(&format!("{name} to verify equal"), MINUTE, || {
            Command::new(binary())
                .arg("verify")
                .arg(&path)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    }
    let list = serve.get("/v1/jobs").body;
    assert_eq!(list["total"], 10, "{list}");
    let failed: Vec<&Value> = list["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "failed")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

/// A server with an access token answers nothing but `/healthz` without it, and refuses to
/// listen beyond loopback without one.
#[test]
fn a_token_guards_the_api_and_is_required_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let serve = Serve::start(
        &dir.path().join("data"),
        &["--token-file", token.to_str().unwrap()],
    );
    assert_eq!(serve.get("/healthz").status, 200);
    let refused = serve.get("/v1/jobs");
    assert_eq!(
        (refused.status, code(&refused)),
        (401, "Unauthorized"),
        "{refused:?}"
    );
    assert_eq!(serve.get("/metrics").status, 401);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let call = |header: &str| {
        agent
            .get(format!("{}/v1/jobs", serve.url))
            .header("Authorization", header)
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(call("Bearer s3cret-token"), 200);
    assert_eq!(call("Bearer s3cret-tokeN"), 401);
    assert_eq!(call("s3cret-token"), 401);
    assert!(!serve.log().contains("s3cret"), "the log shows the token");

    let open = Command::new(binary())
        .args(["serve", "--http", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path().join("other"))
        .env_remove("FERRY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(open.status.code(), Some(2), "{}", describe(&open));
    assert!(
        String::from_utf8_lossy(&open.stderr).contains("token"),
        "{}",
        describe(&open)
    );
}
