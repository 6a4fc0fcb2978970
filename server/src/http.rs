//! The HTTP API (`/v1`), metrics, health and the status page, on axum. Routes are listed
//! once in [`ROUTES`], which the OpenAPI document is checked against.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as Shared};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::lifecycle::{Action, Outcome};
use crate::service::Service;
use crate::{doc, metrics, spec};

/// The largest body taken: a job spec is a few kilobytes.
pub const MAX_BODY: usize = 1 << 20;

/// The largest body read at all: larger ones are read to the end (so that the client sees
/// the answer, not a cut connection) and refused; beyond this the connection is cut.
const READ_LIMIT: usize = 32 << 20;

/// The longest cutover wait taken (a day).
const MAX_CUTOVER_TIMEOUT: u64 = 86_400;

/// The longest `?wait=` honoured.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Every route: method and path, as the OpenAPI document lists them.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/{name}"),
    ("PATCH", "/v1/jobs/{name}"),
    ("DELETE", "/v1/jobs/{name}"),
    ("GET", "/v1/jobs/{name}/spec"),
    ("GET", "/v1/jobs/{name}/tables"),
    ("GET", "/v1/jobs/{name}/events"),
    ("GET", "/v1/jobs/{name}/precheck"),
    ("POST", "/v1/jobs/{name}/precheck"),
    ("POST", "/v1/jobs/{name}/start"),
    ("POST", "/v1/jobs/{name}/pause"),
    ("POST", "/v1/jobs/{name}/resume"),
    ("POST", "/v1/jobs/{name}/stop"),
    ("POST", "/v1/jobs/{name}/cutover"),
    ("POST", "/v1/jobs/{name}/duplicate"),
    ("PUT", "/v1/jobs/{name}/limits"),
];

/// The cloud services' routes (not in the OpenAPI document, which is ferry's own API): the
/// DTS/RDS RPC actions on `/`, the DCS REST paths under `/v2/{project_id}`.
pub const CLOUD_ROUTES: &[(&str, &str)] = &[
    ("GET", "/?Action=…"),
    ("POST", "/?Action=…"),
    ("POST", "/v2/{project_id}/migration/instance"),
    ("POST", "/v2/{project_id}/migration-task"),
    ("POST", "/v2/{project_id}/migration/{task_id}/task"),
    ("GET", "/v2/{project_id}/migration-tasks"),
    ("GET", "/v2/{project_id}/migration-task/{task_id}"),
    ("GET", "/v2/{project_id}/migration-task/{task_id}/stats"),
    ("POST", "/v2/{project_id}/migration-task/{task_id}/stop"),
    (
        "POST",
        "/v2/{project_id}/migration-task/{task_id}/sync-stop",
    ),
    ("POST", "/v2/{project_id}/migration-task/batch-stop"),
    ("POST", "/v2/{project_id}/migration-tasks/batch-restart"),
    ("DELETE", "/v2/{project_id}/migration-tasks/delete"),
];

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

const PAGE: &str = include_str!("page/index.html");

/// What the handlers share.
pub struct App {
    /// The jobs.
    pub service: Arc<Service>,
    /// The access token, when the server needs one.
    pub token: Option<String>,
    /// Instance ids the cloud APIs name, and their URLs.
    pub endpoints: crate::cloud::Endpoints,
}

type Answer = Result<Response, ApiError>;

/// The router of the whole HTTP surface.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(scrape))
        .route("/", get(root).post(rpc))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/jobs", get(list).post(create))
        .route("/v1/jobs/{name}", get(show).patch(alter).delete(remove))
        .route("/v1/jobs/{name}/spec", get(show_spec))
        .route("/v1/jobs/{name}/tables", get(tables))
        .route("/v1/jobs/{name}/events", get(events))
        .route(
            "/v1/jobs/{name}/precheck",
            get(show_precheck).post(precheck),
        )
        .route("/v1/jobs/{name}/limits", put(limits))
        .route("/v1/jobs/{name}/duplicate", post(duplicate))
        .route("/v1/jobs/{name}/{action}", post(act))
        .route("/v2/{project}/migration/instance", post(dcs_instance))
        .route("/v2/{project}/migration-task", post(dcs_create))
        .route("/v2/{project}/migration/{task}/task", post(dcs_configure))
        .route("/v2/{project}/migration-tasks", get(dcs_list))
        .route(
            "/v2/{project}/migration-task/batch-stop",
            post(dcs_batch_stop),
        )
        .route(
            "/v2/{project}/migration-tasks/batch-restart",
            post(dcs_batch_restart),
        )
        .route(
            "/v2/{project}/migration-tasks/delete",
            axum::routing::delete(dcs_delete),
        )
        .route("/v2/{project}/migration-task/{task}", get(dcs_show))
        .route("/v2/{project}/migration-task/{task}/stats", get(dcs_stats))
        .route("/v2/{project}/migration-task/{task}/{verb}", post(dcs_stop))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(READ_LIMIT))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), authorize))
        .with_state(app)
}

