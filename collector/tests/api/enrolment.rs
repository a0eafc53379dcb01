//! `POST /api/v1/agents/enroll`.

use greenops_collector::secrets::{ENROLLMENT_TOKEN_PREFIX, TokenHash, generate_token};
use greenops_collector::store::NewEnrollmentToken;
use serde_json::json;

use crate::helpers::{
    Db, TestApp, enroll_body, error_of, fresh_database_of, hb, past, spawn_app_with, test_settings,
    wait_until,
};

async fn enrolment_returns_a_credential_and_the_defaults(app: TestApp) {
    let token = app.enrollment_token("default", "finance").await;
    let enrolled = app.enroll(&token, "machine-key-0000000001").await;
    assert_eq!(enrolled.machine_id.len(), 32);
    assert!(enrolled.agent_token.starts_with("gok_agent_"));
    assert!(enrolled.agent_token.len() >= 43 + 10);
    assert_eq!(enrolled.heartbeat_interval_seconds, 60);
    assert_eq!(enrolled.idle_threshold_seconds, 300);

    // The token's site and department are attached to the machine.
    let text = app.metrics().await;
    let info = text
        .lines()
        .find(|l| l.starts_with("greenops_machine_info{") && l.contains(&enrolled.machine_id))
        .expect("machine info series");
    assert!(info.contains("department=\"finance\""), "{info}");
    assert!(info.contains("site=\"default\""), "{info}");
    assert!(info.contains("hostname=\"pc-042.example.org\""), "{info}");
    app.stop().await;
}

async fn enrolment_needs_a_valid_token(app: TestApp) {
    let mut body = enroll_body("x", "machine-key-0000000002");
    body.as_object_mut().unwrap().remove("enrollment_token");
    let (status, code, _) = error_of(app.post_enroll(&body).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));

    let (status, _, _) = error_of(
        app.post_enroll(&enroll_body("gok_enroll_wrong", "machine-key-0000000002"))
            .await,
    )
    .await;
    assert_eq!(status, 401);
    app.stop().await;
}

async fn expired_and_used_up_tokens_are_refused(app: TestApp) {
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    let now = greenops_collector::clock::now_ms();
    let once = generate_token(ENROLLMENT_TOKEN_PREFIX);
    let expired = generate_token(ENROLLMENT_TOKEN_PREFIX);
    for (token, expires, uses) in [(&once, None, Some(1)), (&expired, Some(now - 1000), None)] {
        store
            .create_enrollment_token(&NewEnrollmentToken {
                token_hash: TokenHash::of(token),
                site: "default".into(),
                department: String::new(),
                expires_at_ms: expires,
                max_uses: uses,
                created_at_ms: now - 5000,
            })
            .await
            .unwrap();
    }
    app.enroll(&once, "machine-key-0000000003").await;
    let res = app
        .post_enroll(&enroll_body(&once, "machine-key-0000000004"))
        .await;
    assert_eq!(res.status(), 401);
    let res = app
        .post_enroll(&enroll_body(&expired, "machine-key-0000000005"))
        .await;
    assert_eq!(res.status(), 401);
    // Unknown sites are refused when creating tokens.
    let err = store
        .create_enrollment_token(&NewEnrollmentToken {
            token_hash: TokenHash::of("x"),
            site: "atlantis".into(),
            department: String::new(),
            expires_at_ms: None,
            max_uses: None,
            created_at_ms: now,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("atlantis"), "{err}");
    store.close().await;
    app.stop().await;
}

async fn re_enrolling_rotates_the_credential(app: TestApp) {
    let token = app.enrollment_token("default", "").await;
    let first = app.enroll(&token, "machine-key-0000000006").await;
    app.send(&first.agent_token, &hb(1, past(10), Some(1.0)))
        .await;
    let second = app.enroll(&token, "machine-key-0000000006").await;
    assert_eq!(first.machine_id, second.machine_id);
    assert_ne!(first.agent_token, second.agent_token);

    let (status, _, _) = error_of(
        app.post_heartbeats(&first.agent_token, &hb(2, past(9), Some(1.0)))
            .await,
    )
    .await;
    assert_eq!(status, 401, "the old credential must stop working");
    // A new credential starts a new seq space (a restored VM snapshot's data is not lost):
    // seq 1 is accepted; the time it covers was already counted, so it adds nothing.
    let answer = app
        .send(&second.agent_token, &hb(1, past(10), Some(1.0)))
        .await;
    assert_eq!(answer["accepted"], 1);
    let answer = app
        .send(&second.agent_token, &hb(2, past(9), Some(1.0)))
        .await;
    assert_eq!(answer["accepted"], 1);
    let answer = app
        .send(&second.agent_token, &hb(2, past(9), Some(1.0)))
        .await;
    assert_eq!(answer["duplicates"], 1);
    assert_eq!(app.totals(&first.machine_id).await.observed_ms, 60_000);
    app.stop().await;
}

async fn open_enrolment_is_off_unless_turned_on(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.enrollment.open = true;
    let app = spawn_app_with(settings).await;
    let mut body = enroll_body("", "machine-key-0000000007");
    body.as_object_mut().unwrap().remove("enrollment_token");
    let res = app.post_enroll(&body).await;
    assert_eq!(res.status(), 201);
    app.stop().await;
}

async fn bad_enrolment_bodies_get_clear_errors(app: TestApp) {
    let token = app.enrollment_token("default", "").await;
    let res = app
        .client
        .post(app.url("/api/v1/agents/enroll"))
        .header("content-type", "application/json")
        .body("{\"enrollment_token\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(res).await.0, 400);

    let cases = [
        (json!({"machine_key": "short"}), "machine_key"),
        (json!({"hostname": "a\u{0007}b"}), "hostname"),
        (json!({"hostname": 42}), "hostname"),
        (json!({"mac_addresses": "aa:bb"}), "mac_addresses"),
    ];
    for (patch, field) in cases {
        let mut body = enroll_body(&token, "machine-key-0000000008");
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, code, named) = error_of(app.post_enroll(&body).await).await;
        assert_eq!((status, code.as_str()), (422, "invalid_field"), "{field}");
        assert_eq!(named.as_deref(), Some(field));
    }
    // Nothing was enrolled by any of that.
    assert!(!app.metrics().await.contains("greenops_machine_info{"));
    app.stop().await;
}

async fn revocation_reaches_a_warm_credential_cache_within_seconds(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.ingest.credential_cache_seconds = 600;
    settings.ingest.revocation_poll_seconds = 1;
    let app = spawn_app_with(settings).await;
    let token = app.enrollment_token("default", "").await;
    let first = app.enroll(&token, "machine-key-0000000042").await;
    app.send(&first.agent_token, &hb(1, past(10), Some(1.0)))
        .await;
    // Rotating the credential revokes the cached one.
    app.enroll(&token, "machine-key-0000000042").await;
    let started = std::time::Instant::now();
    let refused = wait_until(std::time::Duration::from_secs(5), async || {
        let res = app
            .post_heartbeats(&first.agent_token, &hb(2, past(9), Some(1.0)))
            .await;
        res.status() == 401
    })
    .await;
    assert!(
        refused,
        "the revoked credential still works after {:?}",
        started.elapsed()
    );
    app.stop().await;
}

on_both_backends!(
    revocation_reaches_a_warm_credential_cache_within_seconds,
    open_enrolment_is_off_unless_turned_on
);
on_both_backends!(app: enrolment_returns_a_credential_and_the_defaults, enrolment_needs_a_valid_token, expired_and_used_up_tokens_are_refused, re_enrolling_rotates_the_credential, bad_enrolment_bodies_get_clear_errors);
