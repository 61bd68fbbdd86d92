//! The one error shape: `{"error": {"code", "message", "request_id"}}`.
//!
//! `IntoResponse` has no side effects: an internal error's cause rides in the response's
//! extensions and the request middleware logs it; the client sees only a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::middleware::current_request_id;
use crate::auth::AuthError;
use crate::credentials::CredentialError;
use crate::kms::KmsError;
use crate::pipeline::runlog::RunLogError;
use crate::pipeline::SubmitError;
use crate::pricebook::PriceBookError;
use crate::warehouse::WarehouseError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// Logged, never sent.
    pub cause: Option<String>,
}

/// The cause of a 5xx, for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, cause: None }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> ApiError {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    pub fn unavailable(cause: impl Into<String>) -> ApiError {
        let mut e =
            Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "a backend is unavailable; retry shortly");
        e.cause = Some(cause.into());
        e
    }
    /// A 500 whose cause is logged but never returned.
    pub fn internal(cause: impl Into<String>) -> ApiError {
        let mut e = Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error");
        e.cause = Some(cause.into());
        e
    }
}

impl From<WarehouseError> for ApiError {
    fn from(e: WarehouseError) -> ApiError {
        match e {
            WarehouseError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Unauthorized(m) => ApiError::unauthorized(m),
            AuthError::Forbidden(m) => ApiError::forbidden(m),
            AuthError::Throttled { retry_after_secs } => ApiError::too_many_requests(e.to_string(), retry_after_secs),
            AuthError::Warehouse(w) => w.into(),
        }
    }
}

impl From<PriceBookError> for ApiError {
    fn from(e: PriceBookError) -> ApiError {
        match e {
            PriceBookError::Invalid(m) => ApiError::bad_request(m),
            PriceBookError::NotFound(m) => ApiError::not_found(m),
            PriceBookError::NoBook(m) => ApiError::new(StatusCode::NOT_FOUND, "price_book_not_found", m),
            PriceBookError::Exists(m) => ApiError::conflict(m),
            PriceBookError::NoCatalog(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "price_catalog_missing", m),
            PriceBookError::Warehouse(w) => w.into(),
        }
    }
}

impl From<KmsError> for ApiError {
    fn from(e: KmsError) -> ApiError {
        match e {
            KmsError::Unavailable(_) => ApiError::unavailable(e.to_string()),
            KmsError::Decrypt => ApiError::internal(e.to_string()),
        }
    }
}

impl From<CredentialError> for ApiError {
    fn from(e: CredentialError) -> ApiError {
        match e {
            CredentialError::Warehouse(w) => w.into(),
            CredentialError::Kms(k) => k.into(),
            CredentialError::Corrupt { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<crate::notify::NotifyError> for ApiError {
    fn from(e: crate::notify::NotifyError) -> ApiError {
        match e {
            crate::notify::NotifyError::Warehouse(w) => w.into(),
            crate::notify::NotifyError::Kms(k) => k.into(),
            crate::notify::NotifyError::RunLog(r) => r.into(),
            crate::notify::NotifyError::Corrupt { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<RunLogError> for ApiError {
    fn from(e: RunLogError) -> ApiError {
        match e {
            RunLogError::Warehouse(w) => w.into(),
            RunLogError::Corrupt { .. } => ApiError::internal(e.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> ApiError {
        match e {
            SubmitError::Window(m) => ApiError::bad_request(m),
            SubmitError::NoOrganization(_) => ApiError::not_found(e.to_string()),
            SubmitError::Subscription(m) => ApiError::forbidden(m),
            SubmitError::Integration(m) => ApiError::conflict(m),
            SubmitError::Quota { message, retry_after_secs } => ApiError::too_many_requests(message, retry_after_secs),
            SubmitError::Queue(reason) => ApiError::unavailable(format!("run queue: {reason}")),
            SubmitError::RunLog(r) => r.into(),
            SubmitError::Credential(c) => c.into(),
        }
    }
}

/// The status's default code, for responses produced outside a handler.
pub fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "timeout",
        s if s.is_server_error() => "internal",
        _ => "error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "request_id": current_request_id(),
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