async fn authorize(Shared(app): Shared<Arc<App>>, request: Request, next: Next) -> Response {
    if app.token.is_none() && request.uri().path() != "/healthz" {
        if let Err(why) = same_site(request.headers()) {
            return ApiError::forbidden(why).into_response();
        }
    }
    if let Some(token) = &app.token {
        let path = request.uri().path();
        let open = path == "/healthz";
        let sent = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !open && !sent.is_some_and(|sent| same(sent.as_bytes(), token.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

/// Without a token, the server trusts whoever reaches its loopback address — so a request
/// must come from a program there, not from a web page the operator has open elsewhere
/// (which could otherwise drive jobs with `<img src=…>` or a form): the Host must be a
/// loopback name (no DNS rebinding), and a browser's `Origin` / `Sec-Fetch-Site` must say
/// the request comes from the server's own pages.
fn same_site(headers: &HeaderMap) -> Result<(), String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = text("host").unwrap_or_default();
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    if !matches!(name, "127.0.0.1" | "localhost" | "[::1]" | "") {
        return Err(format!(
            "this server has no access token, so it answers only requests addressed to 127.0.0.1 or localhost, not {host:?}: give it a token (--token-file) to serve other names"
        ));
    }
    if let Some(site) = text("sec-fetch-site") {
        if site != "same-origin" && site != "none" {
            return Err(format!(
                "a request from another site ({site}) is refused: this server has no access token"
            ));
        }
    }
    if let Some(origin) = text("origin") {
        let from = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if from != host {
            return Err(format!("a request from {origin} is refused: this server has no access token, and answers its own pages only"));
        }
    }
    Ok(())
}

/// Compares in time independent of where the two differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::no_route(uri.path())
}

async fn healthz(Shared(app): Shared<Arc<App>>) -> Json<Value> {
    Json(json!({"status": "ok", "jobs": app.service.views().len()}))
}

async fn scrape(Shared(app): Shared<Arc<App>>) -> Response {
    let text = metrics::render(&app.service.views());
    ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// `GET /`: the status page, or a DTS/RDS action when the query names one.
async fn root(Shared(app): Shared<Arc<App>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    if query.is_empty() {
        return page().await.into_response();
    }
    let params = crate::cloud::dts::Params(
        form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
    );
    crate::cloud::dts::handle(&app.service, &app.endpoints, params).await
}

/// `POST /`: a DTS/RDS action, its parameters in the query and a form body.
async fn rpc(
    Shared(app): Shared<Arc<App>>,
    uri: Uri,
    sent: Result<Bytes, BytesRejection>,
) -> Response {
    let sent = match body(sent) {
        Ok(sent) => sent,
        Err(error) => return error.into_response(),
    };
    let query = uri.query().unwrap_or_default();
    let params = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .chain(form_urlencoded::parse(&sent).into_owned())
        .collect();
    crate::cloud::dts::handle(
        &app.service,
        &app.endpoints,
        crate::cloud::dts::Params(params),
    )
    .await
}

type DcsAnswer = Result<Response, crate::cloud::dcs::DcsError>;

fn dcs_body(sent: Result<Bytes, BytesRejection>) -> Result<Bytes, crate::cloud::dcs::DcsError> {
    body(sent).map_err(Into::into)
}

async fn dcs_instance(
    Shared(app): Shared<Arc<App>>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::create_instance(&app.service, &dcs_body(sent)?)
}

async fn dcs_create(
    Shared(app): Shared<Arc<App>>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::create_task(&app.service, &app.endpoints, &dcs_body(sent)?).await
}

async fn dcs_configure(
    Shared(app): Shared<Arc<App>>,
    Path((_project, task)): Path<(String, String)>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::configure(&app.service, &app.endpoints, &task, &dcs_body(sent)?).await
}

async fn dcs_list(Shared(app): Shared<Arc<App>>, uri: Uri) -> DcsAnswer {
    let params = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    crate::cloud::dcs::list(&app.service, &params)
}

async fn dcs_show(
    Shared(app): Shared<Arc<App>>,
    Path((_project, task)): Path<(String, String)>,
) -> DcsAnswer {
    crate::cloud::dcs::show(&app.service, &task)
}

async fn dcs_stats(
    Shared(app): Shared<Arc<App>>,
    Path((_project, task)): Path<(String, String)>,
) -> DcsAnswer {
    crate::cloud::dcs::show_stats(&app.service, &task)
}

async fn dcs_stop(
    Shared(app): Shared<Arc<App>>,
    Path((_project, task, verb)): Path<(String, String, String)>,
    uri: Uri,
) -> Response {
    let answer = match verb.as_str() {
        "stop" => crate::cloud::dcs::stop(&app.service, &task, false).await,
        "sync-stop" => crate::cloud::dcs::stop(&app.service, &task, true).await,
        _ => return ApiError::no_route(uri.path()).into_response(),
    };
    answer.into_response()
}

async fn dcs_batch_stop(
    Shared(app): Shared<Arc<App>>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::batch_stop(&app.service, &dcs_body(sent)?)
}

async fn dcs_batch_restart(
    Shared(app): Shared<Arc<App>>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::batch_restart(&app.service, &dcs_body(sent)?)
}

async fn dcs_delete(
    Shared(app): Shared<Arc<App>>,
    sent: Result<Bytes, BytesRejection>,
) -> DcsAnswer {
    crate::cloud::dcs::delete(&app.service, &dcs_body(sent)?).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// The query's parameters, refusing any not in `known`.
fn params(
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = query
        .map_err(|e| ApiError::invalid("query", format!("the query string is not valid: {e}")))?;
    if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
        let known = if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        };
        return Err(ApiError::invalid(
            unknown,
            format!("unknown query parameter {unknown:?}; this route takes: {known}"),
        ));
    }
    Ok(map)
}

type QueryResult = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

fn flag(params: &HashMap<String, String>, name: &str, default: bool) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(other) => Err(ApiError::invalid(
            name,
            format!("{name} must be true or false, not {other:?}"),
        )),
    }
}

