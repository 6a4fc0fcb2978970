//! A headless Chromium driven through ChromeDriver (Debian's `chromium` and
//! `chromium-driver`), for tests of pages ferry serves: the W3C WebDriver commands a test
//! needs (open a page, find an element, read its text and attributes, click), spoken over the
//! HTTP client the harness already has rather than a second async HTTP stack from a WebDriver
//! crate. The driver and the browser are stopped when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::free_port;

/// The key under which WebDriver returns an element's id.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium session in a new profile.
    pub fn start() -> Browser {
        let port = free_port().expect("a free port");
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (apt-get install -y chromium chromium-driver)");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("a profile dir");
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            agent,
            _profile: profile,
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser.command(
            "POST",
            "/session",
            Some(json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}})),
        );
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {created}"))
            .to_string();
        browser
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let sent = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut response = sent.expect("chromedriver answers");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        value["value"].clone()
    }

    fn session(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Opens `url`.
    pub fn open(&self, url: &str) {
        self.command("POST", &self.session("/url"), Some(json!({ "url": url })));
    }

    /// The element `css` selects now, if any.
    fn find(&self, css: &str) -> Option<String> {
        let found = self.command(
            "POST",
            &self.session("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        found[ELEMENT].as_str().map(str::to_string)
    }

    /// The text of the element `css` selects, if there is one.
    pub fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css)?;
        self.command(
            "GET",
            &self.session(&format!("/element/{element}/text")),
            None,
        )
        .as_str()
        .map(str::to_string)
    }

    /// Whether the element `css` selects is enabled.
    pub fn enabled(&self, css: &str) -> bool {
        self.find(css).is_some_and(|element| {
            self.command(
                "GET",
                &self.session(&format!("/element/{element}/enabled")),
                None,
            ) == Value::Bool(true)
        })
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let element = self
            .find(css)
            .unwrap_or_else(|| panic!("no element {css} to click"));
        self.command(
            "POST",
            &self.session(&format!("/element/{element}/click")),
            None,
        );
    }

    /// Waits until the text of `css` is `expected`, failing after `limit` with what it was.
    pub fn wait_text(&self, css: &str, expected: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text(css);
            if text.as_deref() == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{css} did not show {expected:?} within {limit:?} (it shows {text:?})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let path = self.session("");
            self.command("DELETE", &path, None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
