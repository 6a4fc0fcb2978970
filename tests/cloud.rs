//! The cloud services' own APIs on `ferry serve`, driven with `curl` as users' scripts drive
//! the services today: a DTS migration job created, configured with a `MigrationObject` that
//! renames and filters, polled to `Finished`; an RDS import of two databases between two
//! MariaDB servers named by instance id; a DCS online migration of a live Redis, stopped and
//! deleted. Every bad parameter gets the service's error shape and changes nothing; the jobs
//! are the same jobs the native API and SQL see.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferry_testkit::cli::{wait_for, Writers};
use ferry_testkit::serve::Serve;
use ferry_testkit::{MariaServer, PgServer, RedisServer};
use serde_json::Value;

const MINUTE: Duration = Duration::from_secs(60);

/// `curl` with `args` against `serve`'s `path`: the HTTP status and the JSON body.
fn curl(serve: &Serve, path: &str, args: &[&str]) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("{}{path}", serve.url))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').expect("a status line");
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
    (code.trim().parse().expect("a status code"), body)
}

/// A DTS/RDS action: `GET /?Action=…` with the parameters URL-encoded by curl.
fn rpc(serve: &Serve, params: &[(&str, &str)]) -> (u16, Value) {
    let mut args = vec!["-G".to_string()];
    for (name, value) in params {
        args.push("--data-urlencode".into());
        args.push(format!("{name}={value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(serve, "/", &args)
}

fn config(dir: &Path, endpoints: &[(&str, String)]) -> String {
    let mut text = String::new();
    for (id, url) in endpoints {
        text.push_str(&format!("[endpoints.{id}]\nurl = \"{url}\"\n"));
    }
    let path = dir.join("serve.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn a_dts_job_renames_filters_and_finishes() {
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_database("src").unwrap();
    pg.psql(
        "src",
        "CREATE TABLE public.t (id bigint PRIMARY KEY, v text, secret text);
         INSERT INTO public.t SELECT g, 'row ' || g, 'x' FROM generate_series(1, 10000) g;
         CREATE TABLE public.other (id int PRIMARY KEY);
         CREATE TABLE public.u (id int PRIMARY KEY, name text, pw text);
         INSERT INTO public.u SELECT g, 'u' || g, 'hunter' || g FROM generate_series(1, 50) g;",
    )
    .unwrap();
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &["--pg", "127.0.0.1:0"]);

    let (code, created) = rpc(
        &serve,
        &[
            ("Action", "CreateMigrationJob"),
            ("MigrationJobClass", "small"),
            ("Region", "local"),
            ("ClientToken", "tok-1"),
        ],
    );
    assert_eq!(
        (code, &created["Success"]),
        (200, &Value::Bool(true)),
        "{created}"
    );
    let id = created["MigrationJobId"]
        .as_str()
        .expect("an id")
        .to_string();
    assert!(
        created["RequestId"].as_str().is_some_and(|r| r.len() == 36),
        "{created}"
    );
    // The same client token: the same job.
    let (_, again) = rpc(
        &serve,
        &[
            ("Action", "CreateMigrationJob"),
            ("MigrationJobClass", "small"),
            ("Region", "local"),
            ("ClientToken", "tok-1"),
        ],
    );
    assert_eq!(again["MigrationJobId"], id.as_str());
    // Not configured: it cannot start.
    let (code, refused) = rpc(
        &serve,
        &[("Action", "StartMigrationJob"), ("MigrationJobId", &id)],
    );
    assert_eq!(
        (code, &refused["ErrCode"]),
        (409, &Value::from("InvalidJobState")),
        "{refused}"
    );

    let object = r#"[{"DBName":"src","SchemaName":"public","NewSchemaName":"sales","TableIncludes":[{"TableName":"t","NewTableName":"big_t","FilterCondition":"id <= 4000","ColumnIncludes":[{"ColumnName":"id"},{"ColumnName":"v","NewColumnName":"label"}]},{"TableName":"u","ColumnExcludes":[{"ColumnName":"pw"}]}]},{"DBName":"src","SchemaName":"public","NewSchemaName":"copy","TableExcludes":[{"TableName":"t"},{"TableName":"u"}]}]"#;
    let port = pg.port().to_string();
    let configure = |object: &str, extra: &[(&'static str, &'static str)]| -> (u16, Value) {
        let mut params = vec![
            ("Action", "ConfigureMigrationJob"),
            ("MigrationJobId", id.as_str()),
            ("MigrationJobName", "PG to PG, filtered"),
            ("SourceEndpoint.InstanceType", "LocalInstance"),
            ("SourceEndpoint.EngineName", "PostgreSQL"),
            ("SourceEndpoint.IP", "127.0.0.1"),
            ("SourceEndpoint.Port", port.as_str()),
            ("SourceEndpoint.DatabaseName", "src"),
            ("SourceEndpoint.UserName", "ferry"),
            ("SourceEndpoint.Password", "any:pass/word"),
            ("DestinationEndpoint.InstanceType", "LocalInstance"),
            ("DestinationEndpoint.EngineName", "PostgreSQL"),
            ("DestinationEndpoint.IP", "127.0.0.1"),
            ("DestinationEndpoint.Port", port.as_str()),
            ("DestinationEndpoint.DataBaseName", "dst"),
            ("DestinationEndpoint.UserName", "ferry"),
            ("MigrationMode.StructureIntialization", "true"),
            ("MigrationMode.DataIntialization", "true"),
            ("MigrationMode.DataSynchronization", "false"),
            ("MigrationObject", object),
        ];
        params.extend_from_slice(extra);
        rpc(&serve, &params)
    };

    // Bad configurations: the service's error shape, and the job stays as it was.
    let bad_filter = object.replace("id <= 4000", "id <= ");
    for (what, object, extra, code, err) in [
        (
            "a filter that does not parse",
            bad_filter.as_str(),
            &[][..],
            400,
            "InvalidParameter",
        ),
        (
            "an object that is not JSON",
            "[{",
            &[][..],
            400,
            "InvalidParameter",
        ),
        (
            "an unknown table field",
            r#"[{"DBName":"src","TableIncludes":[{"Table":"t"}]}]"#,
            &[][..],
            400,
            "InvalidParameter",
        ),
        (
            "a wrong Boolean",
            object,
            &[("MigrationMode.DataSynchronization", "yes")][..],
            400,
            "InvalidParameter",
        ),
        (
            "an engine ferry does not move",
            object,
            &[("SourceEndpoint.EngineName", "Oracle")][..],
            400,
            "InvalidParameter",
        ),
        (
            "a start time",
            object,
            &[("Checkpoint", "1700000000")][..],
            400,
            "InvalidParameter",
        ),
        (
            "a host that rewrites the URL",
            object,
            &[("SourceEndpoint.IP", "127.0.0.1:1/other?x=")][..],
            400,
            "InvalidParameter",
        ),
    ] {
        let (got, body) = configure(object, extra);
        assert_eq!(
            (got, body["ErrCode"].as_str()),
            (code, Some(err)),
            "{what}: {body}"
        );
        assert_eq!(body["Success"], false, "{what}: {body}");
        assert!(
            body["ErrMessage"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    let (code, body) = rpc(
        &serve,
        &[("Action", "ConfigureMigrationJob"), ("MigrationJobId", &id)],
    );
    assert_eq!(
        (code, body["ErrCode"].as_str()),
        (400, Some("MissingParameter")),
        "{body}"
    );
    let (code, body) = rpc(
        &serve,
        &[
            ("Action", "ConfigureMigrationJob"),
            ("MigrationJobId", "999"),
        ],
    );
    assert_eq!(
        (code, body["ErrCode"].as_str()),
        (404, Some("JobNotFound")),
        "{body}"
    );
    let (code, body) = rpc(&serve, &[("Action", "DescribeMigrationJobz")]);
    assert_eq!(
        (code, body["ErrCode"].as_str()),
        (400, Some("InvalidAction.NotFound")),
        "{body}"
    );
    let (_, status) = rpc(
        &serve,
        &[
            ("Action", "DescribeMigrationJobStatus"),
            ("MigrationJobId", &id),
        ],
    );
    assert_eq!(status["MigrationJobStatus"], "NotStarted", "{status}");
    assert!(
        pg.psql(
            "dst",
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'"
        )
        .unwrap()
        .trim()
            == "0"
    );

    // Limits as DTS sets them (bytes a second become megabytes), kept by the configuration.
    let (code, limited) = rpc(
        &serve,
        &[
            ("Action", "ModifyDynamicConfig"),
            ("DtsJobId", &id),
            ("JobCode", "03"),
            ("EnableLimit", "true"),
            (
                "ConfigList",
                r#"{"dts.datamove.source.rps.max": 50000, "dts.datamove.source.bps.max": 10485760}"#,
            ),
        ],
    );
    assert_eq!(
        (code, &limited["Success"]),
        (200, &Value::Bool(true)),
        "{limited}"
    );
    let native = serve.get(&format!("/v1/jobs/dts_{id}")).body;
    assert_eq!(native["limits"]["rows_per_sec"], 50000, "{native}");
    assert_eq!(native["limits"]["mb_per_sec"], 10.48576, "{native}");
    let (code, refused) = rpc(
        &serve,
        &[
            ("Action", "ModifyDynamicConfig"),
            ("DtsJobId", &id),
            ("ConfigList", r#"{"dts.datamove.source.rps.max": 0}"#),
        ],
    );
    assert_eq!(
        (code, refused["ErrCode"].as_str()),
        (400, Some("InvalidParameter")),
        "{refused}"
    );

    // A web page the operator has open cannot drive this tokenless server.
    for header in [
        "Origin: http://evil.example",
        "Sec-Fetch-Site: cross-site",
        "Host: evil.example",
    ] {
        let (code, body) = curl(
            &serve,
            &format!("/?Action=DeleteMigrationJob&MigrationJobId={id}"),
            &["-H", header],
        );
        assert_eq!(code, 403, "{header}: {body}");
    }
    // A draft never configured is deleted like any job.
    let (_, other) = rpc(
        &serve,
        &[
            ("Action", "CreateMigrationJob"),
            ("MigrationJobClass", "large"),
            ("Region", "local"),
        ],
    );
    let other = other["MigrationJobId"].as_str().unwrap().to_string();
    assert_ne!(other, id);
    let (code, deleted) = rpc(
        &serve,
        &[("Action", "DeleteMigrationJob"), ("MigrationJobId", &other)],
    );
    assert_eq!(code, 200, "{deleted}");

    // Configured as it should be: it starts by itself and finishes.
    let (code, body) = configure(object, &[]);
    assert_eq!(
        (code, &body["Success"]),
        (200, &Value::Bool(true)),
        "{body}"
    );
    let mut status = Value::Null;
    wait_for("the DTS job to finish", MINUTE, || {
        status = rpc(
            &serve,
            &[
                ("Action", "DescribeMigrationJobStatus"),
                ("MigrationJobId", &id),
            ],
        )
        .1;
        status["MigrationJobStatus"] == "Finished"
    });
    assert_eq!(
        status["DataInitializationStatus"]["Status"], "Finished",
        "{status}"
    );
    assert_eq!(
        status["DataInitializationStatus"]["Percent"], "100",
        "{status}"
    );
    assert_eq!(
        status["DataInitializationStatus"]["Progress"], "4050",
        "{status}"
    );
    assert_eq!(
        status["StructureInitializationStatus"]["Status"], "Finished",
        "{status}"
    );
    assert_eq!(status["MigrationJobName"], "PG to PG, filtered");
    assert_eq!(status["MigrationMode"]["dataSynchronization"], false);
    assert_eq!(status["SourceEndpoint"]["EngineName"], "PostgreSQL");
    assert_eq!(status["SourceEndpoint"]["Port"], port.as_str());
    assert!(
        !status.to_string().contains("pass/word"),
        "the password is shown: {status}"
    );
    let items = status["PrecheckStatus"]["Detail"]["CheckItem"]
        .as_array()
        .unwrap();
    assert!(
        items
            .iter()
            .any(|i| i["ItemName"] == "CHECK_CONN_SRC" && i["CheckStatus"] == "Success"),
        "{status}"
    );
    assert_eq!(
        pg.psql(
            "dst",
            "SELECT count(*), min(id), max(id), min(label) FROM sales.big_t"
        )
        .unwrap()
        .trim(),
        "4000|1|4000|row 1"
    );
    assert_eq!(
        pg.psql("dst", "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'big_t'").unwrap().trim(),
        "id,label"
    );

    assert_eq!(
        pg.psql(
            "dst",
            "SELECT count(*), string_agg(DISTINCT left(name, 1), '') FROM sales.u"
        )
        .unwrap()
        .trim(),
        "50|u"
    );
    assert_eq!(
        pg.psql("dst", "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns WHERE table_name = 'u'").unwrap().trim(),
        "id,name",
        "ColumnExcludes left pw out"
    );
    assert_eq!(
        pg.psql(
            "dst",
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'copy'"
        )
        .unwrap()
        .trim(),
        "other",
        "TableExcludes left t and u out"
    );

    // The same job through the other views.
    let (_, jobs) = rpc(
        &serve,
        &[("Action", "DescribeMigrationJobs"), ("PageSize", "10")],
    );
    let listed = jobs["MigrationJobs"]["MigrationJob"].as_array().unwrap();
    assert!(
        listed.iter().any(|j| j["MigrationJobID"] == id.as_str()
            && j["DataInitialization"]["status"] == "Finished"),
        "{jobs}"
    );
    assert_eq!(jobs["TotalRecordCount"], 1);
    let (code, _) = rpc(
        &serve,
        &[("Action", "DescribeMigrationJobs"), ("PageSize", "15")],
    );
    assert_eq!(code, 400);
    let sql = serve.psql(
        &format!("SELECT state, display_name FROM ferry.jobs WHERE id = {id}"),
        &[],
    );
    assert_eq!(
        String::from_utf8_lossy(&sql.stdout).trim(),
        "completed|PG to PG, filtered"
    );
    let (_, detail) = rpc(
        &serve,
        &[
            ("Action", "DescribeMigrationJobDetail"),
            ("MigrationJobId", &id),
        ],
    );
    let details = detail["DataInitializationDetailList"]["DataInitializationDetail"].to_string();
    assert!(
        details.contains("\"FinishRowNum\":4000") && details.contains("\"FinishRowNum\":50"),
        "{detail}"
    );

    // Limits as DTS sets them, on a job that can take them: a second, incremental one.
    let (_, limited) = rpc(
        &serve,
        &[
            ("Action", "ModifyDynamicConfig"),
            ("DtsJobId", &id),
            ("JobCode", "03"),
            ("ConfigList", r#"{"dts.datamove.source.rps.max": 5000}"#),
        ],
    );
    assert_eq!(
        limited["ErrCode"], "InvalidJobState",
        "a completed job takes no limits: {limited}"
    );

    let (code, deleted) = rpc(
        &serve,
        &[("Action", "DeleteMigrationJob"), ("MigrationJobId", &id)],
    );
    assert_eq!(
        (code, &deleted["Success"]),
        (200, &Value::Bool(true)),
        "{deleted}"
    );
    let (code, gone) = rpc(
        &serve,
        &[
            ("Action", "DescribeMigrationJobStatus"),
            ("MigrationJobId", &id),
        ],
    );
    assert_eq!(
        (code, &gone["Success"], gone["ErrCode"].as_str()),
        (404, &Value::Bool(false), Some("JobNotFound")),
        "{gone}"
    );
}

#[test]
fn rds_imports_two_databases_between_instances_named_by_id() {
    let source = MariaServer::start().expect("start MariaDB");
    let target = MariaServer::start().expect("start MariaDB");
    for (db, rows) in [("shop", 300), ("crm", 120)] {
        source.create_database(db).unwrap();
        source
            .sql(db, &format!("CREATE TABLE items (id int PRIMARY KEY, name varchar(20)); INSERT INTO items SELECT seq, CONCAT('n', seq) FROM seq_1_to_{rows}"))
            .unwrap();
        target.create_database(db).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let url = |server: &MariaServer| server.url("").trim_end_matches('/').to_string();
    let cfg = config(
        dir.path(),
        &[("rm-source", url(&source)), ("rm-target", url(&target))],
    );
    let serve = Serve::start(&dir.path().join("data"), &["--config", &cfg]);

    for (what, params, code, err) in [
        (
            "the same instance",
            vec![
                ("DBInstanceId", "rm-target"),
                ("SourceDBInstanceId", "rm-target"),
                ("DBInfo", r#"{"DBNames":["shop"]}"#),
            ],
            400,
            "InvalidParameter",
        ),
        (
            "an unknown instance",
            vec![
                ("DBInstanceId", "rm-nope"),
                ("SourceDBInstanceId", "rm-source"),
                ("DBInfo", r#"{"DBNames":["shop"]}"#),
            ],
            400,
            "InvalidParameter",
        ),
        (
            "no DBInfo",
            vec![
                ("DBInstanceId", "rm-target"),
                ("SourceDBInstanceId", "rm-source"),
            ],
            400,
            "MissingParameter",
        ),
        (
            "a DBInfo of numbers",
            vec![
                ("DBInstanceId", "rm-target"),
                ("SourceDBInstanceId", "rm-source"),
                ("DBInfo", r#"{"DBNames":[1]}"#),
            ],
            400,
            "InvalidParameter",
        ),
    ] {
        let mut all = vec![("Action", "ImportDatabaseBetweenInstances")];
        all.extend(params);
        let (got, body) = rpc(&serve, &all);
        assert_eq!(
            (got, body["ErrCode"].as_str()),
            (code, Some(err)),
            "{what}: {body}"
        );
    }
    assert_eq!(
        serve.get("/v1/jobs").body["total"],
        0,
        "a refused import left a job"
    );

    let (code, body) = rpc(
        &serve,
        &[
            ("Action", "ImportDatabaseBetweenInstances"),
            ("DBInstanceId", "rm-target"),
            ("SourceDBInstanceId", "rm-source"),
            ("DBInfo", r#"{"DBNames":["shop","crm"]}"#),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let import = body["ImportId"].as_u64().expect("ImportId is a number");
    wait_for("the import to finish", MINUTE, || {
        rpc(
            &serve,
            &[
                ("Action", "DescribeMigrationJobStatus"),
                ("MigrationJobId", &import.to_string()),
            ],
        )
        .1["MigrationJobStatus"]
            == "Finished"
    });
    assert_eq!(
        target
            .sql("shop", "SELECT count(*), max(name) FROM items")
            .unwrap()
            .trim(),
        "300\tn99"
    );
    assert_eq!(
        target
            .sql("crm", "SELECT count(*) FROM items")
            .unwrap()
            .trim(),
        "120"
    );
    let (code, body) = rpc(
        &serve,
        &[
            ("Action", "CancelImport"),
            ("DBInstanceId", "rm-other"),
            ("ImportId", &import.to_string()),
        ],
    );
    assert_eq!(
        (code, body["ErrCode"].as_str()),
        (404, Some("JobNotFound")),
        "{body}"
    );
    let (code, body) = rpc(
        &serve,
        &[
            ("Action", "CancelImport"),
            ("DBInstanceId", "rm-target"),
            ("ImportId", "x"),
        ],
    );
    assert_eq!(
        (code, body["ErrCode"].as_str()),
        (400, Some("InvalidParameter")),
        "{body}"
    );
}

#[test]
fn dcs_moves_a_live_redis_and_stops_and_deletes_the_task() {
    let source = RedisServer::start().expect("start Redis");
    let target = RedisServer::start().expect("start Redis");
    source
        .commands(0, "SET before 1\nRPUSH list a b c\nHSET h f v\n")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[(
            "cf4a05df-1c38-47c5-bb5a-0a7b3673b3bd",
            format!("redis://127.0.0.1:{}", target.port()),
        )],
    );
    let serve = Serve::start(&dir.path().join("data"), &["--config", &cfg]);
    let json = |body: &str| {
        vec!["-H", "Content-Type: application/json", "-d", body]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let send = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let mut args = vec!["-X".to_string(), method.to_string()];
        args.extend(json(body));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&serve, path, &args)
    };

    let (code, created) = send(
        "POST",
        "/v2/p1/migration/instance",
        r#"{"name":"r1","vpc_id":"-","subnet_id":"-","security_group_id":"-"}"#,
    );
    assert_eq!(code, 200, "{created}");
    let id = created["instance_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let (code, missing) = send("POST", "/v2/p1/migration/instance", r#"{"name":"r2"}"#);
    assert_eq!(
        (code, missing["error_code"].as_str()),
        (400, Some("DCS.4003")),
        "{missing}"
    );

    // The seed's body, with this machine's servers.
    let body = format!(
        r#"{{"migration_method":"incremental_migration","bandwidth_limit_mb":123,"resume_mode":"auto",
            "source_instance":{{"id":null,"addrs":"127.0.0.1:{}","password":null}},
            "target_instance":{{"id":"cf4a05df-1c38-47c5-bb5a-0a7b3673b3bd","addrs":null,"password":null}}}}"#,
        source.port()
    );
    for (what, bad, code) in [
        (
            "a bandwidth over 10240",
            body.replace("123", "\"10241\""),
            400,
        ),
        ("a bandwidth of 0", body.replace("123", "0"), 400),
        (
            "an unknown method",
            body.replace("incremental_migration", "all"),
            400,
        ),
        (
            "no resume mode",
            body.replace(r#""resume_mode":"auto","#, ""),
            400,
        ),
        (
            "an unknown target id",
            body.replace("cf4a05df", "00000000"),
            400,
        ),
        ("not JSON", "{".to_string(), 400),
    ] {
        let (got, answer) = send("POST", &format!("/v2/p1/migration/{id}/task"), &bad);
        assert_eq!(got, code, "{what}: {answer}");
        assert!(
            answer["error_code"].is_string() && answer["error_msg"].is_string(),
            "{what}: {answer}"
        );
        assert!(answer.get("error_ext_msg").is_some(), "{what}: {answer}");
    }
    let (_, shown) = send("GET", &format!("/v2/p1/migration-task/{id}"), "");
    assert_eq!(
        shown["status"], "RUNNING",
        "refusals changed the task: {shown}"
    );
    let (code, unknown) = send("POST", "/v2/p1/migration/9f0a/task", &body);
    assert_eq!(
        (code, unknown["error_code"].as_str()),
        (404, Some("DCS.4133")),
        "{unknown}"
    );

    // Configured with writes running: full copy, then the stream.
    let port = source.port();
    let writers = Writers::start(move |stop, count| {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let done = Command::new("redis-cli")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "SET",
                    &format!("w:{n}"),
                    &n.to_string(),
                ])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if done {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let (code, configured) = send("POST", &format!("/v2/p1/migration/{id}/task"), &body);
    assert_eq!(code, 200, "{configured}");
    assert_eq!(configured["id"], id.as_str());
    assert!(configured["status"].is_string(), "{configured}");
    wait_for("the task to stream", MINUTE, || {
        send("GET", &format!("/v2/p1/migration-task/{id}"), "").1["status"] == "INCRMIGEATING"
    });
    wait_for("some writes while streaming", MINUTE, || {
        writers.transactions() > 20
    });
    let written = writers.finish();
    source.cli(&["SET", "k1", "v1"]).unwrap();
    wait_for("the stats to show no offset", MINUTE, || {
        let stats = send("GET", &format!("/v2/p1/migration-task/{id}/stats"), "").1;
        stats["offset"] == "0" && target.cli(&["GET", "k1"]).unwrap().trim() == "v1"
    });
    let stats = send("GET", &format!("/v2/p1/migration-task/{id}/stats"), "").1;
    assert_eq!(stats["is_migrating"], true, "{stats}");
    // The target holds the source's keys, and ferry's own bookkeeping key.
    let own = target
        .cli(&["--scan", "--pattern", "__ferry__:*"])
        .unwrap()
        .lines()
        .count();
    let size = |server: &RedisServer| -> usize {
        server.cli(&["DBSIZE"]).unwrap().trim().parse().unwrap()
    };
    assert_eq!(size(&source), size(&target) - own);
    assert_eq!(
        target
            .cli(&["GET", &format!("w:{written}")])
            .unwrap()
            .trim(),
        written.to_string()
    );
    assert_eq!(
        target.cli(&["LRANGE", "list", "0", "-1"]).unwrap().trim(),
        "a\nb\nc"
    );
    let (_, listed) = send("GET", "/v2/p1/migration-tasks?limit=5", "");
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["migration_tasks"][0]["task_id"], id.as_str());
    assert_eq!(
        listed["migration_tasks"][0]["migration_method"],
        "incremental_migration"
    );
    assert_eq!(listed["migration_tasks"][0]["bandwidth_limit_mb"], "123");
    let (code, _) = send("GET", "/v2/p1/migration-tasks?limit=0", "");
    assert_eq!(code, 400);
    // The native API sees the same job.
    let native = serve.get("/v1/jobs").body;
    assert_eq!(native["jobs"][0]["state"], "running", "{native}");

    let (code, stopped) = send("POST", &format!("/v2/p1/migration-task/{id}/stop"), "");
    assert_eq!(code, 200, "{stopped}");
    wait_for("the task to be TERMINATED", MINUTE, || {
        send("GET", &format!("/v2/p1/migration-task/{id}"), "").1["status"] == "TERMINATED"
    });
    let (code, deleted) = send(
        "DELETE",
        "/v2/p1/migration-tasks/delete",
        &format!(r#"{{"task_id_list":["{id}","no-such-task"]}}"#),
    );
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["task_id_list"], serde_json::json!([id]));
    let (_, listed) = send("GET", "/v2/p1/migration-tasks", "");
    assert_eq!(listed["count"], 0, "{listed}");
    let (code, gone) = send("GET", &format!("/v2/p1/migration-task/{id}"), "");
    assert_eq!(
        (code, gone["error_code"].as_str()),
        (404, Some("DCS.4133")),
        "{gone}"
    );
}

#[test]
fn rds_cloud_migration_prechecks_streams_and_switches_over() {
    let source = PgServer::start().expect("start PostgreSQL");
    let target = PgServer::start().expect("start PostgreSQL");
    source.create_database("app").unwrap();
    source
        .psql(
            "app",
            "CREATE TABLE public.acct (id int PRIMARY KEY, balance int);
             INSERT INTO public.acct SELECT g, g * 10 FROM generate_series(1, 500) g;",
        )
        .unwrap();
    target.create_database("app").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        &[
            ("pgm-target", target.url("app")),
            ("rm-mysql", "mysql://u@127.0.0.1:1".to_string()),
        ],
    );
    let serve = Serve::start(&dir.path().join("data"), &["--config", &cfg]);
    let port = source.port().to_string();
    let task = |action: &str, port: &str, instance: &str| -> (u16, Value) {
        rpc(
            &serve,
            &[
                ("Action", action),
                ("DBInstanceName", instance),
                ("SourceIpAddress", "127.0.0.1"),
                ("SourcePort", port),
                ("SourceAccount", "ferry"),
                ("SourcePassword", "p@ss"),
                ("SourceCategory", "ecsOnVpc"),
                ("TaskName", "move-app"),
            ],
        )
    };

    // The precheck task: its report lists each check; a wrong port fails connectivity.
    let (code, precheck) = task("CreateCloudMigrationPrecheckTask", &port, "pgm-target");
    assert_eq!(code, 200, "{precheck}");
    let id = precheck["TaskId"]
        .as_u64()
        .expect("TaskId is a number")
        .to_string();
    assert_eq!(precheck["TaskName"], "move-app");
    let (_, bad) = task("CreateCloudMigrationPrecheckTask", "1", "pgm-target");
    let bad_id = bad["TaskId"].as_u64().unwrap().to_string();
    let report = |id: &str| -> String {
        let (_, result) = rpc(
            &serve,
            &[
                ("Action", "DescribeCloudMigrationPrecheckResult"),
                ("DBInstanceName", "pgm-target"),
                ("TaskId", id),
                ("PageNumber", "1"),
                ("PageSize", "10"),
            ],
        );
        result["Items"][0]["Detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_for("the precheck report", MINUTE, || {
        report(&id).contains("Check sink.connectivity: success")
    });
    assert!(
        report(&id).contains("[Check source.connectivity]\nCheck source.connectivity: success"),
        "{}",
        report(&id)
    );
    wait_for("the failing precheck's report", MINUTE, || {
        report(&bad_id).contains("Check source.connectivity: failed(")
    });
    assert!(
        !report(&bad_id).contains("p@ss"),
        "the password is in the report"
    );
    let (code, wrong) = task("CreateCloudMigrationPrecheckTask", &port, "rm-mysql");
    assert_eq!(
        (code, wrong["Code"].as_str()),
        (403, Some("IncorrectDBInstanceType")),
        "{wrong}"
    );
    let (code, missing) = rpc(
        &serve,
        &[
            ("Action", "DescribeCloudMigrationResult"),
            ("DBInstanceName", "pgm-target"),
        ],
    );
    assert_eq!(
        (code, missing["ErrCode"].as_str()),
        (400, Some("MissingParameter")),
        "{missing}"
    );

    // The migration task: schema, full, then the stream; switched over once caught up.
    let (code, created) = task("CreateCloudMigrationTask", &port, "pgm-target");
    assert_eq!(code, 200, "{created}");
    let task_id = created["TaskId"].as_u64().unwrap().to_string();
    let result = || -> Value {
        rpc(
            &serve,
            &[
                ("Action", "DescribeCloudMigrationResult"),
                ("DBInstanceName", "pgm-target"),
                ("TaskId", &task_id),
                ("PageNumber", "1"),
                ("PageSize", "10"),
            ],
        )
        .1["Items"][0]
            .clone()
    };
    let (code, early) = rpc(
        &serve,
        &[
            ("Action", "ActivateMigrationTargetInstance"),
            ("DBInstanceName", "pgm-target"),
            ("SwitchTimeMode", "0"),
            ("ForceSwitch", "1"),
        ],
    );
    if code != 200 {
        assert_eq!(
            (code, early["ErrCode"].as_str()),
            (409, Some("InvalidJobState")),
            "{early}"
        );
    }
    wait_for("stage increment, streaming", MINUTE, || {
        let item = result();
        item["MigrateStage"] == "increment" && item["ReplicationState"] == "streaming"
    });
    let item = result();
    assert!(
        item["ReplicationInfo"]
            .as_str()
            .unwrap()
            .contains("********"),
        "{item}"
    );
    assert!(!item.to_string().contains("p@ss"), "{item}");
    source
        .psql(
            "app",
            "INSERT INTO public.acct SELECT g, g FROM generate_series(501, 600) g",
        )
        .unwrap();
    wait_for("the change to arrive", MINUTE, || {
        target
            .psql("app", "SELECT count(*) FROM public.acct")
            .unwrap()
            .trim()
            == "600"
    });
    wait_for("stage increment again", MINUTE, || {
        result()["MigrateStage"] == "increment"
    });
    let (code, switched) = rpc(
        &serve,
        &[
            ("Action", "ActivateMigrationTargetInstance"),
            ("DBInstanceName", "pgm-target"),
            ("SwitchTimeMode", "0"),
            ("ForceSwitch", "1"),
        ],
    );
    assert_eq!(code, 200, "{switched}");
    assert_eq!(switched["TaskId"].as_u64().unwrap().to_string(), task_id);
    wait_for("stage success", MINUTE, || {
        result()["MigrateStage"] == "success"
    });
    assert_eq!(result()["ReplicationState"], "finish");
    let sums = "SELECT count(*), sum(balance) FROM public.acct";
    assert_eq!(
        target.psql("app", sums).unwrap(),
        source.psql("app", sums).unwrap()
    );
    assert_eq!(target.psql("app", sums).unwrap().trim(), "600|1307550");
}

/// The README's DTS session, run as written.
#[test]
fn the_readme_dts_session_runs_as_written() {
    let script = ferry_testkit::serve::readme_example("dts-example");
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_database("src").unwrap();
    pg.psql(
        "src",
        "CREATE TABLE public.t (id bigint PRIMARY KEY, v text);
         INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
    )
    .unwrap();
    pg.create_database("dst").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    ferry_testkit::serve::run_example(&serve, &script, &[("PGPORT", pg.port().to_string())]);
    assert_eq!(
        pg.psql("dst", "SELECT count(*), min(id) FROM sales.big_t")
            .unwrap()
            .trim(),
        "500|501"
    );
    assert_eq!(
        serve.get("/v1/jobs").body["total"],
        0,
        "the session deletes its job"
    );
}

/// The README's DCS session, run as written.
#[test]
fn the_readme_dcs_session_runs_as_written() {
    let script = ferry_testkit::serve::readme_example("dcs-example");
    let source = RedisServer::start().expect("start Redis");
    let target = RedisServer::start().expect("start Redis");
    source.commands(0, "SET a 1\nSET b 2\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    ferry_testkit::serve::run_example(
        &serve,
        &script,
        &[
            ("REDIS_SOURCE", format!("127.0.0.1:{}", source.port())),
            ("REDIS_TARGET", format!("127.0.0.1:{}", target.port())),
        ],
    );
    assert_eq!(target.cli(&["GET", "b"]).unwrap().trim(), "2");
    assert_eq!(
        serve.get("/v1/jobs").body["total"],
        0,
        "the session deletes its task"
    );
}