fn number(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError::invalid(
                name,
                format!("{name} must be a whole number from 0 to {max}, not {text:?}"),
            )),
        },
    }
}

fn wait(params: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = params.get("wait") else {
        return Ok(None);
    };
    let duration = humantime::parse_duration(text)
        .or_else(|_| text.parse::<u64>().map(Duration::from_secs))
        .map_err(|_| {
            ApiError::invalid(
                "wait",
                format!("wait must be a duration such as 10s or 2m, not {text:?}"),
            )
        })?;
    Ok(Some(duration.min(MAX_WAIT)))
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    match &body {
        Ok(bytes) if bytes.len() > MAX_BODY => return Err(ApiError::too_large(MAX_BODY)),
        _ => {}
    }
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY)
        } else {
            ApiError::invalid("body", format!("the body cannot be read: {e}"))
        }
    })
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
}

fn status_document(app: &App, name: &str, code: StatusCode) -> Answer {
    let view = app.service.view(name)?;
    Ok((code, Json(doc::document(&view))).into_response())
}

async fn list(Shared(app): Shared<Arc<App>>, query: QueryResult) -> Answer {
    let params = params(query, &["state", "name", "offset", "limit"])?;
    let offset = number(&params, "offset", 0, u64::MAX)? as usize;
    let limit = number(&params, "limit", 50, 1000)? as usize;
    let views = app.service.views();
    let chosen: Vec<Value> = views
        .iter()
        .filter(|v| {
            params
                .get("state")
                .is_none_or(|s| v.record.state.name() == s)
        })
        .filter(|v| {
            params
                .get("name")
                .is_none_or(|n| v.record.name.contains(n.as_str()))
        })
        .map(doc::summary)
        .collect();
    let total = chosen.len();
    let page: Vec<Value> = chosen.into_iter().skip(offset).take(limit).collect();
    Ok(
        Json(json!({"total": total, "offset": offset, "limit": limit, "jobs": page}))
            .into_response(),
    )
}

