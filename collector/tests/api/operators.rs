//! Operator accounts and sessions: login, bearer and cookie, CSRF, logout and password-change
//! revocation, disabled accounts, replicas sharing the signing key, the `user` commands and
//! the first-start bootstrap (no default credentials).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use greenops_collector::store::Role;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, fresh_database_of, spawn_app_with, test_settings, wait_for};

async fn add_user(app: &TestApp, name: &str, password: &str, role: Role) {
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    let hash = greenops_collector::auth::hash_password(password).unwrap();
    store.create_user(name, &hash, role, 0).await.unwrap();
    store.close().await;
}

async fn login(app: &TestApp, name: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": name, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, token: Option<&str>, cookie: Option<&str>) -> u16 {
    let mut req = app.client.get(app.url("/api/v1/auth/me"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn sessions_live_and_die_as_they_should(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let app = spawn_app_with(test_settings(&url)).await;
    add_user(&app, "alice", "correct horse battery", Role::Admin).await;
    add_user(&app, "victor", "viewer password 1", Role::Viewer).await;

    assert_eq!(login(&app, "alice", "wrong password!!").await.status(), 401);
    assert_eq!(
        login(&app, "mallory", "correct horse battery")
            .await
            .status(),
        401
    );
    let res = login(&app, "alice", "correct horse battery").await;
    assert_eq!(res.status(), 200);
    let cookie_header = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"),
        "{cookie_header}"
    );
    let body: Value = res.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["user"], json!({"username": "alice", "role": "admin"}));
    assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
    let cookie = cookie_header.split(';').next().unwrap().to_string();

    assert_eq!(me(&app, Some(&token), None).await, 200);
    assert_eq!(me(&app, None, Some(&cookie)).await, 200);
    assert_eq!(me(&app, None, None).await, 401);
    assert_eq!(me(&app, Some("garbage"), None).await, 401);

    // A second replica on the same database accepts the same session.
    let replica = spawn_app_with(test_settings(&url)).await;
    assert_eq!(me(&replica, Some(&token), None).await, 200);

    // Cookie-authenticated writes need the CSRF header; bearer requests do not.
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .client
        .post(app.url("/api/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("x-greenops-csrf", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    // Logout ends every session of the user, on every replica.
    assert_eq!(me(&app, Some(&token), None).await, 401);
    assert_eq!(me(&replica, None, Some(&cookie)).await, 401);

    // A password change ends sessions too; a disabled account cannot sign in.
    let token: String = login(&app, "victor", "viewer password 1")
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .into();
    let store = greenops_collector::open_store(&test_settings(&url))
        .await
        .unwrap();
    let hash = greenops_collector::auth::hash_password("another password 2").unwrap();
    assert!(store.set_password("victor", &hash, 1).await.unwrap());
    assert_eq!(me(&app, Some(&token), None).await, 401);
    assert_eq!(
        login(&app, "victor", "another password 2").await.status(),
        200
    );
    assert!(store.disable_user("victor", 2).await.unwrap());
    assert_eq!(
        login(&app, "victor", "another password 2").await.status(),
        401
    );
    store.close().await;
    replica.stop().await;
    app.stop().await;

    // Sessions survive a restart (the signing key is kept in the database).
    let app = spawn_app_with(test_settings(&url)).await;
    let token: String = login(&app, "alice", "correct horse battery")
        .await
        .json::<Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .into();
    app.stop().await;
    let app = spawn_app_with(test_settings(&url)).await;
    assert_eq!(me(&app, Some(&token), None).await, 200);
    app.stop().await;
}

on_both_backends!(sessions_live_and_die_as_they_should);

fn greenops() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenops"));
    for (k, _) in std::env::vars() {
        if k.starts_with("GREENOPS_") || k == "DATABASE_URL" {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn user_commands_manage_accounts() {
    let dir =
        std::env::temp_dir().join(format!("greenops-users-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/greenops.db", dir.display());
    let mut child = greenops()
        .args([
            "user",
            "add",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            "--database-url",
            &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse battery\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = greenops()
        .args(["user", "add", "bob", "--database-url", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("created viewer 'bob'"),
        "{text}"
    );
    assert_eq!(
        text.lines().last().unwrap().len(),
        24,
        "a generated password, shown once"
    );
    let out = greenops()
        .args(["user", "add", "bob", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("already exists")
    );
    let out = greenops()
        .args([
            "user",
            "add",
            "eve",
            "--password-stdin",
            "--database-url",
            &url,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 12"));
    let out = greenops()
        .args(["user", "disable", "bob", "--database-url", &url])
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = greenops()
        .args(["user", "list", "--database-url", &url])
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        list.contains("alice")
            && list.contains("admin")
            && list.contains("bob")
            && list.contains("disabled"),
        "{list}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `serve` on an empty database: an admin from GREENOPS_ADMIN_PASSWORD, or a generated
/// password printed once — never a default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_creates_the_admin_without_default_credentials() {
    for from_env in [true, false] {
        let dir =
            std::env::temp_dir().join(format!("greenops-boot-{}", uuid::Uuid::new_v4().simple()));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = greenops();
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("GREENOPS_DATA_DIR", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if from_env {
            cmd.env("GREENOPS_ADMIN_PASSWORD", "bootstrap password 1");
        }
        let mut child = cmd.spawn().unwrap();
        let client = reqwest::Client::new();
        wait_for(
            "the collector to answer",
            Duration::from_secs(20),
            async || {
                client
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok()
            },
        )
        .await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        child.wait().unwrap();
        let password = if from_env {
            assert!(!stderr.contains("one-time password"));
            "bootstrap password 1".to_string()
        } else {
            let line = stderr
                .lines()
                .skip_while(|l| !l.contains("one-time password"))
                .nth(2)
                .unwrap();
            line.trim().to_string()
        };
        // Sign in with it on a fresh collector process over the same data directory.
        let url = format!("sqlite://{}/greenops.db", dir.display());
        let app = spawn_app_with(test_settings(&url)).await;
        assert_eq!(
            login(&app, "admin", &password).await.status(),
            200,
            "{stderr}"
        );
        assert_eq!(login(&app, "admin", "admin").await.status(), 401);
        app.stop().await;
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// Five failures per username or client IP in the window, counted in the database so the
/// limit holds across replicas; `X-Forwarded-For` only from trusted proxies.
async fn login_limit_holds_across_replicas(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let a = spawn_app_with(settings.clone()).await;
    let b = spawn_app_with(settings).await;
    add_user(&a, "alice", "correct horse battery", Role::Admin).await;
    let attempt = |app: &TestApp, user: &str, password: &str, from: &str| {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", from)
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    for i in 0..5 {
        let app = if i % 2 == 0 { &a } else { &b };
        assert_eq!(
            attempt(app, "alice", "wrong password!", "203.0.113.9")
                .await
                .unwrap()
                .status(),
            401
        );
    }
    // Blocked on both replicas, even with the right password.
    for app in [&a, &b] {
        let res = attempt(app, "alice", "correct horse battery", "198.51.100.7")
            .await
            .unwrap();
        assert_eq!(res.status(), 429);
        let retry: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
    }
    // The attacker's address is blocked for other accounts too; other clients are not.
    add_user(&a, "bob", "another password 1", Role::Viewer).await;
    assert_eq!(
        attempt(&b, "bob", "another password 1", "203.0.113.9")
            .await
            .unwrap()
            .status(),
        429
    );
    assert_eq!(
        attempt(&b, "bob", "another password 1", "198.51.100.7")
            .await
            .unwrap()
            .status(),
        200
    );

    // Everything is in the audit log.
    let store = greenops_collector::open_store(&test_settings(&url))
        .await
        .unwrap();
    let log = store.audit_log(100).await.unwrap();
    assert_eq!(
        log.iter()
            .filter(|e| e.action == "login_failed" && e.actor == "alice")
            .count(),
        5
    );
    assert!(
        log.iter()
            .any(|e| e.action == "login" && e.actor == "bob" && e.details.contains("198.51.100.7"))
    );
    store.close().await;
    a.stop().await;
    b.stop().await;

    // Without trusting the proxy, X-Forwarded-For is ignored: the peer address counts.
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let app = spawn_app_with(test_settings(&url)).await;
    add_user(&app, "carol", "correct horse battery", Role::Admin).await;
    for i in 0..5 {
        let from = format!("192.0.2.{i}");
        assert_eq!(
            attempt(&app, "carol", "wrong password!", &from)
                .await
                .unwrap()
                .status(),
            401
        );
    }
    assert_eq!(
        attempt(&app, "carol", "correct horse battery", "192.0.2.200")
            .await
            .unwrap()
            .status(),
        429
    );
    app.stop().await;
}

on_both_backends!(login_limit_holds_across_replicas);

/// The session cookie is `Secure` when a trusted TLS-terminating proxy says the browser used
/// HTTPS, and only then.
async fn cookie_is_secure_behind_a_tls_proxy(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.auth.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let trusting = spawn_app_with(settings).await;
    let direct = spawn_app_with(test_settings(&url)).await;
    add_user(&trusting, "dora", "correct horse battery", Role::Admin).await;
    for (app, secure) in [(&trusting, true), (&direct, false)] {
        let res = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-proto", "https")
            .json(&json!({"username": "dora", "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let cookie = res.headers()["set-cookie"].to_str().unwrap().to_string();
        assert_eq!(cookie.ends_with("; Secure"), secure, "{cookie}");
    }
    direct.stop().await;
    trusting.stop().await;
}

on_both_backends!(cookie_is_secure_behind_a_tls_proxy);

#[test]
fn client_ip_trusts_only_configured_proxies() {
    use greenops_collector::http::auth::client_ip;
    let mut headers = axum::http::HeaderMap::new();
    headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.2".parse().unwrap());
    let peer: std::net::IpAddr = "10.0.0.1".parse().unwrap();
    let proxies: Vec<std::net::IpAddr> =
        vec!["10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap()];
    assert_eq!(
        client_ip(peer, &headers, &proxies).to_string(),
        "198.51.100.7"
    );
    assert_eq!(client_ip(peer, &headers, &[]).to_string(), "10.0.0.1");
    assert_eq!(
        client_ip(peer, &axum::http::HeaderMap::new(), &proxies).to_string(),
        "10.0.0.1"
    );
}

async fn users_and_audit_api_are_admin_only(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let app = spawn_app_with(test_settings(&url)).await;
    add_user(&app, "root", "correct horse battery", Role::Admin).await;
    add_user(&app, "watcher", "viewer password 1", Role::Viewer).await;
    let token = |name: &'static str, pw: &'static str| {
        let app = &app;
        async move {
            login(app, name, pw).await.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let admin = token("root", "correct horse battery").await;
    let viewer = token("watcher", "viewer password 1").await;
    let create = |t: String, body: Value| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/users"))
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let res = create(
        viewer.clone(),
        json!({"username": "x", "password": "a long password!", "role": "admin"}),
    )
    .await;
    assert_eq!(res.status(), 403, "viewers never write");
    let res = create(
        admin.clone(),
        json!({"username": "newbie", "password": "a long password!", "role": "viewer"}),
    )
    .await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"username": "newbie", "role": "viewer"})
    );
    let res = create(
        admin.clone(),
        json!({"username": "newbie", "password": "a long password!", "role": "viewer"}),
    )
    .await;
    assert_eq!(res.status(), 409);
    for (body, field) in [
        (
            json!({"username": "bad name", "password": "a long password!", "role": "viewer"}),
            "username",
        ),
        (
            json!({"username": "ok", "password": "short", "role": "viewer"}),
            "password",
        ),
        (
            json!({"username": "ok", "password": "a long password!", "role": "superuser"}),
            "role",
        ),
    ] {
        let (status, _, named) = crate::helpers::error_of(create(admin.clone(), body).await).await;
        assert_eq!((status, named.as_deref()), (422, Some(field)));
    }
    assert_eq!(
        login(&app, "newbie", "a long password!").await.status(),
        200
    );

    let list = |t: String, path: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url(path))
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(list(viewer.clone(), "/api/v1/users").await.status(), 403);
    let users: Value = list(admin.clone(), "/api/v1/users")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(users["total"], 3);
    assert!(
        !users.to_string().contains("argon2"),
        "hashes never leave the server"
    );
    assert_eq!(list(viewer, "/api/v1/audit").await.status(), 403);
    let audit: Value = list(admin.clone(), "/api/v1/audit?limit=5")
        .await
        .json()
        .await
        .unwrap();
    let first = &audit["items"][0];
    assert_eq!(
        (first["action"].as_str(), first["actor"].as_str()),
        (Some("login"), Some("newbie"))
    );
    assert!(
        audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "user_created"
                && e["target"] == "newbie"
                && e["actor"] == "root")
    );
    let (status, _, named) =
        crate::helpers::error_of(list(admin, "/api/v1/audit?limit=lots").await).await;
    assert_eq!((status, named.as_deref()), (422, Some("limit")));
    app.stop().await;
}

on_both_backends!(users_and_audit_api_are_admin_only);
