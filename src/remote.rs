//! The commands that talk to a running `ferry serve`: `ferry jobs`, `ferry status NAME`,
//! `ferry pause|resume|terminate NAME`, over its HTTP API. The server is `--server URL`, else
//! `$FERRY_SERVER`, else `http://127.0.0.1:8470`; an access token comes from `$FERRY_TOKEN`.
//!
//! On a server, *pause* keeps the job's position and *resume* continues from it; *terminate*
//! is the service's stop, which is final. (`ferry stop job.toml`, without a server, asks a
//! foreground `ferry run` to end; the next `ferry run` resumes it — a pause in the service's
//! words.)

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

/// Where the server is, unless told.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8470";

/// A failed remote command: its message and exit code (2 refused, 3 server unreachable or
/// failing).
pub struct RemoteError {
    pub message: String,
    pub code: u8,
}

impl RemoteError {
    pub fn exit(&self) -> ExitCode {
        eprintln!("ferry: {}", self.message);
        ExitCode::from(self.code)
    }
}

/// The server to talk to.
pub fn server(flag: Option<String>) -> String {
    flag.or_else(|| std::env::var("FERRY_SERVER").ok())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string())
        .trim_end_matches('/')
        .to_string()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// `method path` on `server` (with `body` as JSON when given): the JSON answer of a 2xx, or
/// the server's error.
fn call(server: &str, method: &str, path: &str) -> Result<Value, RemoteError> {
    let url = format!("{server}{path}");
    let agent = agent();
    let token = std::env::var("FERRY_TOKEN").ok();
    let authorization = token.map(|t| format!("Bearer {t}"));
    let sent = match method {
        "GET" => {
            let mut request = agent.get(&url);
            if let Some(a) = &authorization {
                request = request.header("Authorization", a);
            }
            request.call()
        }
        _ => {
            let mut request = agent.post(&url);
            if let Some(a) = &authorization {
                request = request.header("Authorization", a);
            }
            request.send_empty()
        }
    };
    let mut response = sent.map_err(|e| RemoteError {
        message: format!("cannot reach the ferry server at {server} ({e}); start it with `ferry serve --data-dir DIR`, or name it with --server URL"),
        code: 3,
    })?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if (200..300).contains(&status) {
        return Ok(value);
    }
    let message = value["error"]["message"].as_str().map_or_else(
        || format!("the server answered {status}: {text}"),
        str::to_string,
    );
    Err(RemoteError {
        message,
        code: if status < 500 { 2 } else { 3 },
    })
}

fn or_dash(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// `ferry jobs`: the server's jobs, one line each.
pub fn jobs(server: &str) -> Result<(), RemoteError> {
    let list = call(server, "GET", "/v1/jobs?limit=1000")?;
    println!(
        "{:<24} {:<16} {:<24} {:>7} {:>12} {:>10} {:>8}",
        "NAME", "STATE", "PHASE", "FULL %", "ROWS", "ROWS/S", "LAG S"
    );
    for job in list["jobs"].as_array().into_iter().flatten() {
        let phase = match (&job["phase"], &job["substate"]) {
            (Value::String(p), Value::String(s)) => format!("{p} ({s})"),
            (p, _) => or_dash(p),
        };
        println!(
            "{:<24} {:<16} {:<24} {:>7} {:>12} {:>10} {:>8}",
            or_dash(&job["name"]),
            or_dash(&job["state"]),
            phase,
            or_dash(&job["full_percent"]),
            or_dash(&job["rows_done"]),
            or_dash(&job["rows_per_sec"]),
            or_dash(&job["lag_seconds"]),
        );
    }
    println!("{} jobs", list["total"]);
    Ok(())
}

/// `ferry status NAME`: the job's status document (as JSON with `--json`).
pub fn status(server: &str, name: &str, json: bool) -> Result<(), RemoteError> {
    let doc = call(server, "GET", &format!("/v1/jobs/{name}"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(());
    }
    describe(&doc);
    Ok(())
}

fn describe(doc: &Value) {
    println!("job {} (id {})", or_dash(&doc["name"]), doc["id"]);
    let mut state = or_dash(&doc["state"]);
    if let Value::String(phase) = &doc["phase"] {
        state.push_str(&format!(", phase {phase}"));
    }
    if let Value::String(substate) = &doc["substate"] {
        state.push_str(&format!(" ({substate})"));
    }
    println!(
        "  state    {state}; wants {}",
        or_dash(&doc["desired_state"])
    );
    println!(
        "  source   {} {}",
        or_dash(&doc["source"]["engine"]),
        or_dash(&doc["source"]["url"])
    );
    println!(
        "  sink     {} {}",
        or_dash(&doc["sink"]["engine"]),
        or_dash(&doc["sink"]["url"])
    );
    if doc["full"].is_object() {
        let full = &doc["full"];
        println!(
            "  full     {} {}% — {} of {} rows, {} rows/s",
            or_dash(&full["status"]),
            or_dash(&full["percent"]),
            or_dash(&full["rows_done"]),
            or_dash(&full["rows_total_estimate"]),
            or_dash(&full["rows_per_sec"])
        );
    }
    if doc["incremental"].is_object() {
        let stream = &doc["incremental"];
        println!(
            "  changes  {} — {} applied, lag {} s / {} bytes, at {}",
            or_dash(&stream["status"]),
            or_dash(&stream["rows_applied"]),
            or_dash(&stream["lag_seconds"]),
            or_dash(&stream["lag_bytes"]),
            or_dash(&stream["checkpoint"])
        );
    }
    for item in doc["precheck"]["items"].as_array().into_iter().flatten() {
        if item["status"] == "failed" || item["status"] == "warning" {
            println!(
                "  precheck {} {}: {}\n           fix: {}",
                or_dash(&item["name"]),
                or_dash(&item["status"]),
                or_dash(&item["message"]),
                or_dash(&item["fix"])
            );
        }
    }
    for warning in doc["warnings"].as_array().into_iter().flatten() {
        println!("  warning  {}", or_dash(warning));
    }
    if doc["error"].is_object() {
        println!("  error    {}", or_dash(&doc["error"]["message"]));
    }
    let allowed: Vec<String> = doc["allowed_actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(or_dash)
        .collect();
    println!("  can      {}", allowed.join(", "));
}

/// `ferry pause|resume|terminate NAME`: the action, waited for up to 30 s.
pub fn act(server: &str, name: &str, action: &str) -> Result<(), RemoteError> {
    let doc = call(
        server,
        "POST",
        &format!("/v1/jobs/{name}/{action}?wait=30s"),
    )?;
    println!("job {name}: {}", or_dash(&doc["state"]));
    Ok(())
}
