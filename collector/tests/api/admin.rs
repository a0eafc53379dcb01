//! The admin API beyond sessions: every write refused to viewers and to cookie requests
//! without the CSRF header; sites, power profiles and machine placement; history, stats and
//! the CSV report agreeing with the store and `/metrics`; enrollment and API tokens; live
//! settings shared by replicas; user changes; the OpenAPI document; security headers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{
    Db, TestApp, dec, error_of, fresh_database_of, hb, metric, past, spawn_app_on, spawn_app_with,
    test_settings,
};

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    app.call(token, method, path, body).await
}

async fn ok_json(res: reqwest::Response, status: u16) -> Value {
    let got = res.status().as_u16();
    let text = res.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Every state-changing route, with a body that would be valid for an admin.
fn writes() -> Vec<(Method, &'static str, Option<Value>)> {
    vec![
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"username": "zed", "password": "a long password!", "role": "viewer"})),
        ),
        (
            Method::PATCH,
            "/api/v1/users/admin",
            Some(json!({"role": "admin"})),
        ),
        (Method::DELETE, "/api/v1/users/viewer", None),
        (
            Method::POST,
            "/api/v1/sites",
            Some(
                json!({"name": "x", "currency": "EUR", "price_per_kwh": "0.3", "carbon_intensity_g_per_kwh": 50}),
            ),
        ),
        (
            Method::PATCH,
            "/api/v1/sites/1",
            Some(json!({"price_per_kwh": "0.2"})),
        ),
        (Method::DELETE, "/api/v1/sites/1", None),
        (
            Method::POST,
            "/api/v1/power-profiles",
            Some(json!({"name": "laptop", "idle_watts": 10, "active_watts": 30})),
        ),
        (
            Method::PATCH,
            "/api/v1/power-profiles/1",
            Some(json!({"idle_watts": 60})),
        ),
        (Method::DELETE, "/api/v1/power-profiles/1", None),
        (
            Method::PATCH,
            "/api/v1/machines/nope",
            Some(json!({"department": "x"})),
        ),
        (Method::DELETE, "/api/v1/machines/nope", None),
        (Method::POST, "/api/v1/enrollment-tokens", Some(json!({}))),
        (Method::DELETE, "/api/v1/enrollment-tokens/1", None),
        (
            Method::POST,
            "/api/v1/api-tokens",
            Some(json!({"name": "ci"})),
        ),
        (Method::DELETE, "/api/v1/api-tokens/1", None),
        (
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"idle_threshold_seconds": 600})),
        ),
    ]
}

async fn viewers_and_forged_requests_change_nothing(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
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

async fn audit_len(app: &TestApp) -> usize {
    let store = greenops_collector::open_store(&test_settings(&app.db_url))
        .await
        .unwrap();
    let n = store.audit_log(1000).await.unwrap().len();
    store.close().await;
    n
}

/// Enrols a machine with a token created through the API and answers (id, agent token).
async fn enrol(
    app: &TestApp,
    admin: &str,
    site: &str,
    department: &str,
    key: &str,
) -> (String, String) {
    let created = ok_json(
        call(
            app,
            admin,
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({"site": site, "department": department})),
        )
        .await,
        201,
    )
    .await;
    let res = app
        .post_enroll(&crate::helpers::enroll_body(
            created["token"].as_str().unwrap(),
            &format!("{key}-0123456789abcdef"),
        ))
        .await;
    let body = ok_json(res, 201).await;
    (
        body["machine_id"].as_str().unwrap().to_string(),
        body["agent_token"].as_str().unwrap().to_string(),
    )
}

