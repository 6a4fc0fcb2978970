//! `ferry demo`: two local PostgreSQL servers, a sample shop, an online migration with
//! filters and renames — schema, full snapshot, then the changes the shop keeps making while
//! ferry runs — and `ferry verify` to show the sink holds exactly what the rules select.

use std::future::Future;

use ferry_jobs::{ControlFiles, Error, JobFile, JobSpec, VerifyReport};
use ferry_local::PgServer;

fn external(message: impl std::fmt::Display) -> Error {
    Error::Internal(format!("demo: {message}"))
}

/// The sample shop: customers, orders with money, time and JSON, and a table left alone.
fn sample_data(orders: u64) -> String {
    let customers = (orders / 20).max(10);
    format!(
        "CREATE SCHEMA shop;
         CREATE TABLE shop.customers (
             id integer PRIMARY KEY, name text NOT NULL, email varchar(120), country char(2),
             signed_up timestamptz NOT NULL);
         INSERT INTO shop.customers
             SELECT g, 'customer ' || g, 'c' || g || '@example.com',
                    (ARRAY['DE','FR','NL','US','JP'])[1 + g % 5],
                    timestamptz '2020-01-01 00:00:00+00' + g * interval '1 hour'
             FROM generate_series(1, {customers}) g;
         CREATE TABLE shop.orders (
             id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL,
             status text NOT NULL, created_at timestamp NOT NULL, note jsonb, ref uuid);
         INSERT INTO shop.orders
             SELECT g, 1 + g % {customers}, round((g % 1000) * 1.37, 2),
                    (ARRAY['new','paid','shipped','returned'])[1 + g % 4],
                    timestamp '2024-01-01' + g * interval '1 minute',
                    CASE WHEN g % 3 = 0 THEN jsonb_build_object('gift', g % 2 = 0) END,
                    md5(g::text)::uuid
             FROM generate_series(1, {orders}) g;
         CREATE TABLE shop.audit_log (id serial PRIMARY KEY, entry text);
         -- The rules filter these tables and they have TOASTable columns: updates must carry
         -- whole rows (ferry check says so when they do not).
         ALTER TABLE shop.orders REPLICA IDENTITY FULL;
         ALTER TABLE shop.customers REPLICA IDENTITY FULL;
         ANALYZE;"
    )
}

/// Runs the demo; `run_job` runs a job file the way `ferry run` does.
pub async fn run<F, Fut>(orders: u64, run_job: F) -> Result<(), Error>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    println!("starting two local PostgreSQL servers …");
    let source = PgServer::start().map_err(external)?;
    let sink = PgServer::start().map_err(external)?;
    source.create_database("shop").map_err(external)?;
    sink.create_database("warehouse").map_err(external)?;
    println!(
        "loading the sample shop ({orders} orders) into {} …",
        source.url("shop")
    );
    source
        .psql("shop", &sample_data(orders))
        .map_err(external)?;

    let job = format!(
        r#"
[source]
url = "{source}"
[sink]
url = "{sink}"
[migration]
types = ["schema", "full", "incremental"]
batch_size = 8192
parallelism = 4
[[rules]]
sql = "INSERT INTO sales.big_orders SELECT id, customer_id, amount, status, created_at AS ordered_at, note FROM shop.orders WHERE amount > 100 AND status <> 'returned'"
[[rules]]
sql = "INSERT INTO crm.* SELECT id, name AS full_name, email, country FROM shop.customers WHERE country IN ('DE', 'FR', 'NL')"
"#,
        source = source.url("shop"),
        sink = sink.url("warehouse"),
    );
    println!("job:\n{job}");
    JobFile::parse(&job)?;
    let dir = tempfile::Builder::new()
        .prefix("ferry-demo-")
        .tempdir()
        .map_err(external)?;
    let path = dir.path().join("demo.toml");
    std::fs::write(&path, &job).map_err(external)?;
    let running = tokio::spawn(run_job(path.clone()));

    // The shop keeps working while ferry copies and follows it.
    println!("the shop takes orders, pays, ships, refunds and deletes while ferry runs …");
    let sink_has = |query: &str| {
        sink.psql("warehouse", query)
            .map(|out| out.trim() == "t")
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let mut round = 0u64;
    while !sink_has("SELECT EXISTS (SELECT 1 FROM _ferry.applied)") || round < 20 {
        if std::time::Instant::now() > deadline || running.is_finished() {
            break;
        }
        round += 1;
        let id = orders + round;
        source
            .psql(
                "shop",
                &format!(
                    "BEGIN;
                     INSERT INTO shop.orders VALUES ({id}, 1, 250.00, 'new', now(), NULL, NULL);
                     UPDATE shop.orders SET status = 'paid' WHERE id = {id};
                     UPDATE shop.orders SET amount = amount * 2 WHERE id % 97 = {m};
                     UPDATE shop.orders SET status = 'returned' WHERE id % 89 = {m};
                     DELETE FROM shop.orders WHERE id = {m} * 31 + 7;
                     UPDATE shop.customers SET country = 'DE' WHERE id = {m} + 3;
                     COMMIT",
                    m = round % 80
                ),
            )
            .map_err(external)?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A last change to wait for: once it is in the sink, everything before it is too.
    source
        .psql(
            "shop",
            "INSERT INTO shop.customers VALUES (-1, 'last', NULL, 'NL', now())",
        )
        .map_err(external)?;
    while !sink_has("SELECT EXISTS (SELECT 1 FROM crm.customers WHERE id = -1)") {
        if std::time::Instant::now() > deadline || running.is_finished() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    println!("ferry caught up; stopping it (ferry stop) …");
    ControlFiles::beside(&path, "demo").request_stop()?;
    running.await.map_err(external)??;

    let expected = source
        .psql(
            "shop",
            "SELECT (SELECT count(*) FROM shop.orders WHERE amount > 100 AND status <> 'returned'),
                    (SELECT count(*) FROM shop.customers WHERE country IN ('DE', 'FR', 'NL'))",
        )
        .map_err(external)?;
    let landed = sink
        .psql(
            "warehouse",
            "SELECT (SELECT count(*) FROM sales.big_orders), (SELECT count(*) FROM crm.customers)",
        )
        .map_err(external)?;
    println!(
        "rows the rules select on the source (orders|customers): {}",
        expected.trim()
    );
    println!(
        "rows in the sink                    (orders|customers): {}",
        landed.trim()
    );
    if expected.trim() != landed.trim() {
        return Err(external("the sink does not hold what the rules select"));
    }
    println!("ferry verify, row by row:");
    let report = ferry_jobs::open(JobSpec::read(&path)?)?.verify().await?;
    let VerifyReport::Tables(reports) = &report else {
        return Err(external("the demo's job moves tables"));
    };
    for report in reports {
        println!(
            "  {:<20} source {:>8} rows · target {:>8} rows · {}",
            report.target,
            report.source_rows,
            report.sink_rows,
            if report.is_equal() {
                "equal"
            } else {
                "DIFFERENT"
            }
        );
    }
    if !report.is_equal() {
        return Err(external("ferry verify found differences"));
    }
    println!("demo done: the sink matches; servers stopped and removed");
    Ok(())
}
