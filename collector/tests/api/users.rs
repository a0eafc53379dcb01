//! User changes and the last admin (http/users.rs).

use greenops_collector::store::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, call, error_of, ok_json};

async fn users_change_and_the_last_admin_stays(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            "/api/v1/users/admin",
            Some(json!({"role": "viewer"})),
        ),
        (
            Method::PATCH,
            "/api/v1/users/admin",
            Some(json!({"disabled": true})),
        ),
        (Method::DELETE, "/api/v1/users/admin", None),
    ] {
        let (status, _, _) = error_of(call(&app, &admin, method, path, body).await).await;
        assert_eq!(status, 409, "{path}");
    }
    let (status, _, f) = error_of(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/users/viewer",
            Some(json!({"password": "short"})),
        )
        .await,
    )
    .await;
    assert_eq!((status, f.as_deref()), (422, Some("password")));
    assert_eq!(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/users/ghost",
            Some(json!({}))
        )
        .await
        .status(),
        404
    );
    // A new password ends the user's sessions.
    let item = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/users/viewer",
            Some(json!({"password": "another long password", "role": "admin"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        item,
        json!({"username": "viewer", "role": "admin", "disabled": false})
    );
    assert_eq!(
        call(&app, &viewer, Method::GET, "/api/v1/auth/me", None)
            .await
            .status(),
        401
    );
    // With a second admin, the first one may be disabled; that ends its sessions too.
    assert_eq!(
        call(&app, &admin, Method::DELETE, "/api/v1/users/viewer", None)
            .await
            .status(),
        204
    );
    let users = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/users", None).await,
        200,
    )
    .await;
    assert_eq!(
        users["items"][1],
        json!({"username": "viewer", "role": "admin", "disabled": true})
    );
    let item = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/users/viewer",
            Some(json!({"disabled": false})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(item["disabled"], false);
    app.stop().await;
}

on_both_backends!(app: users_change_and_the_last_admin_stays);
