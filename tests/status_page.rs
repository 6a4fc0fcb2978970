//! The status page of `ferry serve` in a real browser (headless Chromium through
//! ChromeDriver): the job table as rendered, a job's page with its precheck items, and the
//! pause button pausing the job.

use std::time::Duration;

use ferry_testkit::browser::Browser;
use ferry_testkit::serve::Serve;
use ferry_testkit::PgServer;

#[test]
fn the_status_page_shows_the_jobs_and_pauses_one() {
    let pg = PgServer::start().expect("start PostgreSQL");
    pg.create_database("src").unwrap();
    pg.create_database("dst").unwrap();
    pg.psql(
        "src",
        "CREATE TABLE public.t (id bigint PRIMARY KEY, v text);
         INSERT INTO public.t SELECT g, 'row ' || g FROM generate_series(1, 2000) g;",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &[]);
    let spec = format!(
        "[source]\nurl = \"{}\"\n[sink]\nurl = \"{}\"\n[migration]\ntypes = [\"schema\", \"full\", \"incremental\"]\n[[rules]]\nsql = 'SELECT * FROM public.t'\n",
        pg.url("src"),
        pg.url("dst")
    );
    assert_eq!(serve.create("shown", &spec).status, 201);
    serve.wait_job("shown", "caught up", Duration::from_secs(60), |doc| {
        doc["substate"] == "caught_up"
    });

    let browser = Browser::start();
    browser.open(&format!("{}/", serve.url));
    let row = "table#jobs tbody tr[data-job=\"shown\"]";
    browser.wait_text(
        &format!("{row} td.state"),
        "running",
        Duration::from_secs(30),
    );
    assert_eq!(
        browser.text(&format!("{row} td.phase")).as_deref(),
        Some("incremental · caught_up")
    );
    assert_eq!(
        browser.text(&format!("{row} td.rows")).as_deref(),
        Some("2000")
    );

    browser.click(&format!("{row} td.name a"));
    browser.wait_text("#job-name", "shown", Duration::from_secs(30));
    let item = "table#precheck tbody tr[data-item=\"sink.connectivity\"] td.status";
    browser.wait_text(item, "passed", Duration::from_secs(30));
    let pause = "#actions button[data-action=\"pause\"]";
    assert!(browser.enabled(pause), "pause is offered to a running job");
    assert!(!browser.enabled("#actions button[data-action=\"resume\"]"));
    browser.click(pause);
    browser.wait_text("#job-state", "paused", Duration::from_secs(30));
    assert_eq!(serve.job("shown")["state"], "paused");
    assert!(browser.enabled("#actions button[data-action=\"resume\"]"));
}
