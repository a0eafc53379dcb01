//! The admin page in real headless Chromium: sign in, see machines appear, filter and sort,
//! open a machine and see its chart, create an enrollment token and see it once, export CSV,
//! sign in as a viewer and find no write controls, and a hostile hostname shown as text.
//! Figures are checked as shown: scaled units, money to the minor unit, the browser's locale
//! and time zone, chart axes on round times, the history's range picker. Screenshots of each
//! main screen at desktop (1280 px), 800 px and phone (390 px) widths land in
//! `target/screenshots/`.

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
    let agent = enrolled["agent_token"]
        .as_str()
        .unwrap_or_else(|| panic!("enrolling {hostname}: {enrolled} (token: {token})"));
    let t = past(30);
    for i in 0..30u64 {
        let mut beat = hb(
            i + 1,
            t + Duration::from_secs(60 * i),
            Some(idle + 60.0 * i as f64),
        );
        beat["idle_source"] = json!("x11-screensaver");
        app.send(agent, &beat).await;
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
        .script("return document.querySelectorAll('[data-write], button.danger, form.inline button[type=submit]:not(#machine-filters button):not(#savings-form button):not(#history-form button)').length;")
        .await
        .as_i64()
        .unwrap()
}

/// What a script answers, as strings with non-breaking spaces made plain.
async fn strings(browser: &Browser, js: &str) -> Vec<String> {
    let v = browser.script(js).await;
    v.as_array()
        .unwrap_or_else(|| panic!("{js} answered {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_default()
                .replace(['\u{a0}', '\u{202f}'], " ")
        })
        .collect()
}

/// The page's own formatter applied to a value the API answered: `call` is e.g.
/// `energy(V)` or `amount(V, 'USD')`, with `V` standing for `value`.
async fn formatted(browser: &Browser, call: &str, value: &Value) -> String {
    let js = format!(
        "return [window.greenopsFormat.{}];",
        call.replace('V', &value.to_string())
    );
    strings(browser, &js).await.remove(0)
}

/// The header's text: who is signed in, and the sign-out button.
async fn header(browser: &Browser) -> String {
    browser
        .script("return document.querySelector('.who').innerText.replace(/\\s+/g, ' ').trim();")
        .await
        .as_str()
        .unwrap()
        .to_string()
}

/// The text of one cell (`data-col`) of the machine row `id`.
async fn machine_cell(browser: &Browser, id: &str, col: &str) -> String {
    strings(
        browser,
        &format!("return [document.querySelector(\"tr[data-machine='{id}'] td[data-col={col}]\").textContent];"),
    )
    .await
    .remove(0)
}

/// Fails if any text on the screen shows a literal backtick (markup that was never rendered).
async fn no_backticks(browser: &Browser, screen: &str) {
    let page = browser.script("return document.body.innerText;").await;
    assert!(
        !page.as_str().unwrap().contains('`'),
        "a literal backtick on {screen}: {page}"
    );
}