async fn sites_profiles_and_placement(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
    let admin = app.operator("admin", Role::Admin).await;
    let create = |body: Value| call(&app, &admin, Method::POST, "/api/v1/sites", Some(body));
    let paris = ok_json(
        create(json!({"name": "paris", "currency": "EUR", "price_per_kwh": "0.25", "carbon_intensity_g_per_kwh": 60, "timezone": "Europe/Paris"})).await,
        201,
    )
    .await;
    assert_eq!(paris["price_per_kwh"], "0.25");
    assert_eq!(paris["machines"], 0);
    let (status, code, field) = error_of(
        create(json!({"name": "paris", "price_per_kwh": 1, "carbon_intensity_g_per_kwh": 1})).await,
    )
    .await;
    assert_eq!((status, code.as_str()), (409, "conflict"));
    assert!(field.is_none());
    for (body, bad) in [
        (
            json!({"name": "x", "currency": "euro", "price_per_kwh": 1, "carbon_intensity_g_per_kwh": 1}),
            "currency",
        ),
        (
            json!({"name": "x", "price_per_kwh": "-1", "carbon_intensity_g_per_kwh": 1}),
            "price_per_kwh",
        ),
        (
            json!({"name": "x", "price_per_kwh": "abc", "carbon_intensity_g_per_kwh": 1}),
            "price_per_kwh",
        ),
        (
            json!({"name": "", "price_per_kwh": 1, "carbon_intensity_g_per_kwh": 1}),
            "name",
        ),
        (
            json!({"name": "x", "price_per_kwh": 1}),
            "carbon_intensity_g_per_kwh",
        ),
        (
            json!({"name": "x", "price_per_kwh": 1, "carbon_intensity_g_per_kwh": 1, "timezone": "<script>"}),
            "timezone",
        ),
    ] {
        let (status, _, field) = error_of(create(body.clone()).await).await;
        assert_eq!((status, field.as_deref()), (422, Some(bad)), "{body}");
    }
    let laptop = ok_json(
        call(
            &app,
            &admin,
            Method::POST,
            "/api/v1/power-profiles",
            Some(json!({"name": "laptop", "idle_watts": 10, "active_watts": "30.5"})),
        )
        .await,
        201,
    )
    .await;

    let (id, agent) = enrol(&app, &admin, "default", "sales", "key-1").await;
    // One observed interval at the default site and profile…
    let t = past(6);
    app.send(&agent, &hb(1, t, Some(0.0))).await;
    app.send(&agent, &hb(2, t + Duration::from_secs(60), Some(400.0)))
        .await;
    // …then the machine moves to Paris on a laptop profile: later time uses the new rates.
    let moved = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            &format!("/api/v1/machines/{id}"),
            Some(json!({"site": "paris", "power_profile": "laptop", "department": "field"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            moved["site"].as_str(),
            moved["department"].as_str(),
            moved["power_profile"].as_str()
        ),
        (Some("paris"), Some("field"), Some("laptop"))
    );
    app.send(&agent, &hb(3, t + Duration::from_secs(120), Some(400.0)))
        .await;
    let detail = ok_json(
        call(
            &app,
            &admin,
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            None,
        )
        .await,
        200,
    )
    .await;
    // 60 s idle at 65 W, then 60 s idle at 10 W: the history is not rewritten.
    assert_eq!(
        dec(detail["idle_energy_j"].as_str().unwrap()),
        Decimal::from(60 * 65 + 60 * 10)
    );
    let costs: HashMap<String, String> = detail["costs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["currency"].as_str().unwrap().to_string(),
                c["idle_cost"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    // 600 J at 0.25 EUR per kWh, rounded to 12 places once per increment (DESIGN §2).
    assert_eq!(
        dec(&costs["EUR"]),
        (dec("600") / dec("3600000") * dec("0.25")).round_dp(12)
    );
    assert!(costs.contains_key("USD"));
    let metrics = app.metrics().await;
    assert!(metrics.contains(&format!("greenops_machine_idle_energy_cost_total{{machine_id=\"{id}\",site=\"paris\",department=\"field\",currency=\"EUR\"}}")), "{metrics}");

    // Unknown site / profile name the field; unknown machine is 404.
    for (body, field) in [
        (json!({"site": "nowhere"}), "site"),
        (json!({"power_profile": "toaster"}), "power_profile"),
    ] {
        let (status, _, f) = error_of(
            call(
                &app,
                &admin,
                Method::PATCH,
                &format!("/api/v1/machines/{id}"),
                Some(body),
            )
            .await,
        )
        .await;
        assert_eq!((status, f.as_deref()), (422, Some(field)));
    }
    assert_eq!(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/machines/nope",
            Some(json!({}))
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        call(
            &app,
            &admin,
            Method::PATCH,
            &format!("/api/v1/machines/{id}"),
            Some(json!({"colour": "red"}))
        )
        .await
        .status(),
        422
    );

    // A price change applies from now on and is audited with before and after.
    let changed = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            &format!("/api/v1/sites/{}", paris["id"]),
            Some(json!({"price_per_kwh": "0.5"})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            changed["price_per_kwh"].as_str(),
            changed["currency"].as_str(),
            changed["machines"].as_i64()
        ),
        (Some("0.5"), Some("EUR"), Some(1))
    );
    let audit = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/audit", None).await,
        200,
    )
    .await;
    let entry = &audit["items"][0];
    assert_eq!(entry["action"], "site_updated");
    let details: Value = serde_json::from_str(entry["details"].as_str().unwrap()).unwrap();
    assert_eq!(
        (
            details["before"]["price_per_kwh"].as_str(),
            details["after"]["price_per_kwh"].as_str()
        ),
        (Some("0.25"), Some("0.5"))
    );
    let detail_after = ok_json(
        call(
            &app,
            &admin,
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(detail_after["costs"], detail["costs"]);

    // In-use sites and profiles cannot be deleted; unused ones can.
    let (status, _, _) = error_of(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/sites/{}", paris["id"]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    let (status, _, _) = error_of(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/power-profiles/{}", laptop["id"]),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(status, 409);
    let spare = ok_json(
        create(json!({"name": "spare", "price_per_kwh": 1, "carbon_intensity_g_per_kwh": 1})).await,
        201,
    )
    .await;
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/sites/{}", spare["id"]),
            None
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        call(
            &app,
            &admin,
            Method::DELETE,
            &format!("/api/v1/sites/{}", spare["id"]),
            None
        )
        .await
        .status(),
        404
    );
    app.stop().await;
}

/// Sums a CSV column per currency (exact decimals).
fn csv_sum(csv: &str, column: &str) -> HashMap<String, Decimal> {
    let mut lines = csv.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == column).unwrap();
    let cur = header.iter().position(|h| *h == "currency").unwrap();
    let mut sums = HashMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        *sums.entry(fields[cur].to_string()).or_insert(Decimal::ZERO) += dec(fields[col]);
    }
    sums
}

