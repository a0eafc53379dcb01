//! The admin page's security headers and no CORS (http/page.rs).

use reqwest::Method;

use crate::helpers::TestApp;

async fn security_headers_and_no_cors(app: TestApp) {
    for path in ["/", "/assets/app.js", "/api/v1/stats", "/healthz", "/nope"] {
        let res = app
            .client
            .get(app.url(path))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        let h = res.headers();
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'self'"),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.get("access-control-allow-origin").is_none(), "{path}");
    }
    let res = app
        .client
        .request(Method::OPTIONS, app.url("/api/v1/sites"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    let res = app
        .client
        .get(app.url("/api/v1/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("/assets/app.js") && !html.contains("http://") && !html.contains("https://"),
        "no CDN"
    );
    app.stop().await;
}

on_both_backends!(app: security_headers_and_no_cors);
