//! `GET /api/v1/machines` and `DELETE /api/v1/machines/{id}`: filters, sorting, paging,
//! validation, roles, and what retiring does.

use greenops_collector::store::Role;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, enroll_body, error_of, hb, past};

async fn get(app: &TestApp, token: &str, query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/machines{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn hostnames(app: &TestApp, token: &str, query: &str) -> (Vec<String>, i64) {
    let res = get(app, token, query).await;
    assert_eq!(res.status(), 200, "{query}");
    let body: Value = res.json().await.unwrap();
    let names = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["hostname"].as_str().unwrap().to_string())
        .collect();
    (names, body["total"].as_i64().unwrap())
}

async fn list_filter_sort_page_and_retire(app: TestApp) {
    let admin = app.operator("admin", Role::Admin).await;
    let viewer = app.operator("viewer", Role::Viewer).await;
    let finance = app.enrollment_token("default", "finance").await;
    let it = app.enrollment_token("default", "it").await;
    let t = past(10);
    let mut agents = Vec::new();
    // pc-0..pc-4 in finance, pc-5..pc-9 in it; even ones idle, odd ones active.
    for i in 0..10 {
        let token = if i < 5 { &finance } else { &it };
        let mut body = enroll_body(token, &format!("machine-key-list-{i:04}"));
        body["hostname"] = json!(format!("pc-{i}.example.org"));
        let res = app.post_enroll(&body).await;
        let enrolled: greenops_protocol::EnrollResponse = res.json().await.unwrap();
        let idle = if i % 2 == 0 { 1000.0 + i as f64 } else { 5.0 };
        app.send(&enrolled.agent_token, &hb(1, t, Some(idle))).await;
        app.send(
            &enrolled.agent_token,
            &hb(2, t + time::Duration::seconds(60), Some(idle + 60.0)),
        )
        .await;
        agents.push(enrolled);
    }

    let (all, total) = hostnames(&app, &viewer, "").await;
    assert_eq!(total, 10);
    assert_eq!(all[0], "pc-0.example.org");
    let (idle, total) = hostnames(&app, &viewer, "?status=idle&department=finance").await;
    assert_eq!(
        (idle, total),
        (
            vec![
                "pc-0.example.org".to_string(),
                "pc-2.example.org".into(),
                "pc-4.example.org".into()
            ],
            3
        )
    );
    let (found, _) = hostnames(&app, &viewer, "?q=PC-7").await;
    assert_eq!(found, vec!["pc-7.example.org"]);
    let (none, total) = hostnames(&app, &viewer, "?q=%25").await;
    assert_eq!((none.len(), total), (0, 0), "LIKE wildcards are literal");
    let (page2, total) =
        hostnames(&app, &viewer, "?sort=hostname&order=desc&per_page=3&page=2").await;
    assert_eq!(
        (page2, total),
        (
            vec![
                "pc-6.example.org".to_string(),
                "pc-5.example.org".into(),
                "pc-4.example.org".into()
            ],
            10
        )
    );
    let (by_idle, _) = hostnames(&app, &viewer, "?sort=input_idle&order=desc&per_page=1").await;
    assert_eq!(by_idle, vec!["pc-8.example.org"]);
    let res = get(&app, &viewer, "?per_page=2").await;
    let body: Value = res.json().await.unwrap();
    let first = &body["items"][0];
    assert_eq!(first["status"], "idle");
    assert_eq!(first["department"], "finance");
    assert!(first["last_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["idle_seconds"], 60.0);
    // The list carries money per currency: one idle minute at 65 W and 0.12 USD per kWh.
    assert_eq!(
        first["costs"],
        json!([{"currency": "USD", "cost": "0.00013", "idle_cost": "0.00013",
                "avoidable_cost": "0.000126"}]),
        "{first}"
    );

    for (query, field) in [
        ("?per_page=501", "per_page"),
        ("?sort=password_hash", "sort"),
        ("?status=asleep", "status"),
        ("?order=up", "order"),
        ("?page=0", "page"),
    ] {
        let (status, _, named) = error_of(get(&app, &viewer, query).await).await;
        assert_eq!((status, named.as_deref()), (422, Some(field)), "{query}");
    }
    assert_eq!(
        app.client
            .get(app.url("/api/v1/machines"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Retiring: viewers may not; admins may; the credential stops working and the machine
    // leaves lists and /metrics, its history stays.
    let id = &agents[3].machine_id;
    let retire = |token: &str| {
        app.client
            .delete(app.url(&format!("/api/v1/machines/{id}")))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(retire(&viewer).await.unwrap().status(), 403);
    assert_eq!(retire(&admin).await.unwrap().status(), 204);
    assert_eq!(retire(&admin).await.unwrap().status(), 404);
    let (_, total) = hostnames(&app, &viewer, "").await;
    assert_eq!(total, 9);
    let res = app
        .post_heartbeats(
            &agents[3].agent_token,
            &hb(3, t + time::Duration::seconds(120), Some(1.0)),
        )
        .await;
    assert_eq!(res.status(), 401);
    assert!(!app.metrics().await.contains(id.as_str()));
    assert_eq!(app.totals(id).await.heartbeat_rows, 2, "history is kept");
    let mut body = enroll_body(&finance, "machine-key-list-0003");
    body["hostname"] = json!("pc-3.example.org");
    assert_eq!(
        app.post_enroll(&body).await.status(),
        403,
        "a retired machine cannot re-enrol by itself"
    );
    app.stop().await;
}

on_both_backends!(app: list_filter_sort_page_and_retire);

/// The detail shows what the agent last reported: CPU, memory, uptime and how it measured
/// idle time; a report without a source leaves it unknown rather than stale.
async fn detail_shows_the_last_report(app: TestApp) {
    let viewer = app.operator("viewer", Role::Viewer).await;
    let token = app.enrollment_token("default", "").await;
    let enrolled: greenops_protocol::EnrollResponse = app
        .post_enroll(&enroll_body(&token, "machine-key-detail-0001"))
        .await
        .json()
        .await
        .unwrap();
    let detail = async || -> Value {
        app.client
            .get(app.url(&format!("/api/v1/machines/{}", enrolled.machine_id)))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    let before = detail().await;
    assert_eq!(
        (
            &before["idle_source"],
            &before["cpu_usage_ratio"],
            &before["uptime_seconds"]
        ),
        (&Value::Null, &Value::Null, &Value::Null)
    );
    let t = past(5);
    let mut beat = hb(1, t, Some(3.0));
    beat["idle_source"] = json!("gnome-mutter");
    app.send(&enrolled.agent_token, &beat).await;
    let after = detail().await;
    assert_eq!(after["idle_source"], "gnome-mutter");
    assert_eq!(after["cpu_usage_ratio"], 0.07);
    assert_eq!(after["memory_usage_ratio"], 0.41);
    assert_eq!(after["uptime_seconds"], 86400);
    let mut beat = hb(2, t + time::Duration::seconds(60), None);
    beat["idle_source"] = json!("none");
    app.send(&enrolled.agent_token, &beat).await;
    assert_eq!(detail().await["idle_source"], "none");
    // A newer agent's source this collector does not know; then an agent that says nothing.
    let mut beat = hb(3, t + time::Duration::seconds(120), Some(1.0));
    beat["idle_source"] = json!("a-source-from-2030");
    app.send(&enrolled.agent_token, &beat).await;
    assert_eq!(detail().await["idle_source"], "other");
    app.send(
        &enrolled.agent_token,
        &hb(4, t + time::Duration::seconds(180), Some(1.0)),
    )
    .await;
    assert_eq!(detail().await["idle_source"], Value::Null);
    app.stop().await;
}

on_both_backends!(app: detail_shows_the_last_report);

/// The in-memory list of large fleets answers exactly what SQL answers, for every sort, order,
/// filter and page; a retirement through that collector is visible at once.
async fn memory_list_equals_sql(db: Db) {
    let Some(url) = crate::helpers::fresh_database_of(db).await else {
        return;
    };
    let mut sql_settings = crate::helpers::test_settings(&url);
    sql_settings.admin.list_memory_min_machines = usize::MAX;
    let mut memory_settings = sql_settings.clone();
    memory_settings.admin.list_memory_min_machines = 0;
    let sql = crate::helpers::spawn_app_with(sql_settings).await;
    let memory = crate::helpers::spawn_app_with(memory_settings).await;
    let viewer = sql.operator("viewer", Role::Viewer).await;
    let admin = sql.operator("admin", Role::Admin).await;
    let tokens = [
        sql.enrollment_token("default", "finance").await,
        sql.enrollment_token("default", "it").await,
        sql.enrollment_token("default", "").await,
    ];
    let t = past(10);
    let mut ids = Vec::new();
    for i in 0..23usize {
        let mut body = enroll_body(&tokens[i % 3], &format!("machine-key-memory-{i:04}"));
        body["hostname"] = json!(format!("host-{:02}.example.org", (i * 7) % 23));
        let enrolled: greenops_protocol::EnrollResponse =
            sql.post_enroll(&body).await.json().await.unwrap();
        // Some never report (offline, no values), some without idle detection.
        if i % 6 != 5 {
            let idle = match i % 4 {
                0 => None,
                1 => Some(5.0),
                _ => Some(400.0 + i as f64 * 30.0),
            };
            for k in 0..=(i % 3) as u64 {
                sql.send(
                    &enrolled.agent_token,
                    &hb(k + 1, t + time::Duration::seconds(60 * k as i64), idle),
                )
                .await;
            }
        }
        ids.push(enrolled.machine_id);
    }
    let sorts = [
        "hostname",
        "site",
        "department",
        "status",
        "last_seen",
        "input_idle",
        "idle_time",
        "idle_energy",
    ];
    let filters = [
        "",
        "&status=idle",
        "&status=offline",
        "&department=it",
        "&q=HOST-1",
        "&site=default&department=",
    ];
    let page_of = |body: Value| -> (Vec<(String, String)>, i64) {
        let items = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_string(),
                    m["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (items, body["total"].as_i64().unwrap())
    };
    let mut compared = 0;
    for sort in sorts {
        for order in ["asc", "desc"] {
            for filter in filters {
                for page in 1..=3 {
                    let q = format!("?sort={sort}&order={order}&per_page=4&page={page}{filter}");
                    let a: Value = get(&sql, &viewer, &q).await.json().await.unwrap();
                    let b: Value = get(&memory, &viewer, &q).await.json().await.unwrap();
                    assert_eq!(page_of(a), page_of(b), "{q}");
                    compared += 1;
                }
            }
        }
    }
    assert_eq!(compared, 8 * 2 * 6 * 3);
    // A retirement through the in-memory collector shows at once.
    let res = memory
        .client
        .delete(memory.url(&format!("/api/v1/machines/{}", ids[1])))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let after: Value = get(&memory, &viewer, "?per_page=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(after["total"], 22);
    memory.stop().await;
    sql.stop().await;
}

on_both_backends!(memory_list_equals_sql);