/// Whether the page fits the window's width (wide tables scroll inside their own box).
async fn fits(browser: &Browser) -> bool {
    browser
        .script("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await
        == true
}

/// The machine list's hostnames that wrap somewhere other than after a dot, hyphen,
/// underscore, slash or space, as "hostname @ position".
async fn mid_word_breaks(browser: &Browser) -> Vec<String> {
    strings(browser, r#"return [...document.querySelectorAll('#machines-table a.host')].flatMap((a) => {
        const bad = [];
        const walker = document.createTreeWalker(a, NodeFilter.SHOW_TEXT);
        let prev = null, at = 0;
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
          for (let i = 0; i < n.length; i++, at++) {
            const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
            const box = r.getClientRects()[0];
            if (!box) continue;
            if (prev && box.top > prev.top + 2 && !/[-._\/\s]/.test(prev.ch) && !/\s/.test(n.data[i])) bad.push(`${a.textContent} @ ${at}`);
            prev = { ch: n.data[i], top: box.top };
          }
        }
        return bad;
      });"#).await
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
    browser.resize(1280, 900).await;

    // Sign in: the overview counts no machine yet; the header names the user once.
    sign_in(&browser, &app, "admin").await;
    assert_eq!(browser.text("[data-card=total] .value").await, "0");
    assert_eq!(header(&browser).await, "admin Sign out");

    // Every figure goes through one set of formatters (the browser here is en-US, UTC):
    // units scaled to stay between 1 and 1000 with three significant digits, money to the
    // currency's minor unit with amounts below it still visible, durations in whole units.
    assert_eq!(
        strings(
            &browser,
            r#"const f = window.greenopsFormat; return [
              f.energy("0"), f.energy("0.0842"), f.energy("0.9996"), f.energy("12.345"), f.energy("1234.5"),
              f.energy("0.000001"), f.energyJ("3600"), f.co2("532"), f.co2("1532"), f.co2("2500000"),
              f.amount("0.004", "EUR"), f.amount("0.006", "EUR"), f.amount("1234.5", "USD"), f.amount("0", "EUR"),
              f.amount("0.4", "JPY"), f.amount("12.6", "JPY"), f.amount("1.2345", "KWD"),
              f.duration(42), f.duration(3600), f.duration(5400), f.duration(86400), f.duration(200000),
              f.percent(0.07), f.dateTime("2026-12-02T12:00:00Z")];"#
        )
        .await,
        [
            "0 Wh", "84.2 Wh", "1.00 kWh", "12.3 kWh", "1.23 MWh", "< 0.01 Wh", "1.00 Wh", "532 g",
            "1.53 kg", "2.50 t", "< €0.01", "€0.01", "$1,234.50", "€0.00", "< ¥1", "¥13",
            "KWD 1.235", "42 s", "1 h", "1 h 30 min", "1 d", "2 d 8 h", "7.0%",
            "Dec 2, 2026, 12:00 PM"
        ]
    );

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
    // The period table shows the API's figures through those formatters, in scaled units.
    let stats: Value = app
        .call(&admin, reqwest::Method::GET, "/api/v1/stats", None)
        .await
        .json()
        .await
        .unwrap();
    let all = stats["periods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["period"] == "all")
        .unwrap();
    let shown = strings(
        &browser,
        "const r = document.querySelector('tr[data-period=all]'); return ['waste-energy', 'waste-co2', 'waste-cost'].map((k) => r.querySelector(`[data-col=${k}]`).textContent);",
    )
    .await;
    assert_eq!(
        shown,
        [
            formatted(&browser, "energy(V)", &all["waste_kwh"]).await,
            formatted(&browser, "co2(V)", &all["waste_co2_grams"]).await,
            formatted(&browser, "amount(V, 'USD')", &all["costs"][0]["waste_cost"]).await,
        ]
    );
    // Three machines idle for about 25 minutes at 65 W: tens of watt-hours, not "0.07 kWh".
    assert!(
        shown[0].ends_with(" Wh") && !shown[0].starts_with('<'),
        "{shown:?}"
    );
    // The trend's value axis is in the same units; its days are labelled in the locale.
    let ticks = strings(
        &browser,
        "return [...document.querySelectorAll('#trend svg text')].map((t) => t.textContent);",
    )
    .await;
    assert!(ticks.iter().any(|t| t.ends_with(" Wh")), "{ticks:?}");
    assert!(
        browser
            .script("return [...document.querySelectorAll('#trend [data-tick]')].every((t) => /^\\d{4}-\\d{2}-\\d{2}$/.test(t.dataset.tick)) && document.querySelectorAll('#trend [data-tick]').length >= 3;")
            .await
            == true
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
    // The list shows what each machine's idle time cost, to the cent; a fraction of a cent is
    // "< $0.01", never "$0.00".
    assert!(
        browser
            .script("return !document.querySelector('button[data-sort=idle_cost]') && [...document.querySelectorAll('#machines-table th')].some((th) => th.textContent === 'Idle cost');")
            .await
            == true
    );
    let listed: Value = app
        .call(
            &admin,
            reqwest::Method::GET,
            "/api/v1/machines?q=alpha",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let alpha_row = &listed["items"][0];
    let idle_cost = &alpha_row["costs"][0]["idle_cost"];
    assert!(
        idle_cost.as_str().unwrap().parse::<f64>().unwrap() < 0.005,
        "{alpha_row}"
    );
    assert_eq!(machine_cell(&browser, &alpha, "idle_cost").await, "< $0.01");
    assert_eq!(
        machine_cell(&browser, &alpha, "idle_cost").await,
        formatted(&browser, "amount(V, 'USD')", idle_cost).await
    );
    let idle_energy = machine_cell(&browser, &alpha, "idle_energy").await;
    assert_eq!(
        idle_energy,
        formatted(&browser, "energyJ(V)", &alpha_row["idle_energy_j"]).await
    );
    assert!(idle_energy.ends_with(" Wh"), "{idle_energy}");
    browser.screenshot("02-machines").await;

    // Detail: the history chart is drawn with bars.
    browser
        .click(&format!("tr[data-machine='{alpha}'] a.host"))
        .await;
    browser
        .wait_for("document.querySelectorAll('#history svg rect').length > 0")
        .await;
    assert_eq!(browser.text("h1.host").await, "alpha-pc idle");
    // What the agent last reported: CPU, memory, uptime and how it measures idle time.
    let facts = strings(
        &browser,
        "return ['cpu', 'memory', 'uptime', 'idle-source', 'idle-energy', 'idle-cost'].map((k) => document.querySelector(`[data-fact=${k}]`).textContent);",
    )
    .await;
    assert_eq!(
        facts[..4],
        ["7.0%", "41.0%", "1 d", "X11 screen saver extension"]
    );
    assert_eq!(
        facts[4],
        formatted(&browser, "energyJ(V)", &alpha_row["idle_energy_j"]).await
    );
    assert_eq!(facts[5], "< $0.01");
    // The history: the last 24 hours, one bar per hour, the time axis on round local hours.
    assert!(
        browser
            .text("#history-note")
            .await
            .starts_with("One bar per 1 h,"),
    );
    let round_hours = "(() => { const t = [...document.querySelectorAll('#history [data-tick]')].map((x) => new Date(Number(x.dataset.tick)));
        const gap = t.length > 1 ? (t[1] - t[0]) / 3600e3 : 1;
        return t.length >= 3 && [1, 2, 3, 6, 12].includes(gap) && t.every((d) => d.getMinutes() === 0 && d.getSeconds() === 0 && d.getHours() % gap === 0); })()";
    browser.wait_for(round_hours).await;
    browser.screenshot("03-machine-detail").await;

    // A preset: the last 7 days from local midnight, 3-hour bars, days on the axis.
    browser
        .script("const s = document.querySelector('#history-range'); s.value = '7d'; s.dispatchEvent(new Event('change'));")
        .await;
    browser
        .wait_for("document.querySelector('#history-note')?.textContent.replace(/\\s/g, ' ').startsWith('One bar per 3 h,') && location.hash.endsWith('?range=7d')")
        .await;
    assert!(
        browser
            .script("const d = new Date(); const from = new Date(d.getFullYear(), d.getMonth(), d.getDate() - 6).getTime();
                     const ticks = [...document.querySelectorAll('#history [data-tick]')].map((x) => new Date(Number(x.dataset.tick)));
                     return Date.parse(document.querySelector('#history svg g[data-start]').dataset.start) === from
                       && ticks.length >= 3 && ticks.every((t) => t.getHours() === 0 && t.getMinutes() === 0);")
            .await
            == true,
        "7 days start at local midnight and the axis is on local midnights"
    );
    // Chosen dates: two whole local days, hourly bars, kept in the address.
    let days = strings(
        &browser,
        "const iso = (d) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
         const now = new Date(); return [iso(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 2)), iso(new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1)), iso(now)];",
    )
    .await;
    let choose = |from: &str, to: &str| {
        format!(
            "for (const [id, v] of [['history-from', '{from}'], ['history-to', '{to}']]) {{ const i = document.getElementById(id); i.value = v; i.dispatchEvent(new Event('input')); }}
             document.querySelector('#history-form button[type=submit]').click();"
        )
    };
    browser.script(&choose(&days[0], &days[1])).await;
    let two_days = format!(
        "document.querySelector('#history-range')?.value === 'custom' && location.hash.endsWith('?from={}&to={}')
         && document.querySelectorAll('#history svg g[data-start]').length === 48
         && Date.parse(document.querySelector('#history svg g[data-start]')?.dataset.start) === new Date('{}T00:00').getTime()
         && document.querySelector('#history-note')?.textContent.replace(/\\s/g, ' ').startsWith('One bar per 1 h,')",
        days[0], days[1], days[0]
    );
    browser.wait_for(&two_days).await;
    browser.screenshot("03c-machine-history-range").await;
    // The first day after the last is refused before anything is asked.
    browser.script(&choose(&days[2], &days[1])).await;
    browser
        .wait_for("document.querySelector('#history-error').textContent === 'The first day must not be after the last.'")
        .await;
    // The address keeps the range: coming back shows the same two days.
    let hash = browser
        .script("return location.hash;")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert!(hash.contains(&format!("from={}", days[0])), "{hash}");
    browser.goto(&app.url("/#/overview")).await;
    browser.goto(&app.url(&format!("/{hash}"))).await;
    browser.wait_for(&two_days).await;

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
    assert_eq!(
        strings(
            &browser,
            "return [document.querySelector('[data-saving=energy] .value').textContent];"
        )
        .await[0],
        formatted(&browser, "energy(V)", &api["energy_kwh"]).await
    );
    browser.screenshot("13-savings").await;
    // A limit the server refuses is explained.
    browser.fill("#savings-minutes", "0").await;
    browser.click("#savings-form button[type=submit]").await;
    browser
        .wait_for("document.querySelector('#savings-error')?.textContent.includes('sleep_after_minutes') || document.querySelector('#savings-error')?.textContent.includes('minutes')")
        .await;

    // Enrollment token: its lifetime is chosen from a list, it is shown once and never listed
    // again, and the form is empty again for the next one.
    browser.goto(&app.url("/#/enrollment")).await;
    browser.find("#enrollment-form").await;
    assert_eq!(
        strings(&browser, "return [...document.querySelectorAll('select[name=expires_in_seconds] option')].map((o) => `${o.value}=${o.textContent}`);").await,
        [
            "3600=1 hour", "86400=1 day", "604800=7 days", "2592000=30 days", "7776000=90 days",
            "31536000=1 year", "=never"
        ]
    );
    assert_eq!(
        browser
            .script("return document.querySelector('select[name=expires_in_seconds]').value;")
            .await,
        "604800"
    );
    no_backticks(&browser, "enrollment tokens").await;
    assert_eq!(
        browser.text("main p.muted code").await,
        "greenops-agent enroll --enrollment-token …"
    );
    browser.fill("input[name=department]", "lab").await;
    browser
        .script("document.querySelector('select[name=expires_in_seconds]').value = '86400';")
        .await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("document.querySelector('[data-secret]')")
        .await;
    let token = browser.text("[data-secret]").await;
    assert!(token.starts_with("gok_enroll_"), "{token}");
    browser
        .wait_for("document.querySelector('input[name=department]').value === '' && document.querySelector('select[name=expires_in_seconds]').value === '604800'")
        .await;
    let tokens: Value = app
        .call(
            &admin,
            reqwest::Method::GET,
            "/api/v1/enrollment-tokens",
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let lab = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["department"] == "lab")
        .unwrap();
    let lifetime = lab["expires_at_ms"].as_i64().unwrap() - lab["created_at_ms"].as_i64().unwrap();
    assert!(
        (86_399_000..=86_401_000).contains(&lifetime),
        "one day: {lab}"
    );
    browser
        .wait_for(&format!(
            "document.querySelector(\"tr[data-token='{}'] [data-col=expires]\")?.textContent === window.greenopsFormat.dateTime({})",
            lab["id"], lab["expires_at_ms"]
        ))
        .await;
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
        no_backticks(&browser, hash).await;
        browser.screenshot(name).await;
    }

    // Creating an API token or a user leaves an empty form behind.
    browser.goto(&app.url("/#/api-tokens")).await;
    browser
        .fill("#api-token-form input[name=name]", "nightly export")
        .await;
    browser.click("#api-token-form button[type=submit]").await;
    browser
        .wait_for("document.querySelector('[data-secret]')?.textContent.startsWith('gok_') && document.querySelector('#api-token-form input[name=name]').value === '' && [...document.querySelectorAll('tbody td')].some((td) => td.textContent === 'nightly export')")
        .await;
    assert_eq!(
        browser.text("main p.muted code").await,
        "Authorization: Bearer <token>"
    );
    browser.goto(&app.url("/#/users")).await;
    browser
        .fill("form[data-write] input[name=username]", "carol")
        .await;
    browser
        .fill(
            "form[data-write] input[name=password]",
            "another long password",
        )
        .await;
    browser.click("form[data-write] button[type=submit]").await;
    browser
        .wait_for("[...document.querySelectorAll('tbody td')].some((td) => td.textContent === 'carol') && document.querySelector('form[data-write] input[name=username]').value === '' && document.querySelector('form[data-write] input[name=password]').value === ''")
        .await;

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
    assert_eq!(header(&browser).await, "viewer read-only Sign out");
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

    // 800 px: the list drops its least needed columns and fits; a long hostname wraps after
    // its dots and hyphens, never inside a word, and the usual ones stay on one line.
    const LONG: &str = "reception-desk-workstation-07.paris.example.com";
    // (The admin signed out in the browser, which ended their sessions: another admin enrols it.)
    let provisioner = app.operator("provisioner", Role::Admin).await;
    let long = machine(&app, &provisioner, LONG, "front office", 400.0).await;
    browser.resize(800, 900).await;
    browser.goto(&app.url("/#/overview")).await;
    browser.goto(&app.url("/#/machines")).await;
    browser
        .wait_for(&format!(
            "document.querySelector(\"tr[data-machine='{long}'] a.host\")"
        ))
        .await;
    assert_eq!(mid_word_breaks(&browser).await, Vec::<String>::new());
    let lines = browser
        .script(&format!(
            "const lines = (id) => document.querySelector(`tr[data-machine='${{id}}'] a.host`).getClientRects().length;
             return [lines('{long}'), lines('{alpha}')];"
        ))
        .await;
    assert!(
        lines[0].as_u64().unwrap() >= 2 && lines[1] == 1,
        "the long hostname wraps (after a hyphen or dot), alpha-pc does not: {lines}"
    );
    assert!(fits(&browser).await, "the machine list fits 800 px");
    browser.screenshot("14-machines-800px").await;

    // A phone (390 px): every main screen fits; the machine list becomes one card per
    // machine; the menu scrolls sideways.
    browser.resize(390, 844).await;
    for (hash, name, ready) in [
        (
            "overview".to_string(),
            "12-phone-overview",
            "document.querySelector('[data-card=total] .value') && document.querySelector('#trend svg')",
        ),
        (
            "machines".to_string(),
            "12b-phone-machines",
            "document.querySelector('#machines-table a.host')",
        ),
        (
            format!("machine/{long}"),
            "12c-phone-machine-detail",
            "document.querySelector('#history svg g') && document.querySelector('[data-fact=idle-source]')",
        ),
        (
            "savings".to_string(),
            "12d-phone-savings",
            "document.querySelector('[data-saving=energy] .value')",
        ),
        (
            "sites".to_string(),
            "12e-phone-sites",
            "document.querySelector('table tbody tr td')",
        ),
    ] {
        browser.goto(&app.url(&format!("/#/{hash}"))).await;
        browser.wait_for(ready).await;
        assert!(fits(&browser).await, "{hash} fits a 390 px wide screen");
        no_backticks(&browser, &hash).await;
        browser.screenshot(name).await;
    }
    browser.goto(&app.url("/#/machines")).await;
    browser
        .wait_for("document.querySelector('#machines-table a.host')")
        .await;
    assert_eq!(
        browser
            .script(
                "return getComputedStyle(document.querySelector('#machines-table thead')).display;"
            )
            .await,
        "none",
        "a phone shows cards, not a table head"
    );

    // The browser's locale and time zone, whatever they are: German in Berlin.
    browser.resize(1280, 900).await;
    browser
        .cdp("Emulation.setLocaleOverride", json!({"locale": "de-DE"}))
        .await;
    browser
        .cdp(
            "Emulation.setTimezoneOverride",
            json!({"timezoneId": "Europe/Berlin"}),
        )
        .await;
    browser.goto(&app.url(&format!("/#/machine/{alpha}"))).await;
    browser.script("location.reload();").await;
    browser
        .wait_for("window.greenopsFormat && document.querySelector('#history svg g') && document.querySelector('[data-fact=cpu]')")
        .await;
    assert_eq!(
        strings(
            &browser,
            r#"const f = window.greenopsFormat; return [f.energy("12.345"), f.amount("1234.5", "EUR"), f.amount("0.004", "EUR"),
              f.dateTime("2026-12-02T12:00:00Z"), f.percent(0.07), document.querySelector('[data-fact=cpu]').textContent];"#
        )
        .await,
        ["12,3 kWh", "1.234,50 €", "< 0,01 €", "02.12.2026, 13:00", "7,0 %", "7,0 %"]
    );
    assert!(
        browser
            .script("return /^One bar per 1 h, \\d{2}\\.\\d{2}\\.\\d{4}, \\d{2}:\\d{2} to \\d{2}\\.\\d{2}\\.\\d{4}, \\d{2}:\\d{2}\\.$/.test(document.querySelector('#history-note').textContent.replace(/\\s/g, ' '));")
            .await
            == true,
        "{}",
        browser.text("#history-note").await
    );
    browser.screenshot("15-locale-de-berlin").await;

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
    browser
        .wait_for("document.querySelector('form[data-write] input[name=name]').value === '' && document.querySelector('form[data-write] textarea[name=bands]').value === ''")
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