async fn history_stats_and_csv_agree_with_metrics(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    let (a, agent_a) = enrol(&app, &admin, "default", "finance", "key-a").await;
    let (b, agent_b) = enrol(&app, &admin, "default", "it", "key-b").await;
    let t = past(5);
    // A: 60 s waste then 60 s active (the worked example); B: 60 s idle, unknown, idle.
    for (seq, secs, idle) in [
        (1u64, 0u64, Some(0.0)),
        (2, 60, Some(400.0)),
        (3, 120, Some(10.0)),
    ] {
        app.send(&agent_a, &hb(seq, t + Duration::from_secs(secs), idle))
            .await;
    }
    for (seq, secs, idle) in [
        (1u64, 0u64, Some(900.0)),
        (2, 60, Some(960.0)),
        (3, 120, None),
        (4, 180, Some(1080.0)),
    ] {
        app.send(&agent_b, &hb(seq, t + Duration::from_secs(secs), idle))
            .await;
    }
    let metrics = app.metrics().await;

    // History of A in 1-minute steps: the steps add up to the machine's totals.
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let from = rfc(t - Duration::from_secs(60));
    let to = rfc(t + Duration::from_secs(240));
    let history = ok_json(
        call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/machines/{a}/history?from={from}&to={to}&step=60"),
            None,
        )
        .await,
        200,
    )
    .await;
    let points = history["points"].as_array().unwrap();
    assert_eq!(points.len(), 5);
    let sum = |k: &str| points.iter().map(|p| p[k].as_f64().unwrap()).sum::<f64>();
    assert_eq!(
        (
            sum("observed_seconds"),
            sum("idle_seconds"),
            sum("active_seconds")
        ),
        (120.0, 60.0, 60.0)
    );
    assert_eq!(sum("observed_seconds") + sum("unobserved_seconds"), 300.0);
    let energy: Decimal = points
        .iter()
        .map(|p| dec(p["energy_joules"].as_str().unwrap()))
        .sum();
    assert_eq!(energy, Decimal::from(11_100));
    for (query, field) in [
        ("?step=1", "step"),
        ("?from=yesterday", "from"),
        ("?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from"),
        ("?from=2020-01-01T00:00:00Z&step=60", "step"),
    ] {
        let (status, _, f) = error_of(
            call(
                &app,
                &viewer,
                Method::GET,
                &format!("/api/v1/machines/{a}/history{query}"),
                None,
            )
            .await,
        )
        .await;
        assert_eq!((status, f.as_deref()), (422, Some(field)), "{query}");
    }
    assert_eq!(
        call(
            &app,
            &viewer,
            Method::GET,
            "/api/v1/machines/nope/history",
            None
        )
        .await
        .status(),
        404
    );

    // CSV for every grouping: the column sums equal the metric totals (and the store's).
    let all_time = "from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z";
    let expected_energy: f64 = [&a, &b]
        .iter()
        .map(|id| metric(&metrics, "greenops_machine_energy_joules_total", id).unwrap())
        .sum();
    let expected_idle_s: f64 = [&a, &b]
        .iter()
        .map(|id| metric(&metrics, "greenops_machine_idle_seconds_total", id).unwrap())
        .sum();
    let store_cost: Decimal = {
        let ta = app.totals(&a).await;
        let tb = app.totals(&b).await;
        ta.cost + tb.cost
    };
    for group in ["machine", "site", "department"] {
        let res = call(
            &app,
            &viewer,
            Method::GET,
            &format!("/api/v1/reports/energy.csv?{all_time}&group_by={group}"),
            None,
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let csv = res.text().await.unwrap();
        let energy = csv_sum(&csv, "energy_joules")["USD"];
        assert_eq!(
            energy.to_string().parse::<f64>().unwrap(),
            expected_energy,
            "{group}\n{csv}"
        );
        assert_eq!(
            csv_sum(&csv, "idle_seconds")["USD"]
                .to_string()
                .parse::<f64>()
                .unwrap(),
            expected_idle_s
        );
        assert_eq!(csv_sum(&csv, "cost")["USD"], store_cost, "{group}");
        let rows = csv.split("\r\n").filter(|l| !l.is_empty()).count() - 1;
        assert_eq!(rows, if group == "site" { 1 } else { 2 }, "{csv}");
    }
    let (status, _, field) = error_of(
        call(
            &app,
            &viewer,
            Method::GET,
            "/api/v1/reports/energy.csv?group_by=planet",
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, field.as_deref()), (422, Some("group_by")));

    // Stats: counts by status and the all-time totals equal the sums of the machines.
    let stats = ok_json(
        call(&app, &viewer, Method::GET, "/api/v1/stats", None).await,
        200,
    )
    .await;
    assert_eq!(stats["machines"]["total"], 2);
    assert_eq!(
        stats["machines"]["active"].as_i64().unwrap() + stats["machines"]["idle"].as_i64().unwrap(),
        2
    );
    let periods: HashMap<&str, &Value> = stats["periods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["period"].as_str().unwrap(), p))
        .collect();
    for name in ["7d", "30d", "all"] {
        let p = periods[name];
        assert_eq!(
            p["energy_joules"].as_str().unwrap().parse::<f64>().unwrap(),
            expected_energy,
            "{name}"
        );
        assert_eq!(
            p["idle_seconds"].as_f64().unwrap(),
            expected_idle_s,
            "{name}"
        );
        assert_eq!(p["costs"][0]["currency"], "USD");
        assert_eq!(
            dec(p["costs"][0]["cost"].as_str().unwrap()),
            store_cost,
            "{name}"
        );
    }
    assert_eq!(stats["top_wasters"][0]["id"].as_str(), Some(b.as_str()));
    app.stop().await;
}

async fn enrollment_and_api_tokens(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
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

async fn settings_apply_to_ingest_and_replicas(db: Db) {
    let Some(url) = fresh_database_of(db).await else {
        return;
    };
    let mut settings = test_settings(&url);
    settings.ingest.revocation_poll_seconds = 1;
    let app = spawn_app_with(settings.clone()).await;
    let replica = spawn_app_with(settings).await;
    let admin = app.operator("admin", Role::Admin).await;
    let shown = ok_json(
        call(&app, &admin, Method::GET, "/api/v1/settings", None).await,
        200,
    )
    .await;
    assert_eq!(
        (
            shown["idle_threshold_seconds"].as_u64(),
            shown["source"].as_str()
        ),
        (Some(300), Some("config"))
    );
    for (body, field) in [
        (json!({"max_gap_seconds": 0}), "max_gap_seconds"),
        (
            json!({"heartbeat_interval_seconds": 999}),
            "heartbeat_interval_seconds",
        ),
        (
            json!({"idle_threshold_seconds": -1}),
            "idle_threshold_seconds",
        ),
    ] {
        let (status, _, f) =
            error_of(call(&app, &admin, Method::PATCH, "/api/v1/settings", Some(body)).await).await;
        assert_eq!((status, f.as_deref()), (422, Some(field)));
    }
    let saved = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            "/api/v1/settings",
            Some(json!({"idle_threshold_seconds": 60})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(
        (
            saved["idle_threshold_seconds"].as_u64(),
            saved["source"].as_str()
        ),
        (Some(60), Some("database"))
    );
    // The replica adopts it within its poll interval…
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = ok_json(
            call(&replica, &admin, Method::GET, "/api/v1/settings", None).await,
            200,
        )
        .await;
        if seen["idle_threshold_seconds"] == 60 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica never saw the new threshold"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // …and accounts with it: 120 s idle over a 60 s interval is 60 s of waste (none at 300 s).
    let (id, agent) = enrol(&replica, &admin, "default", "", "key").await;
    let t = past(3);
    replica.send(&agent, &hb(1, t, Some(0.0))).await;
    replica
        .send(&agent, &hb(2, t + Duration::from_secs(60), Some(120.0)))
        .await;
    assert_eq!(replica.totals(&id).await.idle_ms, 60_000);
    replica.stop().await;
    app.stop().await;
}

async fn users_change_and_the_last_admin_stays(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
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

async fn openapi_documents_every_route(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
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

async fn security_headers_and_no_cors(db: Db) {
    let Some(app) = spawn_app_on(db).await else {
        return;
    };
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

on_both_backends!(
    viewers_and_forged_requests_change_nothing,
    sites_profiles_and_placement,
    history_stats_and_csv_agree_with_metrics,
    enrollment_and_api_tokens,
    settings_apply_to_ingest_and_replicas,
    users_change_and_the_last_admin_stays,
    openapi_documents_every_route,
    security_headers_and_no_cors,
);
