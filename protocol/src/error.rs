//! The error body of every non-2xx answer, and field validation errors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"error": {...}}`, the body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable snake_case `code`, a human sentence and, for invalid input, the
/// offending fields mapped to what is wrong with each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
}

/// One field of a body holds a value the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// Path of the field, e.g. `heartbeats[3].sent_at`.
    pub field: String,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error for a field nested under `prefix`.
    pub fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            message: self.message,
        }
    }
}

/// Checks a free-text field: length in characters and no control characters.
pub fn check_text(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let len = value.chars().count();
    if len < min || len > max {
        return Err(ValidationError::new(
            field,
            format!("must be {min} to {max} characters long, got {len}"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