async fn create(
    Shared(app): Shared<Arc<App>>,
    query: QueryResult,
    headers: HeaderMap,
    sent: Result<Bytes, BytesRejection>,
) -> Answer {
    let params = params(query, &["name", "start", "wait"])?;
    let start = flag(&params, "start", true)?;
    let wait = wait(&params)?;
    let sent = body(sent)?;
    let text = spec::body_to_toml(&sent, content_type(&headers))?;
    let name = match params.get("name") {
        Some(name) => name.clone(),
        None => {
            let file =
                ferry_jobs::JobFile::parse(&text).map_err(|e| ApiError::from_job(&e.into()))?;
            file.name.ok_or_else(|| {
                ApiError::missing(
                    "name",
                    "name the job: POST /v1/jobs?name=<name>, or name = \"…\" in the job file",
                )
            })?
        }
    };
    app.service.create(&name, &text, start)?;
    if let Some(wait) = wait {
        app.service.settle(&name, wait).await;
    }
    status_document(&app, &name, StatusCode::CREATED)
}

async fn show(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    query: QueryResult,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    params(query, &[])?;
    status_document(&app, &name, StatusCode::OK)
}

async fn show_spec(Shared(app): Shared<Arc<App>>, Path(name): Path<String>) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let view = app.service.view(&name)?;
    let table = spec::redacted(&view.record.spec);
    let text = toml::to_string(&table).unwrap_or_default();
    Ok(Json(json!({"name": name, "spec": table, "toml": text})).into_response())
}

async fn tables(Shared(app): Shared<Arc<App>>, Path(name): Path<String>) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    Ok(Json(doc::tables(&app.service.view(&name)?)).into_response())
}

async fn events(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    query: QueryResult,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let params = params(query, &["since", "limit"])?;
    let since = number(&params, "since", 0, u64::MAX)?;
    let limit = number(&params, "limit", 100, 1000)? as usize;
    let events = app.service.events(&name, since, limit)?;
    let events: Vec<Value> = events
        .into_iter()
        .map(|e| {
            json!({"seq": e.seq, "at": doc::time(e.at), "level": e.level, "kind": e.kind,
                   "from_state": e.from_state, "to_state": e.to_state, "message": e.message})
        })
        .collect();
    Ok(Json(json!({"job": name, "events": events})).into_response())
}

async fn show_precheck(Shared(app): Shared<Arc<App>>, Path(name): Path<String>) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let view = app.service.view(&name)?;
    Ok(Json(doc::document(&view)["precheck"].clone()).into_response())
}

async fn precheck(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    query: QueryResult,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    lifecycle(app, name, "precheck", query, None).await
}

async fn act(
    Shared(app): Shared<Arc<App>>,
    Path((name, action)): Path<(String, String)>,
    query: QueryResult,
    sent: Result<Bytes, BytesRejection>,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let sent = body(sent)?;
    lifecycle(app, name, &action, query, Some(sent)).await
}

