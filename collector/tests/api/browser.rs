//! The admin page in real headless Chromium: sign in, see machines appear, filter and sort,
//! open a machine and see its chart, create an enrollment token and see it once, export CSV,
//! sign in as a viewer and find no write controls, and a hostile hostname shown as text.
//! Screenshots of each main screen land in `target/screenshots/`.

use std::time::Duration;

use greenops_collector::store::Role;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, hb, past, spawn_app_on};
use crate::webdriver::Browser;

const HOSTILE: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\">";

async fn machine(
    app: &TestApp,
    admin: &str,
    hostname: &str,
    department: &str,
    idle: f64,
) -> String {
    let token: Value = app
        .call(
            admin,
            reqwest::Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({"department": department})),
        )
        .await
        .json()
        .await
        .unwrap();
    let enrolled: Value = app
        .post_enroll(&json!({
            "enrollment_token": token["token"],
            "machine_key": format!("browser-test-{}", uuid::Uuid::new_v4().simple()),
            "hostname": hostname,
            "os": "linux",
            "os_version": "Debian 12",
            "agent_version": "0.1.0",
        }))
        .await
        .json()
        .await
        .unwrap();
    let agent = enrolled["agent_token"].as_str().unwrap();
    let t = past(30);
    for i in 0..30u64 {
        app.send(
            agent,
            &hb(
                i + 1,
                t + Duration::from_secs(60 * i),
                Some(idle + 60.0 * i as f64),
            ),
        )
        .await;
    }
    enrolled["machine_id"].as_str().unwrap().to_string()
}

async fn sign_in(browser: &Browser, app: &TestApp, username: &str) {
    browser.goto(&app.url("/")).await;
    browser.fill("#login-username", username).await;
    browser.fill("#login-password", "a long password!").await;
    browser.click("#login-form button[type=submit]").await;
    browser
        .wait_for("document.querySelector('[data-card=total] .value')")
        .await;
}

