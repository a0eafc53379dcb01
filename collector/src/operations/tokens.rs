//! Enrollment tokens (what agents enrol with) and personal API tokens (what scripts use
//! instead of a session). The plaintext exists only in the answer to a create.

use super::{Ctx, OpError, invalid, unknown};
use crate::secrets::{self, TokenHash};
use crate::store::NewEnrollmentToken;
use crate::store::admin::{ApiTokenInfo, EnrollmentTokenInfo};

/// Prefix of personal API tokens.
pub const API_TOKEN_PREFIX: &str = "gok_api_";
/// Shortest lifetime an enrollment token may be given.
pub const MIN_EXPIRES_IN_SECONDS: u64 = 60;
/// Longest lifetime an enrollment token may be given: ten years.
pub const MAX_EXPIRES_IN_SECONDS: u64 = 10 * 366 * 86_400;

/// What a new enrollment token gives the machines that enrol with it.
#[derive(Debug, Clone, Default)]
pub struct EnrollmentTokenSpec {
    /// Site name (default `default`).
    pub site: Option<String>,
    pub department: Option<String>,
    pub expires_in_seconds: Option<u64>,
    pub max_uses: Option<i64>,
}

/// Creates an enrollment token: its plaintext (shown once) and how it is listed.
pub async fn create_enrollment_token(
    ctx: Ctx<'_>,
    spec: EnrollmentTokenSpec,
) -> Result<(String, EnrollmentTokenInfo), OpError> {
    let department = spec.department.unwrap_or_default();
    greenops_protocol::check_text("department", &department, 0, 100)?;
    let site = spec.site.unwrap_or_else(|| "default".to_string());
    greenops_protocol::check_text("site", &site, 1, 64)?;
    if spec.max_uses.is_some_and(|n| n < 1) {
        return Err(invalid("max_uses", "must be at least 1"));
    }
    let now = crate::clock::now_ms();
    let expires_at_ms = match spec.expires_in_seconds {
        None => None,
        Some(s) if (MIN_EXPIRES_IN_SECONDS..=MAX_EXPIRES_IN_SECONDS).contains(&s) => {
            Some(now + crate::settings::secs_to_ms(s))
        }
        Some(_) => {
            return Err(invalid(
                "expires_in_seconds",
                "must be from 60 seconds to 10 years",
            ));
        }
    };
    let token = secrets::generate_token(secrets::ENROLLMENT_TOKEN_PREFIX);
    let info = ctx
        .store
        .create_enrollment_token(&NewEnrollmentToken {
            token_hash: TokenHash::of(&token),
            site,
            department,
            expires_at_ms,
            max_uses: spec.max_uses,
            created_at_ms: now,
        })
        .await
        .map_err(unknown("site"))?;
    ctx.audit(
        "enrollment_token_created",
        &info.id.to_string(),
        serde_json::json!({"after": info}),
    )
    .await?;
    Ok((token, info))
}

/// Revokes an enrollment token; machines already enrolled keep their credentials.
pub async fn revoke_enrollment_token(ctx: Ctx<'_>, id: i64) -> Result<(), OpError> {
    let revoked = ctx
        .store
        .revoke_enrollment_token(id, crate::clock::now_ms())
        .await?;
    revoked_or_not_found(ctx, "enrollment token", id, revoked).await
}

/// Creates a personal API token carrying `username`'s role: its plaintext and listing.
pub async fn create_api_token(
    ctx: Ctx<'_>,
    name: &str,
    username: &str,
) -> Result<(String, ApiTokenInfo), OpError> {
    greenops_protocol::check_text("name", name, 1, 100)?;
    greenops_protocol::check_text("username", username, 1, 64)?;
    let token = secrets::generate_token(API_TOKEN_PREFIX);
    let info = ctx
        .store
        .create_api_token(
            username,
            name,
            &TokenHash::of(&token),
            crate::clock::now_ms(),
        )
        .await
        .map_err(unknown("username"))?;
    ctx.audit(
        "api_token_created",
        &info.id.to_string(),
        serde_json::json!({"after": info}),
    )
    .await?;
    Ok((token, info))
}

/// Revokes an API token at once (on every collector sharing the database).
pub async fn revoke_api_token(ctx: Ctx<'_>, id: i64) -> Result<(), OpError> {
    let revoked = ctx
        .store
        .revoke_api_token(id, crate::clock::now_ms())
        .await?;
    revoked_or_not_found(ctx, "API token", id, revoked).await
}

/// The audit entry of a revocation, or 404 when there was nothing to revoke.
async fn revoked_or_not_found(
    ctx: Ctx<'_>,
    kind: &str,
    id: i64,
    revoked: bool,
) -> Result<(), OpError> {
    if !revoked {
        return Err(OpError::NotFound(format!(
            "{kind} {id} not found or already revoked"
        )));
    }
    ctx.audit(
        &format!("{}_revoked", kind.replace(' ', "_").to_lowercase()),
        &id.to_string(),
        serde_json::json!({}),
    )
    .await
}
