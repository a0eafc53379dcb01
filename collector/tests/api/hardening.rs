//! Hostile load, as an attacker would send it: concurrent sign-ins across replicas, floods of
//! sign-ins, slow and idle connections, oversized and odd input, log injection — and the one
//! error shape every refusal must have.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Db, TestApp, fresh_database_of, spawn_app_with, test_settings};
use greenops_collector::store::Role;

/// The JSON error envelope of an answer, asserting its shape.
async fn envelope(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

/// Writes `request` on a fresh connection and reads the whole answer.
async fn raw(app: &TestApp, request: &[u8]) -> String {
    let address = app.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// 80 wrong passwords for one account at once, through two collectors on one database: no
/// more than the limit are ever checked, however they arrive.
async fn concurrent_logins_never_exceed_the_limit(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    a.operator("alice", Role::Admin).await;
    let attempts = (0..80).map(|i| {
        let app = if i % 2 == 0 { &a } else { &b };
        app.client
            .post(app.url("/api/v1/auth/login"))
            // Every attempt from its own address: only the per-user limit applies.
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .json(&json!({"username": "alice", "password": "wrong password!"}))
            .send()
    });
    let mut answers: BTreeMap<u16, usize> = BTreeMap::new();
    for res in futures_util::future::join_all(attempts).await {
        *answers.entry(res.unwrap().status().as_u16()).or_default() += 1;
    }
    assert_eq!(answers.get(&401), Some(&5), "{answers:?}");
    assert_eq!(answers.values().sum::<usize>(), 80);
    assert!(
        answers.keys().all(|s| [401, 429, 503].contains(s)),
        "{answers:?}"
    );
    let store = greenops_collector::open_store(&test_settings(&url))
        .await
        .unwrap();
    let checked = store
        .audit_log(1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.action == "login_failed")
        .count();
    assert_eq!(checked, 5, "password checks recorded");
    store.close().await;
    a.stop().await;
    b.stop().await;
}

/// A flood of sign-ins from many addresses is bounded by the password pool: what does not fit
/// in its queue gets 503 with `Retry-After` at once, and /healthz keeps answering.
async fn a_login_flood_is_refused_not_queued(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    settings.auth.password_workers = 1;
    settings.auth.password_queue = 2;
    let app = spawn_app_with(settings).await;
    let attempts = (0..60).map(|i| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({"username": format!("nobody{i}"), "password": "wrong password!"}))
            .send()
    });
    let flood = futures_util::future::join_all(attempts);
    let probe = async {
        let started = Instant::now();
        let res = app.client.get(app.url("/healthz")).send().await.unwrap();
        (res.status().as_u16(), started.elapsed())
    };
    let (answers, (health, took)) = tokio::join!(flood, probe);
    assert_eq!(health, 200);
    assert!(took < Duration::from_secs(2), "/healthz took {took:?}");
    let mut busy = 0;
    for res in answers {
        let res = res.unwrap();
        match res.status().as_u16() {
            401 => {}
            503 => {
                busy += 1;
                assert_eq!(res.headers()["retry-after"], "1");
                let body = envelope(res, 503).await;
                assert_eq!(body["error"]["code"], "busy");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        busy > 0,
        "a pool of one thread and a queue of two refused nothing"
    );
    app.stop().await;
}

/// A client sending one header line at a time, and an idle keep-alive connection, are cut
/// off after the header-read timeout; a declared body over the limit gets 413 at once.
async fn slow_and_idle_clients_are_cut_off(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.http.header_read_timeout_seconds = 1;
    settings.http.request_timeout_seconds = 2;
    let app = spawn_app_with(settings).await;
    let address = app.base.trim_start_matches("http://").to_string();

    // Slow headers: one line every 300 ms never completes the head.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut closed = false;
    for i in 0..40 {
        // A dribbling client: the pause between header lines is what is tested.
        tokio::time::sleep(Duration::from_millis(300)).await;
        if slow
            .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a dribbling client kept its connection");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Idle keep-alive: one request, then silence; the server closes.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "an idle keep-alive connection was kept open");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A declared body over 1 MiB: 413 before a byte of it is sent.
    let answer = raw(
        &app,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 5000000\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"payload_too_large\""), "{answer}");

    // A slow body still meets the request timeout: 503 in the envelope, with Retry-After.
    let mut dribble = TcpStream::connect(&address).await.unwrap();
    dribble
        .write_all(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\
              Connection: close\r\n\r\n{\"user",
        )
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(6), dribble.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "a slow body was waited for forever");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_lowercase().contains("retry-after: 5"), "{answer}");
    assert!(answer.contains("\"unavailable\""), "{answer}");
    app.stop().await;
}

/// At most `http.max_connections` connections are served; the next one waits until one
/// closes (here: an idle one cut off by the header timeout) and is then served.
async fn connections_are_capped(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.http.header_read_timeout_seconds = 1;
    settings.http.max_connections = 2;
    let app = spawn_app_with(settings).await;
    let address = app.base.trim_start_matches("http://").to_string();
    let _idle_a = TcpStream::connect(&address).await.unwrap();
    let _idle_b = TcpStream::connect(&address).await.unwrap();
    // No wait needed here: the kernel queues connections in order and the server accepts them
    // in that order, so the two idle ones take both places before the third is accepted.
    let started = Instant::now();
    let answer = raw(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited >= Duration::from_millis(500),
        "a third connection was served at once ({waited:?})"
    );
    app.stop().await;
}

/// NUL bytes, control characters and giant strings from the network are refused with a 4xx
/// in the envelope before they reach any store, on both backends.
async fn odd_bytes_get_clear_refusals(app: TestApp) {
    let token = app.operator("root", Role::Admin).await;
    let get = |path: &str| app.client.get(app.url(path)).bearer_auth(&token).send();
    for (path, status) in [
        ("/api/v1/machines?q=%00", 422),
        ("/api/v1/machines?site=%00", 422),
        ("/api/v1/machines?department=a%1B%5B31m", 422),
        ("/api/v1/machines?page=1&page=2", 422),
        ("/api/v1/machines?per_page=nope", 422),
        ("/api/v1/machines/%00", 404),
        ("/api/v1/machines/a%00b/history", 404),
        ("/api/v1/reports/energy.csv?from=%00", 422),
    ] {
        envelope(get(path).await.unwrap(), status).await;
    }
    let long = "x".repeat(300);
    envelope(
        get(&format!("/api/v1/machines?q={long}")).await.unwrap(),
        422,
    )
    .await;
    envelope(
        get(&format!("/api/v1/machines/{}", "y".repeat(200)))
            .await
            .unwrap(),
        404,
    )
    .await;
    let patch = app
        .call(
            &token,
            reqwest::Method::PATCH,
            "/api/v1/users/a%00b",
            Some(json!({"role": "viewer"})),
        )
        .await;
    envelope(patch, 404).await;
    let nul = app
        .call(
            &token,
            reqwest::Method::POST,
            "/api/v1/sites",
            Some(
                json!({"name": "a\u{0}b", "price_per_kwh": "1", "carbon_intensity_g_per_kwh": "1"}),
            ),
        )
        .await;
    let body = envelope(nul, 422).await;
    assert!(body["error"]["fields"]["name"].is_string(), "{body}");
    for username in ["a\u{0}", "bob\nINFO forged", &"u".repeat(100_000)] {
        let res = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"username": username, "password": "whatever it is"}))
            .send()
            .await
            .unwrap();
        envelope(res, 422).await;
    }
    let huge = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "u".repeat(2_000_000), "password": "x"}))
        .send()
        .await
        .unwrap();
    envelope(huge, 413).await;
    app.stop().await;
}