async fn rows(browser: &Browser) -> Vec<String> {
    let v = browser
        .script("return [...document.querySelectorAll('#machines-table tbody a.host')].map(a => a.textContent);")
        .await;
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

async fn write_controls(browser: &Browser) -> i64 {
    browser
        .script("return document.querySelectorAll('[data-write], button.danger, form.inline button[type=submit]:not(#machine-filters button):not(#savings-form button)').length;")
        .await
        .as_i64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_page_in_headless_chromium() {
    let Some(app) = spawn_app_on(Db::Postgres).await else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };
    let admin = app.operator("admin", Role::Admin).await;
    let _ = app.operator("viewer", Role::Viewer).await;

    // Sign in: the overview counts no machine yet.
    sign_in(&browser, &app, "admin").await;
    assert_eq!(browser.text("[data-card=total] .value").await, "0");

    // Machines appear after their heartbeats (the overview refreshes on navigation).
    let alpha = machine(&app, &admin, "alpha-pc", "finance", 0.0).await;
    machine(&app, &admin, "zulu-pc", "it", 900.0).await;
    machine(&app, &admin, HOSTILE, "it", 10.0).await;
    browser.goto(&app.url("/#/machines")).await;
    browser
        .wait_for("document.querySelectorAll('#machines-table tbody a.host').length === 3")
        .await;
    browser.goto(&app.url("/#/overview")).await;
    browser
        .wait_for("document.querySelector('[data-card=total] .value')?.textContent === '3'")
        .await;
    // The 30-day trend: 30 days, today's waste drawn (the machines idled in the last hour).
    browser
        .wait_for("document.querySelectorAll('#trend svg rect.bar-idle').length >= 1")
        .await;
    let daily: Value = app
        .call(
            &admin,
            reqwest::Method::GET,
            "/api/v1/stats/daily?days=30",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let days = daily["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let today = &days[29];
    assert!(today["idle_energy_kwh"].as_str().unwrap() != "0", "{today}");
    assert_eq!(
        browser
            .script(&format!(
                "return document.querySelector('#trend rect.bar-idle[data-day=\"{}\"]') !== null;",
                today["day"].as_str().unwrap()
            ))
            .await,
        true
    );
    browser.screenshot("01-overview").await;

    // A hostname with markup is shown as text and never runs.
    browser.goto(&app.url("/#/machines")).await;
    browser
        .wait_for("document.querySelectorAll('#machines-table tbody a.host').length === 3")
        .await;
    let names = rows(&browser).await;
    assert!(names.contains(&HOSTILE.to_string()), "{names:?}");
    assert_eq!(
        browser
            .script("return window.pwned === undefined && !document.querySelector('img[src=x]');")
            .await,
        true
    );

    // Filter by hostname, then by department; then sort by hostname descending.
    browser.fill("#filter-q", "alpha").await;
    browser.click("#machine-filters button[type=submit]").await;
    browser
        .wait_for("document.querySelectorAll('#machines-table tbody a.host').length === 1")
        .await;
    assert_eq!(rows(&browser).await, vec!["alpha-pc"]);
    browser.fill("#filter-q", "").await;
    browser.fill("#filter-department", "it").await;
    browser.click("#machine-filters button[type=submit]").await;
    browser
        .wait_for("document.querySelectorAll('#machines-table tbody a.host').length === 2")
        .await;
    browser.fill("#filter-department", "").await;
    browser.click("#machine-filters button[type=submit]").await;
    browser
        .wait_for("document.querySelectorAll('#machines-table tbody a.host').length === 3")
        .await;
    let ascending = rows(&browser).await;
    let at = |name: &str| ascending.iter().position(|n| n == name).unwrap();
    assert!(at("alpha-pc") < at("zulu-pc"), "{ascending:?}");
    browser.click("button[data-sort=hostname]").await;
    browser
        .wait_for("document.querySelector('th[aria-sort=descending] button[data-sort=hostname]')")
        .await;
    let descending = rows(&browser).await;
    assert_eq!(
        descending,
        ascending.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert!(
        browser
            .script("return location.hash;")
            .await
            .as_str()
            .unwrap()
            .contains("order=desc")
    );
    browser.screenshot("02-machines").await;

    // Detail: the history chart is drawn with bars.
    browser
        .click(&format!("tr[data-machine='{alpha}'] a.host"))
        .await;
    browser
        .wait_for("document.querySelectorAll('#history svg rect').length > 0")
        .await;
    assert_eq!(browser.text("h1.host").await, "alpha-pc");
    browser.screenshot("03-machine-detail").await;

    // Savings: a preset recomputes; the page shows what the API answers for the same policy.
    browser.goto(&app.url("/#/savings")).await;
    browser
        .wait_for("document.querySelector('[data-saving=sleeps] .value')")
        .await;
    browser.click("button[data-preset='15']").await;
    browser
        .wait_for("location.hash.includes('sleep_after_minutes=15')")
        .await;
    let api: Value = app
        .call(
            &admin,
            reqwest::Method::GET,
            "/api/v1/savings/what-if?sleep_after_minutes=15",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(api["sleeps"].as_u64().unwrap() > 0, "{api}");
    browser
        .wait_for(&format!(
            "document.querySelector('[data-saving=sleeps] .value')?.textContent === '{}' && document.querySelectorAll('#savings-groups tbody tr').length === {}",
            api["sleeps"],
            api["groups"].as_array().unwrap().len()
        ))
        .await;
    assert_eq!(
        browser
            .script("return document.querySelectorAll('#savings-groups svg rect').length;")
            .await,
        json!(api["groups"].as_array().unwrap().len())
    );
    browser.screenshot("13-savings").await;
    // A limit the server refuses is explained.
    browser.fill("#savings-minutes", "0").await;
    browser.click("#savings-form button[type=submit]").await;
    browser
        .wait_for("document.querySelector('#savings-error')?.textContent.includes('sleep_after_minutes') || document.querySelector('#savings-error')?.textContent.includes('minutes')")
        .await;

    // Enrollment token: created, shown once, never listed again.
    browser.goto(&app.url("/#/enrollment")).await;
    browser.fill("input[name=department]", "lab").await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("document.querySelector('[data-secret]')")
        .await;
    let token = browser.text("[data-secret]").await;
    assert!(token.starts_with("gok_enroll_"), "{token}");
    browser.screenshot("04-enrollment-token").await;
    browser.goto(&app.url("/#/overview")).await;
    browser.goto(&app.url("/#/enrollment")).await;
    browser
        .wait_for("document.querySelectorAll('table tbody tr').length >= 4")
        .await;
    let page: String = browser
        .script("return document.body.innerText;")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !page.contains(&token),
        "the plaintext token is shown only once"
    );
    assert!(
        app.post_enroll(&crate::helpers::enroll_body(
            &token,
            "enrolled-from-the-page-01"
        ))
        .await
        .status()
            == 201
    );

    // CSV export: the link answers RFC 4180 CSV with every machine.
    browser.goto(&app.url("/#/machines")).await;
    browser.find("[data-export=machine]").await;
    let csv = browser
        .script_async("fetch(document.querySelector('[data-export=machine]').href).then(r => r.text()).then(done);")
        .await;
    let csv = csv.as_str().unwrap();
    assert!(
        csv.starts_with("machine_id,hostname,site,department,currency,"),
        "{csv}"
    );
    assert!(
        csv.contains("alpha-pc")
            && csv.contains(
                "\"<script>window.pwned=1</script><img src=x onerror=\"\"window.pwned=2\"\">\""
            ),
        "{csv}"
    );

    // The other screens, for reviewers.
    for (hash, name, ready) in [
        (
            "sites",
            "05-sites",
            "document.querySelector('table tbody tr td')",
        ),
        (
            "profiles",
            "06-power-profiles",
            "document.querySelector('table tbody tr td')",
        ),
        (
            "users",
            "07-users",
            "document.querySelectorAll('table tbody tr').length >= 2",
        ),
        (
            "api-tokens",
            "08-api-tokens",
            "document.querySelector('form[data-write]')",
        ),
        (
            "settings",
            "09-settings",
            "document.querySelector('input[name=idle_threshold_seconds]')",
        ),
        (
            "audit",
            "10-audit-log",
            "document.querySelectorAll('table tbody tr').length >= 3",
        ),
    ] {
        browser.goto(&app.url(&format!("/#/{hash}"))).await;
        browser.wait_for(ready).await;
        browser.screenshot(name).await;
    }

    // A field-level error from the server lands next to its field.
    browser.goto(&app.url("/#/sites")).await;
    browser
        .fill("form[data-write] input[name=name]", "lyon")
        .await;
    browser
        .fill("form[data-write] input[name=currency]", "euro")
        .await;
    browser
        .fill("form[data-write] input[name=price_per_kwh]", "0.2")
        .await;
    browser
        .fill(
            "form[data-write] input[name=carbon_intensity_g_per_kwh]",
            "50",
        )
        .await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("document.querySelector('input[name=currency][aria-invalid=true]')")
        .await;
    let message = browser
        .script("const i = document.querySelector('input[name=currency]'); return document.getElementById(i.getAttribute('aria-describedby')).textContent;")
        .await;
    assert!(message.as_str().unwrap().contains("ISO 4217"), "{message}");

    // Accounting v2 on the page: a site with a time-of-use band and business hours, a
    // scheduled tariff, an hourly intensity import (a bad line is named, nothing stored), a
    // profile's sleep watts, and a machine moved from a later moment.
    let paris = site_v2_flow(&browser, &app).await;
    browser.goto(&app.url("/#/profiles")).await;
    browser
        .wait_for("[...document.querySelectorAll('table tbody tr')].some(r => r.textContent.startsWith('desktop'))")
        .await;
    browser
        .script("[...document.querySelectorAll('table tbody tr')].find(r => r.textContent.startsWith('desktop')).querySelector('button.secondary').click();")
        .await;
    browser
        .wait_for(
            "document.querySelector('form[data-write] input[name=sleep_watts]')?.value === '2'",
        )
        .await;
    browser
        .fill("form[data-write] input[name=sleep_watts]", "3.5")
        .await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("[...document.querySelectorAll('table tbody tr')].some(r => r.textContent.startsWith('desktop') && r.children[3].textContent === '3.5')")
        .await;
    browser.screenshot("06b-power-profile-sleep-watts").await;
    browser.goto(&app.url(&format!("/#/machine/{alpha}"))).await;
    browser
        .wait_for("document.querySelectorAll('#placements tbody tr').length === 1")
        .await;
    browser
        .script("const s = document.querySelector('form[data-write] select[name=site]'); s.value = 'paris'; document.querySelector('form[data-write] input[name=effective_from]').value = '2031-06-01T09:00';")
        .await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("document.querySelectorAll('#placements tbody tr').length === 2")
        .await;
    let newest = browser.text("#placements tbody tr:first-child").await;
    assert!(
        newest.contains("paris") && newest.contains("scheduled"),
        "{newest}"
    );
    let moved: Value = app
        .call(
            &admin,
            reqwest::Method::GET,
            &format!("/api/v1/machines/{alpha}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        moved["site"], "default",
        "a scheduled move leaves the machine where it is now"
    );
    let from = moved["placements"][1]["effective_from"].as_str().unwrap();
    assert_eq!(
        browser
            .script(&format!(
                "return Date.parse('{from}') === Date.parse('2031-06-01T09:00');"
            ))
            .await,
        true,
        "the move applies from the moment typed, in the browser's time zone: {from}"
    );
    browser.screenshot("03b-machine-placements").await;

    // Sign out; a viewer sees the same data and no write control anywhere.
    browser.click(".who button").await;
    browser.find("#login-form").await;
    sign_in(&browser, &app, "viewer").await;
    assert_eq!(
        browser
            .script(
                "return [...document.querySelectorAll('nav a')].map(a => a.textContent).join(',');"
            )
            .await,
        "Overview,Savings,Machines,Sites,Power profiles,Settings"
    );
    for (hash, ready) in [
        ("overview", "document.querySelector('[data-card=total]')"),
        (
            "machines",
            "document.querySelector('#machines-table tbody a.host')",
        ),
        (
            &*format!("machine/{alpha}"),
            "document.querySelector('#history svg')",
        ),
        (
            "savings",
            "document.querySelector('[data-saving=energy] .value')",
        ),
        ("sites", "document.querySelector('table tbody tr td')"),
        (
            &*format!("site/{paris}"),
            "document.querySelector('#site-name')?.textContent === 'paris' && document.querySelector('#intensity-hours tbody tr td.num')",
        ),
        ("profiles", "document.querySelector('table tbody tr td')"),
        ("settings", "document.querySelector('dl.facts')"),
    ] {
        browser.goto(&app.url(&format!("/#/{hash}"))).await;
        browser.wait_for(ready).await;
        assert_eq!(
            write_controls(&browser).await,
            0,
            "write controls shown to a viewer on {hash}"
        );
    }
    browser.goto(&app.url("/#/machines")).await;
    browser
        .wait_for("document.querySelector('#machines-table tbody a.host')")
        .await;
    browser.screenshot("11-viewer-machines").await;

    // A phone-sized window: the layout reflows; only wide tables scroll, inside their box.
    browser.resize(420, 900).await;
    browser.goto(&app.url("/#/overview")).await;
    browser
        .wait_for("document.querySelector('[data-card=total] .value')")
        .await;
    let fits = browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
        .await;
    assert_eq!(fits, true, "the overview fits a 420 px wide screen");
    browser.screenshot("12-phone-overview").await;

    browser.quit().await;
    app.stop().await;
}

/// Creates the `paris` site on the Sites screen and works its detail page; returns its id.
async fn site_v2_flow(browser: &Browser, app: &TestApp) -> i64 {
    browser.goto(&app.url("/#/overview")).await;
    browser.goto(&app.url("/#/sites")).await;
    browser
        .wait_for("document.querySelector('form[data-write] textarea[name=bands]')")
        .await;
    let form = "form[data-write]";
    for (name, value) in [
        ("name", "paris"),
        ("currency", "EUR"),
        ("price_per_kwh", "0.18"),
        ("carbon_intensity_g_per_kwh", "50"),
        ("timezone", "Europe/Paris"),
        ("holidays", "2031-12-25"),
    ] {
        browser
            .fill(&format!("{form} input[name={name}]"), value)
            .await;
    }
    // A band the page cannot read is explained at its field, before anything is sent.
    browser
        .fill(&format!("{form} textarea[name=bands]"), "weekdays 8-6")
        .await;
    browser.click(&format!("{form} button[type=submit]")).await;
    browser
        .wait_for("document.querySelector('textarea[name=bands][aria-invalid=true]')")
        .await;
    let message = browser
        .script("const i = document.querySelector('textarea[name=bands]'); return document.getElementById(i.getAttribute('aria-describedby')).textContent;")
        .await;
    assert!(
        message
            .as_str()
            .unwrap()
            .contains("mon-fri 08:00-18:30 0.30"),
        "{message}"
    );
    browser
        .fill(
            &format!("{form} textarea[name=bands]"),
            "mon-fri 08:00-18:30 0.30",
        )
        .await;
    browser
        .fill(
            &format!("{form} textarea[name=business_hours]"),
            "mon-fri 08:00-18:00",
        )
        .await;
    browser.click(&format!("{form} button[type=submit]")).await;
    browser
        .wait_for("document.querySelector('a[data-site=paris]')")
        .await;
    let row = browser
        .script("return document.querySelector('a[data-site=paris]').closest('tr').textContent;")
        .await;
    let row = row.as_str().unwrap();
    assert!(
        row.contains("Europe/Paris")
            && row.contains("0.18 (+1 band)")
            && row.contains("mon-fri 08:00-18:00"),
        "{row}"
    );
    browser.screenshot("05b-sites-v2").await;

    // The detail page: what is in force, the tariff history, a scheduled tariff.
    browser.click("a[data-site=paris]").await;
    browser
        .wait_for("document.querySelector('#site-name')?.textContent === 'paris'")
        .await;
    let facts = browser.text("dl.facts").await;
    assert!(
        facts.contains("mon-fri 08:00-18:30 0.3\n") && facts.contains("2031-12-25"),
        "{facts}"
    );
    let tariff = "#tariff-form";
    browser
        .fill(&format!("{tariff} input[name=price_per_kwh]"), "0.21")
        .await;
    browser
        .script(&format!("document.querySelector('{tariff} input[name=effective_from]').value = '2031-01-01T00:00';"))
        .await;
    browser
        .click(&format!("{tariff} button[type=submit]"))
        .await;
    browser
        .wait_for(
            "document.querySelectorAll('.panel')[2].querySelectorAll('tbody tr').length === 2",
        )
        .await;
    let scheduled = browser.text(".panel:nth-of-type(2) tbody").await;
    assert!(
        scheduled.contains("0.21 (+1 band)"),
        "scheduled: {scheduled}"
    );

    // Hourly intensity: a bad line is named and nothing is stored; a good file is.
    let site_id: i64 = browser
        .script("return Number(location.hash.split('/').pop());")
        .await
        .as_i64()
        .unwrap();
    browser
        .fill(
            "#intensity-csv",
            "hour_start,g_co2e_per_kwh\n2031-01-01T00:00:00Z,40\n2031-01-01T01:00:00Z,lots",
        )
        .await;
    browser.click("form.stack button[type=submit]").await;
    browser
        .wait_for("document.querySelector('#intensity-result.form-error')?.textContent.includes('line 3')")
        .await;
    let hours = format!(
        "hour_start,g_co2e_per_kwh\n{}\n{}",
        next_hour_line(1, "40.5"),
        next_hour_line(2, "38")
    );
    browser.fill("#intensity-csv", &hours).await;
    browser.click("form.stack button[type=submit]").await;
    browser
        .wait_for(
            "document.querySelector('#intensity-result')?.textContent === 'Imported 2 hours.'",
        )
        .await;
    browser
        .wait_for("document.querySelectorAll('#intensity-hours tbody tr td.num').length === 2")
        .await;
    assert_eq!(
        browser
            .text("#intensity-hours tbody tr:first-child td.num")
            .await,
        "40.5"
    );
    browser.screenshot("05c-site-detail").await;
    site_id
}

/// A CSV line for the hour starting `n` hours after the current one.
fn next_hour_line(n: i64, grams: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = time::OffsetDateTime::from_unix_timestamp((now / 3600 + n) * 3600).unwrap();
    let at = at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!("{at},{grams}")
}
