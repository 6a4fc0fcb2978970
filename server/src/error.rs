//! The service's answers to what it cannot do: one error type with its HTTP status and code
//! (`JobNotFound`, `InvalidJobState`, …), served as `{"error":{"code","message",…}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::catalog::CatalogError;
use crate::lifecycle::{Action, State};

/// A refused or failed request.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (`InvalidJobState`).
    pub code: &'static str,
    /// What is wrong and what to do, in words.
    pub message: String,
    /// More fields of the error object (`job`, `state`, `allowed_actions`, `field`, `items`).
    pub details: serde_json::Map<String, Value>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }

    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// No job of that name.
    pub fn not_found(job: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "JobNotFound",
            format!("no job named {job:?}; GET /v1/jobs lists the jobs"),
        )
        .with("job", job)
    }

    /// The name belongs to a job.
    pub fn name_taken(job: &str) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "JobAlreadyExists",
            format!(
                "a job named {job:?} exists; choose another name, or DELETE /v1/jobs/{job} first"
            ),
        )
        .with("job", job)
    }

    /// `action` is not allowed in `state`.
    pub fn invalid_state(job: &str, state: State, action: Action, allowed: Vec<&str>) -> ApiError {
        let list = if allowed.is_empty() {
            "none".to_string()
        } else {
            allowed.join(", ")
        };
        ApiError::new(
            StatusCode::CONFLICT,
            "InvalidJobState",
            format!(
                "cannot {} job {job}: it is {}; allowed now: {list}",
                action.name(),
                state.name()
            ),
        )
        .with("job", job)
        .with("state", state.name())
        .with("allowed_actions", allowed)
    }

    /// The job has no spec yet (created by a cloud API, not configured).
    pub fn not_configured(job: &str, state: State, action: Action) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "InvalidJobState",
            format!(
                "cannot {} job {job}: it is not configured yet; configure it first (ConfigureMigrationJob, the DCS task body, or PATCH /v1/jobs/{job} with a source and a sink)",
                action.name()
            ),
        )
        .with("job", job)
        .with("state", state.name())
        .with("allowed_actions", vec!["alter", "drop"])
    }

    /// The precheck blocks the start; `precheck` holds its items.
    pub fn precheck_failed(job: &str, precheck: Value) -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "PrecheckFailed",
            format!("job {job} cannot start: its precheck failed; the items say what to fix (GET /v1/jobs/{job}/precheck)"),
        )
        .with("job", job)
        .with("state", "precheck_failed")
        .with("precheck", precheck)
    }

    /// A parameter is wrong.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidParameter", message).with("field", field)
    }

    /// A parameter is missing.
    pub fn missing(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "MissingParameter", message).with("field", field)
    }

    /// The body is larger than the service takes.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLarge",
            format!("the body is larger than {limit} bytes; a job spec is a few kilobytes"),
        )
    }

    /// No token, or the wrong one.
    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "this server needs an access token: send Authorization: Bearer <token>",
        )
    }

    /// A request the server does not take from where it comes.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// No such route.
    pub fn no_route(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("no route {path}; GET /v1/openapi.json lists the API"),
        )
    }

    /// A bug or a failing data dir.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }

    /// A job error: the user's is a bad request, any other a failure of the service.
    pub fn from_job(error: &ferry_jobs::Error) -> ApiError {
        match error.class() {
            ferry_jobs::ErrorClass::User => ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidParameter",
                error.to_string(),
            ),
            _ => ApiError::internal(error.to_string()),
        }
    }

    /// The error object as served.
    pub fn body(&self) -> Value {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), self.code.into());
        error.insert("message".into(), self.message.clone().into());
        error.extend(self.details.clone());
        json!({ "error": error })
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> ApiError {
        match error {
            CatalogError::NameTaken(name) => ApiError::name_taken(&name),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}