async fn lifecycle(
    app: Arc<App>,
    name: String,
    action: &str,
    query: QueryResult,
    sent: Option<Bytes>,
) -> Answer {
    let action = match Action::parse(action) {
        Some(
            action @ (Action::Start
            | Action::Precheck
            | Action::Pause
            | Action::Resume
            | Action::Stop
            | Action::Cutover),
        ) => action,
        _ => return Err(ApiError::no_route(&format!("/v1/jobs/{name}/{action}"))),
    };
    let params = params(query, &["wait"])?;
    let wait = wait(&params)?;
    let outcome = if action == Action::Cutover {
        let options = sent
            .filter(|b| !b.is_empty())
            .map(|b| serde_json::from_slice::<CutoverOptions>(&b));
        let options = match options {
            None => CutoverOptions::default(),
            Some(Ok(options)) => options,
            Some(Err(e)) => {
                return Err(ApiError::invalid(
                    "body",
                    format!("the cutover options are not valid: {e}"),
                ))
            }
        };
        let max_lag = options
            .max_lag_seconds
            .unwrap_or(crate::service::CUTOVER_LAG);
        if !(max_lag >= 0.0 && max_lag.is_finite()) {
            return Err(ApiError::invalid(
                "max_lag_seconds",
                "max_lag_seconds must be 0 or more",
            ));
        }
        let timeout = options
            .timeout_seconds
            .unwrap_or(crate::service::CUTOVER_TIMEOUT.as_secs());
        if timeout > MAX_CUTOVER_TIMEOUT {
            return Err(ApiError::invalid(
                "timeout_seconds",
                format!("timeout_seconds must be at most {MAX_CUTOVER_TIMEOUT} (a day)"),
            ));
        }
        let timeout = Duration::from_secs(timeout);
        app.service.act_with(&name, action, max_lag, timeout)?
    } else {
        app.service.act(&name, action)?
    };
    let settled = match wait {
        Some(wait) => app.service.settle(&name, wait).await,
        None => false,
    };
    if settled && action == Action::Start {
        let view = app.service.view(&name)?;
        if view.record.state == crate::lifecycle::State::PrecheckFailed {
            let precheck = doc::document(&view)["precheck"].clone();
            return Err(ApiError::precheck_failed(&name, precheck));
        }
    }
    let code = if outcome == Outcome::Satisfied || settled {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    status_document(&app, &name, code)
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CutoverOptions {
    max_lag_seconds: Option<f64>,
    timeout_seconds: Option<u64>,
}

async fn duplicate(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    query: QueryResult,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let params = params(query, &["name"])?;
    let new_name = params
        .get("name")
        .cloned()
        .unwrap_or_else(|| format!("{name}_copy"));
    app.service.duplicate(&name, &new_name)?;
    status_document(&app, &new_name, StatusCode::CREATED)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsBody {
    #[serde(default, deserialize_with = "present")]
    rows_per_sec: Option<Option<f64>>,
    #[serde(default, deserialize_with = "present")]
    mb_per_sec: Option<Option<f64>>,
}

/// Tells a key sent as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<f64>>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

async fn limits(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    sent: Result<Bytes, BytesRejection>,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let sent = body(sent)?;
    let asked: LimitsBody = serde_json::from_slice(&sent).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("limits are {{\"rows_per_sec\": N or null, \"mb_per_sec\": N or null}}: {e}"),
        )
    })?;
    app.service.change_limits(
        &name,
        crate::service::LimitsChange {
            rows_per_sec: asked.rows_per_sec,
            mb_per_sec: asked.mb_per_sec,
        },
    )?;
    status_document(&app, &name, StatusCode::OK)
}

async fn alter(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    sent: Result<Bytes, BytesRejection>,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let sent = body(sent)?;
    let patch = spec::body_to_toml(&sent, content_type(&headers))?;
    app.service.alter(&name, &patch)?;
    status_document(&app, &name, StatusCode::OK)
}

async fn remove(
    Shared(app): Shared<Arc<App>>,
    Path(name): Path<String>,
    query: QueryResult,
) -> Answer {
    // `{name}` is a job's name or its id.
    let name = app.service.resolve(&name)?;
    let params = params(query, &["keep_resources"])?;
    let keep = flag(&params, "keep_resources", false)?;
    let removed = app.service.drop_job(&name, keep).await?;
    Ok(Json(json!({"dropped": name, "removed": removed})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let document: Value = serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
        assert_eq!(document["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for method in operations.as_object().expect("operations").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = ROUTES
            .iter()
            .map(|(method, path)| (method.to_string(), path.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn a_tokenless_server_answers_its_own_pages_and_local_programs_only() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, v.parse().unwrap());
            }
            map
        };
        for ok in [
            headers(&[("host", "127.0.0.1:8470")]),
            headers(&[
                ("host", "localhost:8470"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://localhost:8470"),
            ]),
            headers(&[("host", "[::1]:8470"), ("sec-fetch-site", "none")]),
        ] {
            assert!(same_site(&ok).is_ok(), "{ok:?}");
        }
        for refused in [
            headers(&[("host", "evil.example:8470")]),
            headers(&[("host", "127.0.0.1:8470"), ("sec-fetch-site", "cross-site")]),
            headers(&[
                ("host", "127.0.0.1:8470"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8470"), ("origin", "null")]),
        ] {
            assert!(same_site(&refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
