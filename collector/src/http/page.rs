//! The built-in admin page (assets compiled into the binary: no CDN, works offline) and the
//! security headers every response carries. No CORS headers are ever sent, so browsers keep
//! other origins from reading any answer.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

const INDEX_HTML: &str = include_str!("../admin/index.html");
const APP_JS: &str = include_str!("../admin/app.js");
const APP_CSS: &str = include_str!("../admin/app.css");
const ICON_SVG: &str = include_str!("../admin/icon.svg");

/// `default-src 'self'`: scripts, styles, images and requests only from this origin; no
/// inline script or style, no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(app_js))
        .routes(routes!(app_css))
        .routes(routes!(icon))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The admin page.
#[utoipa::path(get, path = "/", tag = "admin page", operation_id = "admin_page",
    responses((status = 200, content_type = "text/html", body = String)))]
async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// The admin page's script.
#[utoipa::path(get, path = "/assets/app.js", tag = "admin page", operation_id = "admin_page_script",
    responses((status = 200, content_type = "text/javascript", body = String)))]
async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// The admin page's style sheet.
#[utoipa::path(get, path = "/assets/app.css", tag = "admin page", operation_id = "admin_page_style",
    responses((status = 200, content_type = "text/css", body = String)))]
async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The admin page's icon.
#[utoipa::path(get, path = "/assets/icon.svg", tag = "admin page", operation_id = "admin_page_icon",
    responses((status = 200, content_type = "image/svg+xml", body = String)))]
async fn icon() -> Response {
    asset("image/svg+xml", ICON_SVG)
}

/// Adds the security headers to every response; API answers are never cached.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let mut set = |name: HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(header::CONTENT_SECURITY_POLICY, CSP);
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(header::REFERRER_POLICY, "no-referrer");
    set(
        HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("cross-origin-resource-policy"),
        "same-origin",
    );
    set(
        HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=()",
    );
    if api {
        set(header::CACHE_CONTROL, "no-store");
    }
    response
}
