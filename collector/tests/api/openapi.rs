//! The OpenAPI document (http/openapi.rs).

use serde_json::Value;

use crate::helpers::{TestApp, ok_json, writes};

async fn openapi_documents_every_route(app: TestApp) {
    let doc = ok_json(
        app.client
            .get(app.url("/api/v1/openapi.json"))
            .send()
            .await
            .unwrap(),
        200,
    )
    .await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut expected: Vec<(String, String)> = writes()
        .into_iter()
        .map(|(m, p, _)| (m.as_str().to_lowercase(), p.to_string()))
        .collect();
    for path in [
        "/api/v1/machines",
        "/api/v1/machines/{id}",
        "/api/v1/machines/{id}/history",
        "/api/v1/stats",
        "/api/v1/sites",
        "/api/v1/power-profiles",
        "/api/v1/users",
        "/api/v1/enrollment-tokens",
        "/api/v1/api-tokens",
        "/api/v1/settings",
        "/api/v1/audit",
        "/api/v1/reports/energy.csv",
        "/api/v1/openapi.json",
        "/api/v1/auth/me",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
    ] {
        expected.push(("get".into(), path.into()));
    }
    for path in [
        "/api/v1/auth/login",
        "/api/v1/auth/logout",
        "/api/v1/agents/enroll",
        "/api/v1/heartbeats",
    ] {
        expected.push(("post".into(), path.into()));
    }
    let templated = |p: &str| {
        p.replace("/users/admin", "/users/{username}")
            .replace("/users/viewer", "/users/{username}")
            .replace("/nope", "/{id}")
            .replace("/1", "/{id}")
    };
    for (method, path) in &expected {
        let path = templated(path);
        assert!(
            paths.get(&path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is not documented"
        );
    }
    // And the other way round: every documented operation is routed (never the 404 fallback).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace("{id}", "1").replace("{username}", "nobody");
            let res = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(
                body["error"]["message"] != "no such route",
                "{method} {path} is documented but not routed"
            );
            assert_ne!(status, 405, "{method} {path}");
        }
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

on_both_backends!(app: openapi_documents_every_route);
