//! Enrollment and API tokens (http/tokens.rs).

use greenops_collector::store::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, call, error_of, ok_json};

async fn enrollment_and_api_tokens(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let created = ok_json(
        call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({"department": "lab", "max_uses": 1, "expires_in_seconds": 3600})),
        )
        .await,
        201,
    )
    .await;
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("gok_enroll_"));
    let listed = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/enrollment-tokens", None).await,
        200,
    )
    .await;
    assert!(
        !listed.to_string().contains(&token),
        "plaintext is shown only once"
    );
    assert_eq!(listed["items"][0]["department"], "lab");
    assert_eq!(
        app.post_enroll(&crate::helpers::enroll_body(&token, "k1-0123456789abcdef"))
            .await
            .status(),
        201
    );
    // max_uses 1: used up.
    assert_eq!(
        app.post_enroll(&crate::helpers::enroll_body(&token, "k2-0123456789abcdef"))
            .await
            .status(),
        401
    );
    let second = ok_json(
        call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{}", second["id"]),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        app.post_enroll(&crate::helpers::enroll_body(
            second["token"].as_str().unwrap(),
            "k3-0123456789abcdef"
        ))
        .await
        .status(),
        401
    );
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/enrollment-tokens/{}", second["id"]),
            None
        )
        .await
        .status(),
        404
    );
    for (body, field) in [
        (json!({"site": "mars"}), "site"),
        (json!({"max_uses": 0}), "max_uses"),
        (json!({"expires_in_seconds": 5}), "expires_in_seconds"),
        (json!({"department": "a\u{7}"}), "department"),
    ] {
        let (status, _, f) = error_of(
            call(
                &app,
                &admin,
                Method::POST,
                "/api/v1/enrollment-tokens",
                Some(body),
            )
            .await,
        )
        .await;
        assert_eq!((status, f.as_deref()), (422, Some(field)));
    }

    // API tokens carry their user's role, and revocation is immediate.
    let _ = app.operator("viewer", Role::Viewer).await;
    let api = ok_json(
        call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "grafana", "username": "viewer"})),
        )
        .await,
        201,
    )
    .await;
    let api_token = api["token"].as_str().unwrap().to_string();
    assert!(api_token.starts_with("gok_api_"));
    let me = ok_json(
        call(&app, &api_token, Method::GET, "/api/v1/auth/me", None).await,
        200,
    )
    .await;
    assert_eq!(me, json!({"username": "viewer", "role": "viewer"}));
    assert_eq!(
        call(
            &app,
            &api_token,
            Method::POST,
            "/api/v1/sites",
            Some(json!({}))
        )
        .await
        .status(),
        403
    );
    let listed = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/api-tokens", None).await,
        200,
    )
    .await;
    assert!(!listed.to_string().contains(&api_token));
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/api-tokens/{}", api["id"]),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        call(&app, &api_token, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );
    let (status, _, f) = error_of(
        call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "x", "username": "ghost"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, f.as_deref()), (422, Some("username")));
    app.stop().await;
}

on_both_backends!(app: enrollment_and_api_tokens);
