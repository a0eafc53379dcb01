//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 description of every route, generated from the
//! handlers' annotations (the router and the document are built from the same list).

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

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let json = DOCUMENT.get_or_init(|| {
        super::openapi_document()
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_string())
    });
    ([(header::CONTENT_TYPE, "application/json")], json.as_str())
}
