//! Extractors that carry the cross-cutting work of every handler, so that a handler reads as
//! "extract, call one operation, map the answer":
//!
//! - [`ApiJson`]: a JSON body — 400 when it is not JSON, 413 when it is too large, 422 naming
//!   the field when a value has the wrong type or holds a NUL character;
//! - [`ApiQuery`]: the query string — 422 naming the parameter for duplicates, control
//!   characters, over-long values or values of the wrong type;
//! - [`ApiPath`]: path parameters — 404 when they cannot name anything (wrong type, control
//!   characters, absurd length);
//! - [`Admin`] and [`Viewer`]: the signed-in operator with the role the route needs.
//!
//! Every rejection is an [`ApiError`], so every refusal has the JSON error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use greenops_protocol::{MAX_BODY_BYTES, ValidationError};
use serde::de::DeserializeOwned;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;

/// The result type of every handler and helper at the HTTP boundary.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// Longest query-string name or value accepted (characters after decoding).
pub const MAX_QUERY_VALUE_CHARS: usize = 256;
/// Longest path parameter accepted (bytes after decoding).
pub const MAX_PATH_PARAM_BYTES: usize = 128;

/// A JSON request body, parsed into `T`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_error(rejection.status()))?;
        Ok(Self(parse_json(&bytes)?))
    }
}

/// A request body as bytes (for bodies with their own parser, like heartbeats).
#[derive(Debug, Clone)]
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self> {
        Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|rejection| body_error(rejection.status()))
    }
}

/// The error for a body that could not be read: 413 when it is over the limit.
pub(crate) fn body_error(status: StatusCode) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        too_large()
    } else {
        ApiError::Malformed("the request body could not be read".into())
    }
}

/// The 413 every over-long body gets.
pub(crate) fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "request bodies are limited to {MAX_BODY_BYTES} bytes"
    ))
}

/// Parses a JSON body: syntax errors are 400; type errors and strings holding NUL are 422
/// naming the field.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    // Through a `Value` first: a value of the wrong JSON type (`"role": null`) is then a
    // type error naming the field, never a syntax error.
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Malformed(format!("malformed JSON: {e}")))?;
    if let Some(path) = nul_string(&value, "$") {
        return Err(ValidationError::new(path, "must not contain NUL characters").into());
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // A missing field is reported at its parent: name the field itself.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            (".", Some(name)) => name.to_string(),
            (_, Some(name)) => format!("{path}.{name}"),
            (".", None) => "$".to_string(),
            _ => path,
        };
        let message = if missing.is_some() {
            "is required".to_string()
        } else {
            message
        };
        ApiError::Invalid(ValidationError::new(field, message))
    })
}

/// The path of the first string (or object key) holding a NUL character.
fn nul_string(value: &serde_json::Value, path: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Some(path.to_string()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_string(v, &format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path == "$" {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(path.to_string())
            } else {
                nul_string(v, &here)
            }
        }),
        _ => None,
    }
}

/// The query string, parsed into `T` (a struct of optional strings; unknown names are
/// ignored, repeated names are refused).
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self> {
        Ok(Self(parse_query(parts.uri.query().unwrap_or(""))?))
    }
}

/// Parses a query string into `T`, refusing duplicates, control characters and long values.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T> {
    let mut map = serde_json::Map::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name.chars().count() > MAX_QUERY_VALUE_CHARS || name.chars().any(char::is_control) {
            return Err(ValidationError::new("query", "holds an unreadable parameter name").into());
        }
        if value.chars().count() > MAX_QUERY_VALUE_CHARS {
            return Err(ValidationError::new(
                name.as_ref(),
                format!("must be at most {MAX_QUERY_VALUE_CHARS} characters long"),
            )
            .into());
        }
        if value.chars().any(char::is_control) {
            return Err(
                ValidationError::new(name.as_ref(), "must not contain control characters").into(),
            );
        }
        if map
            .insert(
                name.to_string(),
                serde_json::Value::String(value.into_owned()),
            )
            .is_some()
        {
            return Err(ValidationError::new(name.as_ref(), "must be given at most once").into());
        }
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(map)).map_err(|e| {
        let field = e.path().to_string();
        ApiError::Invalid(ValidationError::new(field, e.into_inner().to_string()))
    })
}

/// Path parameters, parsed into `T`; anything that cannot name a resource is a 404.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let not_found = || ApiError::NotFound("no such resource".into());
        let raw = Path::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        if raw
            .iter()
            .any(|(_, v)| v.len() > MAX_PATH_PARAM_BYTES || v.chars().any(char::is_control))
        {
            return Err(not_found());
        }
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|_| not_found())?;
        Ok(Self(value))
    }
}

/// A signed-in operator of any role (viewers read everything).
#[derive(Debug, Clone)]
pub struct Viewer(pub Operator);

impl FromRequestParts<AppState> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        Ok(Self(Operator::from_request_parts(parts, state).await?))
    }
}

/// A signed-in admin: viewers get 403, anonymous requests 401.
#[derive(Debug, Clone)]
pub struct Admin(pub Operator);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let operator = Operator::from_request_parts(parts, state).await?;
        match operator.role {
            crate::store::Role::Admin => Ok(Self(operator)),
            crate::store::Role::Viewer => {
                Err(ApiError::Forbidden("viewers cannot change anything"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Q {
        a: Option<String>,
        b: Option<String>,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Body {
        role: Option<String>,
        name: String,
    }

    fn field_of(e: ApiError) -> String {
        match e {
            ApiError::Invalid(v) => v.field,
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn queries_refuse_duplicates_control_characters_and_long_values() {
        assert_eq!(
            parse_query::<Q>("a=1&c=ignored").unwrap(),
            Q {
                a: Some("1".into()),
                b: None
            }
        );
        assert_eq!(field_of(parse_query::<Q>("a=1&a=2").unwrap_err()), "a");
        assert_eq!(field_of(parse_query::<Q>("b=%00").unwrap_err()), "b");
        assert_eq!(field_of(parse_query::<Q>("b=x%1B%5B31m").unwrap_err()), "b");
        let long = format!("a={}", "x".repeat(MAX_QUERY_VALUE_CHARS + 1));
        assert_eq!(field_of(parse_query::<Q>(&long).unwrap_err()), "a");
    }

    #[test]
    fn json_type_errors_and_nul_strings_name_the_field() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\": "),
            Err(ApiError::Malformed(_))
        ));
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name": 1}"#).unwrap_err()),
            "name"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name": "a\u0000b"}"#).unwrap_err()),
            "name"
        );
        assert_eq!(
            field_of(parse_json::<Body>(br#"{"name": "x", "role": 3}"#).unwrap_err()),
            "role"
        );
        assert_eq!(field_of(parse_json::<Body>(br#"{}"#).unwrap_err()), "name");
        assert_eq!(
            parse_json::<Body>(br#"{"name": "x", "role": null}"#).unwrap(),
            Body {
                role: None,
                name: "x".into()
            }
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_parsers(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_json::<Body>(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_query::<Q>(&text);
        }
    }
}