/// Every refusal — the framework's own included — is the JSON envelope.
async fn every_refusal_has_the_error_envelope(app: TestApp) {
    let token = app.operator("root", Role::Admin).await;
    let method = app.client.put(app.url("/healthz")).send().await.unwrap();
    envelope(method, 405).await;
    envelope(app.client.get(app.url("/nope")).send().await.unwrap(), 404).await;
    let mut many = app.client.get(app.url("/healthz"));
    for i in 0..120 {
        many = many.header(format!("x-h-{i}"), "1");
    }
    envelope(many.send().await.unwrap(), 431).await;
    let big_header = app
        .client
        .get(app.url("/healthz"))
        .header("x-big", "b".repeat(20_000))
        .send()
        .await
        .unwrap();
    envelope(big_header, 431).await;
    let not_an_id = app
        .call(&token, reqwest::Method::DELETE, "/api/v1/sites/nope", None)
        .await;
    envelope(not_an_id, 404).await;
    let null_role = app
        .call(
            &token,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({"username": "carol", "password": "a long password!", "role": null})),
        )
        .await;
    let body = envelope(null_role, 422).await;
    assert!(body["error"]["fields"]["role"].is_string(), "{body}");
    let malformed = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    envelope(malformed, 400).await;
    let anonymous = app
        .client
        .get(app.url("/api/v1/stats"))
        .send()
        .await
        .unwrap();
    envelope(anonymous, 401).await;
    app.stop().await;
}

