//! Authorization of the admin API: every write refused to viewers and to cookie requests
//! without the CSRF header (http/auth.rs, http/extract.rs).

use greenops_collector::store::Role;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{TestApp, audit_len, call, error_of, ok_json, writes};

async fn viewers_and_forged_requests_change_nothing(app: TestApp) {
    let _admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    // A cookie session of an admin, used without the CSRF header (what a forged cross-site
    // form would send).
    let res = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": "a long password!"}))
        .send()
        .await
        .unwrap();
    let cookie = res.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let audit_before = audit_len(&app).await;
    for (method, path, body) in writes() {
        let res = call(&app, &viewer, method.clone(), path, body.clone()).await;
        assert_eq!(res.status(), 403, "viewer {method} {path}");
        let mut req = app
            .client
            .request(method.clone(), app.url(path))
            .header("cookie", &cookie);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let res = req.send().await.unwrap();
        let (status, code, _) = error_of(res).await;
        assert_eq!(
            (status, code.as_str()),
            (403, "forbidden"),
            "no CSRF {method} {path}"
        );
        let mut req = app.client.request(method.clone(), app.url(path));
        if let Some(b) = &body {
            req = req.json(b);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            401,
            "anonymous {method} {path}"
        );
    }
    // Nothing changed: no audit entry, no new site, the default site intact.
    assert_eq!(audit_len(&app).await, audit_before);
    let admin = app.operator("admin2", Role::Admin).await;
    let sites = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/sites", None).await,
        200,
    )
    .await;
    assert_eq!(sites["total"], 1);
    assert_eq!(sites["items"][0]["price_per_kwh"], "0.12");
    // Viewers may read.
    for path in [
        "/api/v1/sites",
        "/api/v1/power-profiles",
        "/api/v1/stats",
        "/api/v1/settings",
        "/api/v1/machines",
    ] {
        assert_eq!(
            call(&app, &viewer, Method::GET, path, None).await.status(),
            200,
            "{path}"
        );
    }
    // …but not the admin-only lists.
    for path in [
        "/api/v1/users",
        "/api/v1/audit",
        "/api/v1/enrollment-tokens",
        "/api/v1/api-tokens",
    ] {
        assert_eq!(
            call(&app, &viewer, Method::GET, path, None).await.status(),
            403,
            "{path}"
        );
    }
    app.stop().await;
}

on_both_backends!(app: viewers_and_forged_requests_change_nothing);
