//! Operator sessions: `POST /api/v1/auth/login`, `GET /api/v1/auth/me`,
//! `POST /api/v1/auth/logout`, and the [`Operator`] extractor every operator route uses.
//!
//! A request authenticates with `Authorization: Bearer <token>` (API clients; no CSRF step) or
//! the `HttpOnly; SameSite=Strict` session cookie. Cookie-authenticated requests that change
//! something must also send `X-GreenOps-CSRF: 1`: a header a cross-site form cannot add.

use axum::Json;
use std::net::{IpAddr, SocketAddr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::views::RoleView;
use super::{ApiError, ApiJson, AppState, Result, bearer};
use crate::auth::{self, COOKIE, SESSION_SECONDS};
use crate::store::Role;
use crate::telemetry::untrusted;

/// The header that proves a cookie-authenticated request came from our own page.
pub const CSRF_HEADER: &str = "x-greenops-csrf";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    #[schema(schema_with = super::schema::field::username)]
    username: String,
    #[schema(schema_with = super::schema::field::password)]
    password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserView {
    pub username: String,
    pub role: RoleView,
}

#[derive(Serialize, utoipa::ToSchema)]
struct LoginResponse {
    token: String,
    expires_at: String,
    user: UserView,
}

/// An authenticated operator.
#[derive(Debug, Clone)]
pub struct Operator {
    pub username: String,
    pub role: Role,
}

fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let (token, via_cookie) = match bearer(&parts.headers) {
            Some(t) => (t, false),
            None => match cookie_token(&parts.headers) {
                Some(t) => (t, true),
                None => return Err(ApiError::Unauthorized("sign in first")),
            },
        };
        if !via_cookie && token.starts_with(crate::operations::tokens::API_TOKEN_PREFIX) {
            let user = state
                .store
                .user_for_api_token(&crate::secrets::TokenHash::of(token))
                .await?
                .ok_or(ApiError::Unauthorized(
                    "the API token is unknown or revoked, or its user is disabled",
                ))?;
            return Ok(Operator {
                username: user.username,
                role: user.role,
            });
        }
        let claims = state.sessions.verify(token).ok_or(ApiError::Unauthorized(
            "the session is invalid or expired; sign in again",
        ))?;
        let user = state
            .store
            .user_by_name(&claims.sub)
            .await?
            .filter(|u| !u.disabled && u.session_version == claims.ver)
            .ok_or(ApiError::Unauthorized(
                "the session was ended; sign in again",
            ))?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if via_cookie && !safe && parts.headers.get(CSRF_HEADER).is_none() {
            return Err(ApiError::Forbidden("missing the X-GreenOps-CSRF header"));
        }
        Ok(Operator {
            username: user.username,
            role: user.role,
        })
    }
}