/// Values are checked against their registries and written plainly.
async fn validation_is_strict(app: TestApp) {
    let token = app.operator("admin", Role::Admin).await;
    let site = |body: Value| app.call(&token, reqwest::Method::POST, "/api/v1/sites", Some(body));
    for (body, field) in [
        (
            json!({"name": "a", "currency": "ABC", "price_per_kwh": "1", "carbon_intensity_g_per_kwh": "1"}),
            "currency",
        ),
        (
            json!({"name": "a", "timezone": "Mars/Olympus_Mons", "price_per_kwh": "1", "carbon_intensity_g_per_kwh": "1"}),
            "timezone",
        ),
        (
            json!({"name": "a", "price_per_kwh": "1_000", "carbon_intensity_g_per_kwh": "1"}),
            "price_per_kwh",
        ),
        (
            json!({"name": "a", "price_per_kwh": " 0.1 ", "carbon_intensity_g_per_kwh": "1"}),
            "price_per_kwh",
        ),
        (
            json!({"name": "a", "price_per_kwh": 0.1, "carbon_intensity_g_per_kwh": "1"}),
            "price_per_kwh",
        ),
        (
            json!({"name": "a", "price_per_kwh": "1e-3", "carbon_intensity_g_per_kwh": "1"}),
            "price_per_kwh",
        ),
    ] {
        let body = envelope(site(body).await, 422).await;
        assert!(body["error"]["fields"][field].is_string(), "{body}");
    }
    let ok = site(
        json!({"name": "tokyo", "currency": "JPY", "timezone": "Asia/Tokyo",
        "price_per_kwh": "31", "carbon_intensity_g_per_kwh": 450}),
    )
    .await;
    assert_eq!(ok.status(), 201);
    // Usernames are unique regardless of case; sign-in ignores case too.
    let dup = app
        .call(
            &token,
            reqwest::Method::POST,
            "/api/v1/users",
            Some(json!({"username": "ADMIN", "password": "a long password!", "role": "viewer"})),
        )
        .await;
    envelope(dup, 409).await;
    let login = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": "Admin", "password": "a long password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    // "bearer" in lower case is the same scheme (RFC 7235).
    let lower = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", format!("bearer {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), 200);
    // MAC addresses must be MAC addresses.
    let enrollment = app.enrollment_token("default", "").await;
    let mut body = crate::helpers::enroll_body(&enrollment, "machine-key-hardening-01");
    body["mac_addresses"] = json!(["not a mac"]);
    let res = app
        .client
        .post(app.url("/api/v1/agents/enroll"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let refused = envelope(res, 422).await;
    assert!(
        refused["error"]["fields"]["mac_addresses[0]"].is_string(),
        "{refused}"
    );
    body["mac_addresses"] = json!(["AA-BB-CC-DD-EE-0F"]);
    let res = app
        .client
        .post(app.url("/api/v1/agents/enroll"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    app.stop().await;
}

on_both_backends!(
    concurrent_logins_never_exceed_the_limit,
    a_login_flood_is_refused_not_queued,
    slow_and_idle_clients_are_cut_off,
    connections_are_capped
);
on_both_backends!(app: odd_bytes_get_clear_refusals, every_refusal_has_the_error_envelope, validation_is_strict);
