//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route, generated from the
//! handlers' annotations (the router and the document are built from the same list), then
//! completed by [`complete`] with what every route shares: the JSON error envelope on every
//! error answer, 401 on authenticated routes, 400/413/422 where a body or parameters are
//! read, a `default` answer for the rest, and a description on every answer.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// Title, version and the two ways operators authenticate.
pub fn base() -> OpenApi {
    let mut api = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("GreenOps collector API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Agents enrol and send heartbeats; operators manage the fleet. Errors are \
                     {\"error\": {\"code\", \"message\", \"fields\"?}}. Cookie-authenticated \
                     requests that change something must send the header X-GreenOps-CSRF.",
                ))
                .build(),
        )
        .build();
    SecuritySchemes.modify(&mut api);
    api
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from /api/v1/auth/login, a personal API token \
                         (gok_api_…) or, on agent routes, the agent token (gok_agent_…)",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "/metrics only, when metrics.basic_auth_username/password are set",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::COOKIE))),
        );
    }
}

/// The document as served: the generated description, completed (see the module docs).
pub fn document() -> serde_json::Value {
    let generated = serde_json::to_value(super::openapi_document()).unwrap_or_default();
    complete(generated)
}

const ERROR_REF: &str = "#/components/schemas/ErrorBody";

fn error_content() -> serde_json::Value {
    serde_json::json!({"application/json": {"schema": {"$ref": ERROR_REF}}})
}

fn reason(code: &str) -> String {
    code.parse::<u16>()
        .ok()
        .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
        .and_then(|c| c.canonical_reason())
        .unwrap_or("response")
        .to_string()
}

/// Adds what every operation shares (see the module docs).
pub fn complete(mut doc: serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    continue;
                }
                let has_body = op.get("requestBody").is_some();
                let has_query = op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
                let secured =
                    op.get("security")
                        .and_then(Value::as_array)
                        .is_some_and(|alternatives| {
                            !alternatives.is_empty()
                                && alternatives
                                    .iter()
                                    .all(|a| a.as_object().is_some_and(|o| !o.is_empty()))
                        });
                let responses = op.as_object_mut().and_then(|o| {
                    o.entry("responses")
                        .or_insert_with(|| json!({}))
                        .as_object_mut()
                });
                let Some(responses) = responses else {
                    continue;
                };
                let mut add = |code: &str, description: &str| {
                    responses
                        .entry(code.to_string())
                        .or_insert_with(|| json!({"description": description}));
                };
                if secured {
                    add("401", "not signed in, or the credential is invalid");
                }
                if has_body {
                    add("400", "the body is not JSON");
                    add("413", "the body is larger than 1 MiB");
                    add("422", "a field holds an invalid value (named in `fields`)");
                }
                if has_query {
                    add(
                        "422",
                        "a parameter holds an invalid value (named in `fields`)",
                    );
                }
                add(
                    "default",
                    "any other error (e.g. 503 with Retry-After while the database is \
                     unavailable), in the JSON error envelope",
                );
                for (code, response) in responses.iter_mut() {
                    let Some(response) = response.as_object_mut() else {
                        continue;
                    };
                    let empty = response
                        .get("description")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty);
                    if empty {
                        response.insert("description".into(), Value::String(reason(code)));
                    }
                    let error = code == "default" || code.starts_with('4') || code.starts_with('5');
                    if error && response.get("content").is_none() {
                        response.insert("content".into(), error_content());
                    }
                }
            }
        }
    }
    let schemas = doc
        .as_object_mut()
        .map(|o| o.entry("components").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
        .map(|c| c.entry("schemas").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(schemas) = schemas {
        use utoipa::PartialSchema;
        for (name, schema) in [
            ("ErrorBody", greenops_protocol::ErrorBody::schema()),
            ("ErrorDetail", greenops_protocol::ErrorDetail::schema()),
        ] {
            schemas.insert(
                name.into(),
                serde_json::to_value(schema).unwrap_or_default(),
            );
        }
    }
    doc
}

/// This document./// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops", operation_id = "openapi",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(|| {
        serde_json::to_string_pretty(&document()).unwrap_or_else(|_| "{}".to_string())
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_has_a_unique_id_and_described_answers() {
        let doc = super::document();
        let mut ids = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap_or(&Default::default()) {
            for (method, op) in item.as_object().unwrap_or(&Default::default()) {
                let id = op["operationId"].as_str().unwrap_or_default().to_string();
                assert!(!id.is_empty(), "{method} {path} has no operationId");
                assert!(ids.insert(id.clone()), "operationId {id} is used twice");
                for (code, response) in op["responses"].as_object().unwrap_or(&Default::default()) {
                    assert!(
                        response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                        "{method} {path} {code} has no description"
                    );
                }
            }
        }
        assert!(ids.len() > 30, "{ids:?}");
    }

    /// The whole document, reviewed on every change: `INSTA_UPDATE=always cargo test` (or
    /// `cargo insta review`) accepts an intended change; CI fails on any other.
    #[test]
    fn the_document_is_as_reviewed() {
        let mut doc = super::document();
        // The version changes with every release, not with the API.
        doc["info"]["version"] = serde_json::Value::String("(version)".into());
        insta::assert_json_snapshot!("openapi", doc);
    }
}
