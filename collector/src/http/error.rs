//! The one error type at the HTTP boundary: status mapping and the DESIGN §3 JSON shape.
//! Internal errors are logged with context and never shown to clients.

use std::collections::BTreeMap;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use greenops_protocol::{ErrorBody, ErrorDetail, ValidationError};

use crate::ingest::IngestError;
use crate::store::StoreError;

/// Seconds a client should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: &str = "5";
/// Seconds to wait after a 503 for momentary overload (e.g. too many sign-ins at once).
const BUSY_RETRY_AFTER_SECONDS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("too many failed attempts; retry in {0} s")]
    TooManyRequests(u64),
    #[error("{0}")]
    Unavailable(&'static str),
    /// Too much work at once (503 with a short `Retry-After`).
    #[error("{0}")]
    Busy(&'static str),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// Every heartbeat of a request was rejected: 422 naming each field; `code` is
    /// `clock_ahead` when that is why all of them were, else `invalid_field`.
    #[error("{message}")]
    Rejected {
        code: &'static str,
        message: String,
        fields: BTreeMap<String, String>,
    },
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// The sentence a client is shown (internal details never are).
    pub(crate) fn public_message(&self) -> String {
        self.parts().2
    }

    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Malformed(m) => (StatusCode::BAD_REQUEST, "malformed_request", m.clone()),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", (*m).into()),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", (*m).into()),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m.clone()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m.clone()),
            ApiError::TooManyRequests(s) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many failed attempts; retry in {s} s"),
            ),
            ApiError::PayloadTooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                m.clone(),
            ),
            ApiError::Invalid(e) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{} {}", e.field, e.message),
            ),
            ApiError::Unavailable(m) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", (*m).into())
            }
            ApiError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, "busy", (*m).into()),
            ApiError::Rejected { code, message, .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone())
            }
            ApiError::MethodNotAllowed(m) => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                m.clone(),
            ),
            ApiError::HeadersTooLarge(m) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                m.clone(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "an internal error occurred; it has been logged".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = format!("{e:#}"), "request failed");
        }
        let (status, code, message) = self.parts();
        let fields = match &self {
            ApiError::Invalid(e) => Some(BTreeMap::from([(e.field.clone(), e.message.clone())])),
            ApiError::Rejected { fields, .. } => Some(fields.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message,
                fields,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests(seconds) = &self
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is never read: the connection cannot carry another request,
            // and the client must not try to reuse it.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = if matches!(self, ApiError::Busy(_)) {
                BUSY_RETRY_AFTER_SECONDS
            } else {
                RETRY_AFTER_SECONDS
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %source, "store unavailable");
                ApiError::Unavailable("the database is unavailable; retry later")
            }
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Unavailable => {
                ApiError::Unavailable("the heartbeat could not be committed; retry later")
            }
            IngestError::Overloaded => {
                ApiError::Unavailable("the collector is overloaded; retry later")
            }
            IngestError::Internal => ApiError::Internal(anyhow::anyhow!("group commit failed")),
        }
    }
}
