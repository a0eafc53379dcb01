//! Sites, power profiles and machine placement (http/sites.rs, http/machines.rs).

use std::collections::HashMap;
use std::time::Duration;

use greenops_collector::store::Role;
use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{TestApp, call, dec, enrol, error_of, hb, ok_json, past};

async fn sites_profiles_and_placement(app: TestApp) {
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
    // One observed interval at the default site and profile… (the agent clock may run up to
    // `max_clock_skew_seconds` ahead, which lets this test report time after the move now)
    let t = past(0) - Duration::from_secs(80);
    app.send(&agent, &hb(1, t, Some(0.0))).await;
    app.send(&agent, &hb(2, t + Duration::from_secs(60), Some(400.0)))
        .await;
    // …then the machine moves to Paris on a laptop profile from t+100 s (20 s from now): time
    // after that uses
    // the new rates, time before it keeps the old ones, whenever its heartbeat arrives.
    let from = (t + Duration::from_secs(100))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let moved = ok_json(
        call(
            &app,
            &admin,
            Method::PATCH,
            &format!("/api/v1/machines/{id}"),
            Some(json!({"site": "paris", "power_profile": "laptop", "department": "field", "effective_from": from})),
        )
        .await,
        200,
    )
    .await;
    // The answer shows the placement in force now and the scheduled one.
    assert_eq!(moved["site"], "default", "{moved}");
    let placements = moved["placements"].as_array().unwrap();
    let last = placements.last().unwrap();
    assert_eq!(
        (
            last["site"].as_str(),
            last["department"].as_str(),
            last["power_profile"].as_str(),
            last["effective_from"].as_str()
        ),
        (
            Some("paris"),
            Some("field"),
            Some("laptop"),
            Some(from.as_str())
        )
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
    // 60 s idle at 65 W, then 40 s at 65 W and 20 s at 10 W: split at the move.
    assert_eq!(
        dec(detail["idle_energy_j"].as_str().unwrap()),
        Decimal::from(60 * 65 + 40 * 65 + 20 * 10)
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
    // 200 J at 0.25 EUR per kWh, rounded to 12 places once per increment.
    assert_eq!(
        dec(&costs["EUR"]),
        (dec("200") / dec("3600000") * dec("0.25")).round_dp(12)
    );
    assert!(costs.contains_key("USD"));
    // Once in force, the move shows in lists and labels (the placement poll runs every
    // `ingest.revocation_poll_seconds`).
    crate::helpers::wait_for(
        "the move to come into force",
        Duration::from_secs(60),
        async || {
            let now = ok_json(
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
            now["site"] == "paris"
        },
    )
    .await;
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
    assert_eq!(entry["action"], "site_rates_changed");
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

on_both_backends!(app: sites_profiles_and_placement);