/// Whether the browser reached us over HTTPS: told by a trusted proxy's `X-Forwarded-Proto`
/// (the collector itself serves plain HTTP behind a TLS-terminating proxy).
pub fn via_https(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> bool {
    trusted.contains(&peer)
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

/// The session cookie: `HttpOnly; SameSite=Strict`, and `Secure` when served over HTTPS.
fn session_cookie(token: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("greenops_session=; Max-Age=0"))
}

/// A stand-in hash, so a login for an unknown user costs as much as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$Lr0m0GB8DRYN3kU66X12DHbi4OHSXHhbfOnVt1wSYlI";

/// The client's address: the peer, or — when the peer is a trusted proxy — the last address
/// in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

/// Audits a sign-in event; a failure is logged, never a reason to refuse the sign-in.
async fn audit(
    state: &AppState,
    actor: &str,
    action: &str,
    target: &str,
    details: serde_json::Value,
) {
    if let Err(e) = state.ctx(actor).audit(action, target, details).await {
        tracing::error!(error = %e, action, "could not write the audit log");
    }
}

/// Signs in: answers a session token and sets the session cookie. Rate limited per username
/// and per client IP across every collector on the database.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", operation_id = "login", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong username or password"),
        (status = 429, description = "too many failures; see Retry-After")))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response> {
    // Names that cannot exist never reach the rate limiter or the password check (a 1 MB
    // "username" would otherwise be a 1 MB rate-limit key).
    auth::check_username(&request.username).map_err(|m| super::invalid("username", &m))?;
    let password_chars = request.password.chars().count();
    if !(1..=1024).contains(&password_chars) {
        return Err(super::invalid(
            "password",
            "must be 1 to 1024 characters long",
        ));
    }
    let limits = &state.settings.auth;
    let ip = client_ip(peer.ip(), &headers, &limits.trusted_proxies);
    let user_key = format!("user:{}", request.username.to_lowercase());
    let ip_key = format!("ip:{ip}");
    let keys = [user_key.clone(), ip_key.clone()];
    let now_ms = crate::clock::now_ms();
    let window_ms = crate::settings::secs_to_ms(limits.login_window_seconds);
    // The attempt is counted before the password is checked, in one statement per key that
    // also checks the limit: however many arrive at once, at most `login_max_failures` per
    // window are ever verified. A sign-in that succeeds (or is never checked) gives it back.
    if let Err(retry_ms) = state
        .store
        .reserve_login_attempt(&keys, now_ms, window_ms, limits.login_max_failures)
        .await?
    {
        let retry_s = u64::try_from(retry_ms.div_euclid(1000) + 1).unwrap_or(1);
        return Err(ApiError::TooManyRequests(retry_s));
    }
    let user = state.store.user_by_name(&request.username).await?;
    let hash = user
        .as_ref()
        .map_or(DUMMY_HASH, |u| u.password_hash.as_str())
        .to_string();
    // Argon2 is deliberately slow: it runs on the bounded password pool, never on the async
    // workers, and a full pool refuses at once (503, Retry-After) instead of queueing.
    let matches = match state.passwords.verify(hash, request.password).await {
        Ok(matches) => matches,
        Err(busy) => {
            state.store.release_login_attempt(&[], &keys).await?;
            return Err(ApiError::Busy(busy_message(busy)));
        }
    };
    let Some(user) = user.filter(|u| matches && !u.disabled) else {
        tracing::warn!(username = %untrusted(&request.username), %ip, "failed login");
        audit(
            &state,
            &request.username,
            "login_failed",
            "",
            serde_json::json!({"ip": ip.to_string()}),
        )
        .await;
        return Err(ApiError::Unauthorized("wrong username or password"));
    };
    state
        .store
        .release_login_attempt(&[user_key], &[ip_key])
        .await?;
    if let Err(e) = state.store.forget_login_attempts(now_ms - window_ms).await {
        tracing::debug!(error = %e, "could not forget old login counters");
    }
    audit(
        &state,
        &user.username,
        "login",
        "",
        serde_json::json!({"ip": ip.to_string()}),
    )
    .await;
    let now = OffsetDateTime::now_utc();
    let (token, exp) = state.sessions.issue(&user, now.unix_timestamp())?;
    tracing::info!(username = %untrusted(&user.username), "login");
    let expires_at = OffsetDateTime::from_unix_timestamp(exp)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default();
    let mut response = Json(LoginResponse {
        token: token.clone(),
        expires_at,
        user: UserView {
            username: user.username,
            role: user.role.into(),
        },
    })
    .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(
            &token,
            SESSION_SECONDS,
            state.settings.tls.cert.is_some()
                || via_https(peer.ip(), &headers, &limits.trusted_proxies),
        ),
    );
    Ok(response)
}

fn busy_message(_: crate::auth::PoolBusy) -> &'static str {
    "too many sign-ins at once; retry in a second"
}

/// The signed-in operator.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", operation_id = "me",
    responses((status = 200, body = UserView), (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn me(operator: Operator) -> Json<UserView> {
    Json(UserView {
        username: operator.username,
        role: operator.role.into(),
    })
}

/// Ends every session of the operator (this one included).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", operation_id = "logout",
    responses((status = 204, description = "signed out everywhere"), (status = 401, description = "not signed in")),
    security(("session" = []), ("bearer" = [])))]
async fn logout(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    operator: Operator,
) -> Result<Response> {
    state
        .store
        .revoke_sessions(&operator.username, crate::clock::now_ms())
        .await?;
    audit(
        &state,
        &operator.username,
        "logout",
        "",
        serde_json::json!({}),
    )
    .await;
    tracing::info!(username = %untrusted(&operator.username), "logout");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(
            "",
            0,
            state.settings.tls.cert.is_some()
                || via_https(peer.ip(), &headers, &state.settings.auth.trusted_proxies),
        ),
    );
    Ok(response)
}
