// GreenOps admin page: plain JavaScript, no dependencies, no build step.
// Everything from the server (hostnames above all) is inserted with textContent, never as
// HTML. Cookie-authenticated writes carry the X-GreenOps-CSRF header.
"use strict";

(() => {
  const REFRESH_MS = 30000;
  const app = document.getElementById("app");
  let me = null; // {username, role}
  let refreshTimer = null;
  let refresher = null; // re-fetches the current view's data in place

  // ---- DOM helpers -------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const svgNS = "http://www.w3.org/2000/svg";
  function s(tag, attrs) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }
  const isAdmin = () => me && me.role === "admin";

  // ---- API ---------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, body) {
      const e = (body && body.error) || {};
      super(e.message || `request failed (${status})`);
      this.status = status;
      this.code = e.code || "error";
      this.fields = e.fields || {};
    }
  }
  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: {} };
    if (method !== "GET") init.headers["X-GreenOps-CSRF"] = "1";
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (res.status === 204) return null;
    let data = null;
    try { data = await res.json(); } catch (_) { data = null; }
    if (!res.ok) {
      if (res.status === 401 && me && !path.endsWith("/auth/login")) {
        me = null;
        showLogin("Your session ended; please sign in again.");
      }
      throw new ApiError(res.status, data);
    }
    return data;
  }

  // ---- Formatting --------------------------------------------------------------------
  const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const num = (x, digits) => new Intl.NumberFormat(undefined, { maximumFractionDigits: digits ?? 2 }).format(Number(x));
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s0 = Math.round(Number(seconds));
    if (s0 < 60) return `${s0} s`;
    if (s0 < 3600) return `${Math.floor(s0 / 60)} min`;
    if (s0 < 86400) return `${(s0 / 3600).toFixed(1)} h`;
    return `${(s0 / 86400).toFixed(1)} d`;
  }
  function ago(iso) {
    if (!iso) return "never";
    const secs = (Date.now() - Date.parse(iso)) / 1000;
    return secs < 5 ? "just now" : `${duration(Math.max(0, secs))} ago`;
  }
  const kwh = (joules) => `${num(Number(joules) / 3.6e6, 3)} kWh`;
  const when = (ms) => (ms ? new Date(ms).toLocaleString() : "—");
  const badge = (status) => h("span", { class: `badge ${status}` }, status);

  // ---- Rates in local time: days, spans, bands, moments ---------------------------------
  const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
  function parseDays(text) {
    const out = [];
    for (const part of text.split(",").map((x) => x.trim().toLowerCase()).filter(Boolean)) {
      const m = part.match(/^([a-z]{3})(?:-([a-z]{3}))?$/);
      const a = m ? DAYS.indexOf(m[1]) : -1, b = m ? DAYS.indexOf(m[2] || m[1]) : -1;
      if (a < 0 || b < a) throw new Error(`"${part}" is not a day or a range of days (mon, tue, … sun; e.g. mon-fri)`);
      for (let i = a; i <= b; i++) if (!out.includes(DAYS[i])) out.push(DAYS[i]);
    }
    if (!out.length) throw new Error("name at least one day");
    return DAYS.filter((d) => out.includes(d));
  }
  function formatDays(days) {
    const idx = days.map((d) => DAYS.indexOf(d)).sort((a, b) => a - b);
    const runs = [];
    for (const i of idx) {
      const last = runs[runs.length - 1];
      if (last && last[1] === i - 1) last[1] = i; else runs.push([i, i]);
    }
    return runs.map(([a, b]) => (a === b ? DAYS[a] : b === a + 1 ? `${DAYS[a]},${DAYS[b]}` : `${DAYS[a]}-${DAYS[b]}`)).join(",");
  }
  // One span per line (or separated by ";"): "mon-fri 08:00-18:30", bands add a price.
  function parseSpans(text, withPrice) {
    const example = withPrice ? "mon-fri 08:00-18:30 0.30" : "mon-fri 08:00-18:00";
    return text.split(/[\n;]/).map((l) => l.trim()).filter(Boolean).map((line, i) => {
      const m = line.match(/^(\S+)\s+(\d{1,2}:\d\d)\s*-\s*(\d{1,2}:\d\d)(?:\s+(\S+))?$/);
      if (!m || Boolean(m[4]) !== withPrice) throw new Error(`line ${i + 1}: write it as "${example}"`);
      const pad = (t) => t.padStart(5, "0");
      let days;
      try { days = parseDays(m[1]); } catch (e) { throw new Error(`line ${i + 1}: ${e.message}`); }
      const span = { days, start: pad(m[2]), end: pad(m[3]) };
      if (withPrice) span.price_per_kwh = m[4];
      return span;
    });
  }
  const formatSpans = (spans, withPrice) => (spans || [])
    .map((x) => `${formatDays(x.days)} ${x.start}-${x.end}${withPrice ? ` ${x.price_per_kwh}` : ""}`).join("\n");
  const parseList = (text) => text.split(/[\s,]+/).map((x) => x.trim()).filter(Boolean);
  // A datetime-local value is the browser's local time; the API wants RFC 3339.
  function parseMoment(text) {
    const t = Date.parse(text);
    if (Number.isNaN(t)) throw new Error("not a date and time");
    return new Date(t).toISOString();
  }
  const fromField = { name: "effective_from", label: "Effective from", type: "datetime-local", parse: parseMoment,
    hint: "Empty: now. Never in the past." };
  const since = (iso) => (iso ? new Date(iso).toLocaleString() : "the beginning");

  // ---- Forms with field-level errors -------------------------------------------------
  // fields: [{name, label, type, value, options, required, step, min}]
  function formFor(fields, submitLabel, onSubmit, extra) {
    const errors = {};
    const inputs = {};
    const formError = h("p", { class: "form-error", role: "alert" });
    const form = h("form", { class: "inline", novalidate: true, id: extra && extra.id, "data-write": extra && extra.write ? "" : null });
    for (const f of fields) {
      const id = `f-${Math.random().toString(36).slice(2)}`;
      let input;
      if (f.options) {
        input = h("select", { id, name: f.name },
          f.options.map((o) => h("option", { value: o.value ?? o, selected: (o.value ?? o) === f.value }, o.label ?? o)));
      } else if (f.type === "textarea") {
        input = h("textarea", { id, name: f.name, rows: f.rows || 3, placeholder: f.placeholder, spellcheck: "false" });
        input.value = f.value ?? "";
      } else {
        input = h("input", { id, name: f.name, type: f.type || "text", value: f.value ?? "", step: f.step, min: f.min,
          autocomplete: f.autocomplete || "off", required: f.required, placeholder: f.placeholder });
      }
      const err = h("p", { class: "field-error", id: `${id}-err` });
      input.setAttribute("aria-describedby", `${id}-err`);
      inputs[f.name] = input;
      errors[f.name] = err;
      form.append(h("div", { class: f.wide ? "field wide" : "field" }, h("label", { for: id }, f.label), input,
        f.hint ? h("p", { class: "hint" }, f.hint) : null, err));
    }
    form.append(h("div", { class: "field" }, h("button", { type: "submit" }, submitLabel)));
    const wrap = h("div", {}, form, formError);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      for (const n of Object.keys(errors)) { errors[n].textContent = ""; inputs[n].removeAttribute("aria-invalid"); }
      formError.textContent = "";
      const values = {};
      const fieldError = (name, msg) => { errors[name].textContent = msg; inputs[name].setAttribute("aria-invalid", "true"); };
      let bad = false;
      for (const f of fields) {
        const raw = inputs[f.name].value;
        if (raw === "" && !f.keepEmpty) continue;
        try {
          values[f.name] = f.parse ? f.parse(raw) : (f.type === "number" ? Number(raw) : raw);
        } catch (e) { fieldError(f.name, e.message); bad = true; }
      }
      if (bad) return;
      try {
        await onSubmit(values, form);
      } catch (e) {
        if (!(e instanceof ApiError)) { formError.textContent = e.message; return; }
        let shown = false;
        for (const [name, msg] of Object.entries(e.fields)) {
          // A server field such as `bands[1]` belongs to the `bands` input.
          const base = name.replace(/[[.].*$/, "");
          const target = errors[name] ? name : (errors[base] ? base : null);
          if (target) {
            fieldError(target, target === name ? msg : `${name.slice(base.length).replace(/^\./, "")}: ${msg}`);
            shown = true;
          }
        }
        if (!shown) formError.textContent = e.message;
      }
    });
    return wrap;
  }

  function table(columns, rows, empty) {
    const head = h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : (c.cls || null), scope: "col" }, c.label)));
    const body = h("tbody", {});
    if (!rows.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty || "Nothing here yet.")));
    for (const r of rows) body.append(h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : (c.cls || null) }, c.cell(r)))));
    return h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, head), body));
  }

  function secretBox(title, token) {
    const code = h("code", { "data-secret": "" }, token);
    const copy = h("button", { type: "button", class: "secondary", onclick: async () => {
      try { await navigator.clipboard.writeText(token); copy.textContent = "Copied"; }
      catch (_) {
        const range = document.createRange(); range.selectNodeContents(code);
        const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
        copy.textContent = "Selected — press Ctrl+C";
      }
    } }, "Copy");
    return h("div", { class: "secret", role: "status" }, h("strong", {}, title),
      h("p", { class: "muted" }, "Copy it now: it is shown only this once."), code, copy);
  }

  // ---- Shell -------------------------------------------------------------------------
  const NAV = [
    ["overview", "Overview"], ["savings", "Savings"], ["machines", "Machines"], ["sites", "Sites"], ["profiles", "Power profiles"],
    ["users", "Users", true], ["enrollment", "Enrollment tokens", true], ["api-tokens", "API tokens", true],
    ["settings", "Settings"], ["audit", "Audit log", true],
  ];

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { view: parts[0] || "overview", arg: parts[1], params: new URLSearchParams(query || "") };
  }

  function shell(view, content) {
    const nav = h("nav", { "aria-label": "Main" }, NAV.filter(([, , adminOnly]) => !adminOnly || isAdmin())
      .map(([id, label]) => h("a", { href: `#/${id}`, "aria-current": id === view ? "page" : null }, label)));
    const logout = h("button", { type: "button", class: "secondary", onclick: async () => {
      try { await api("POST", "/api/v1/auth/logout"); } catch (_) { /* signed out anyway */ }
      me = null; showLogin();
    } }, "Sign out");
    app.replaceChildren(
      h("header", { class: "topbar" },
        h("div", { class: "brand" }, h("img", { src: "/assets/icon.svg", alt: "" }), "GreenOps"), nav,
        h("div", { class: "who" }, h("span", {}, me.username), h("span", { class: "role" }, me.role), logout)),
      h("main", { id: "main" }, content));
  }

  function showLogin(message) {
    stopRefresh();
    const error = h("p", { class: "form-error", role: "alert" }, message || "");
    const user = h("input", { id: "login-username", name: "username", autocomplete: "username", required: true });
    const pass = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
    const form = h("form", { id: "login-form" },
      h("div", { class: "field" }, h("label", { for: "login-username" }, "Username"), user),
      h("div", { class: "field" }, h("label", { for: "login-password" }, "Password"), pass),
      h("button", { type: "submit" }, "Sign in"), error);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        const res = await api("POST", "/api/v1/auth/login", { username: user.value, password: pass.value });
        me = res.user;
        route();
      } catch (e) {
        error.textContent = e.status === 429 ? e.message : (e.status === 401 ? "Wrong username or password." : e.message);
      }
    });
    app.replaceChildren(h("main", {}, h("div", { class: "login panel" },
      h("div", { class: "brand" }, h("img", { src: "/assets/icon.svg", alt: "" }), "GreenOps"),
      h("h1", {}, "Sign in"), form)));
    user.focus();
  }

  function stopRefresh() { if (refreshTimer) clearInterval(refreshTimer); refreshTimer = null; refresher = null; }
  function startRefresh(fn) {
    stopRefresh();
    refresher = fn;
    refreshTimer = setInterval(() => { if (refresher && !document.hidden) refresher().catch(() => {}); }, REFRESH_MS);
  }

  async function route() {
    if (!me) return showLogin();
    const { view, arg, params } = parseHash();
    stopRefresh();
    const views = { overview, savings, machines, machine, sites, site, profiles, users, enrollment, "api-tokens": apiTokens, settings, audit };
    const render = views[view] || overview;
    const content = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    shell({ machine: "machines", site: "sites" }[view] || view, content);
    try {
      await render(content, arg, params);
    } catch (e) {
      content.replaceChildren(h("div", { class: "panel" }, h("h1", {}, "Something went wrong"), h("p", {}, e.message)));
    }
  }

  // ---- Overview ----------------------------------------------------------------------
  async function overview(root) {
    const cards = h("div", { class: "cards" });
    const periods = h("div", {});
    const top = h("div", {});
    const stamp = h("p", { class: "refreshed" });
    const trend = h("div", { id: "trend" });
    root.replaceChildren(h("h1", {}, "Fleet overview"), cards, h("div", { class: "panel" }, h("h2", {}, "Idle waste"), periods),
      h("div", { class: "panel" }, h("h2", {}, "Waste per day, last 30 days"), trend),
      h("div", { class: "panel" }, h("h2", {}, "Top wasters (all time)"), top), stamp);
    const load = async () => {
      const st = await api("GET", "/api/v1/stats");
      const m = st.machines;
      cards.replaceChildren(...[["total", "Machines", m.total], ["active", "Active", m.active], ["idle", "Idle", m.idle],
        ["offline", "Offline", m.offline], ["unknown", "Unknown", m.unknown]]
        .map(([cls, label, v]) => h("div", { class: `card ${cls}`, "data-card": cls }, h("div", { class: "label" }, label), h("div", { class: "value" }, nf.format(v)))));
      const names = { today: "Today (UTC)", "7d": "Last 7 days", "30d": "Last 30 days", all: "All time" };
      periods.replaceChildren(table([
        { label: "Period", cell: (p) => names[p.period] || p.period },
        { label: "Idle ratio", num: true, cell: (p) => `${num(p.idle_ratio * 100, 1)} %` },
        { label: "Idle time", num: true, cell: (p) => duration(p.idle_seconds) },
        { label: "Waste energy", num: true, cell: (p) => `${num(p.waste_kwh, 3)} kWh` },
        { label: "Waste cost", num: true, cell: (p) => p.costs.length ? p.costs.map((c) => `${num(c.waste_cost, 2)} ${c.currency}`).join(" + ") : "—" },
        { label: "Waste CO₂", num: true, cell: (p) => `${num(Number(p.waste_co2_grams) / 1000, 2)} kg` },
        { label: "Avoidable", num: true, cell: (p) => `${num(p.avoidable_kwh, 3)} kWh` },
        { label: "After hours", num: true, cell: (p) => duration(p.after_hours_idle_seconds) },
        { label: "Idle data", num: true, cell: (p) => `${num(p.idle_data_ratio * 100, 1)} %` },
        { label: "Total energy", num: true, cell: (p) => `${num(p.energy_kwh, 3)} kWh` },
      ], st.periods));
      top.replaceChildren(machineTable(st.top_wasters, null));
      const daily = await api("GET", "/api/v1/stats/daily?days=30");
      trend.replaceChildren(trendChart(daily.days), h("div", { class: "legend" },
        h("span", { class: "l-idle" }, "wasted idle (kWh)"), h("span", { class: "l-active" }, "of which sleep would have saved"),
        h("span", { class: "l-after" }, "after hours")));
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every 30 s`;
    };
    await load();
    startRefresh(load);
  }

  // Daily waste (bars), the avoidable part inside them, and the after-hours waste (line).
  function trendChart(days) {
    const W = 900, H = 200, left = 46, bottom = 22, top = 10;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart trend", role: "img", "aria-label": "Daily waste and avoidable energy" });
    const max = days.reduce((m, d) => Math.max(m, Number(d.idle_energy_kwh)), 0) || 1;
    const y = (v) => (H - bottom) - (v / max) * (H - bottom - top);
    const step = (W - left) / Math.max(1, days.length);
    svg.append(s("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    svg.append(Object.assign(s("text", { x: 0, y: top + 10 }), { textContent: `${num(max, 2)} kWh` }));
    const points = [];
    days.forEach((d, i) => {
      const x = left + i * step;
      for (const [key, cls] of [["idle_energy_kwh", "bar-idle"], ["avoidable_energy_kwh", "bar-active"]]) {
        const v = Number(d[key]);
        if (v <= 0) continue;
        const r = s("rect", { x: x + 1, y: y(v), width: Math.max(1, step - 2), height: (H - bottom) - y(v), class: cls, "data-day": d.day });
        const title = s("title", {});
        title.textContent = `${d.day}: ${num(d.idle_energy_kwh, 3)} kWh wasted, ${num(d.avoidable_energy_kwh, 3)} kWh avoidable, ${num(d.after_hours_idle_energy_kwh, 3)} kWh after hours`;
        r.append(title);
        svg.append(r);
      }
      points.push(`${x + step / 2},${y(Number(d.after_hours_idle_energy_kwh))}`);
      if (i % 5 === 0) svg.append(Object.assign(s("text", { x: x + 2, y: H - 6 }), { textContent: d.day.slice(5) }));
    });
    svg.append(s("polyline", { points: points.join(" "), class: "line-after" }));
    return svg;
  }

  // ---- Savings: what a sleep policy would have saved -----------------------------------
  const money = (costs, digits) => {
    const entries = Object.entries(costs || {});
    return entries.length ? entries.map(([c, v]) => `${num(v, digits ?? 2)} ${c}`).join(" + ") : "—";
  };
  const scaled = (costs, f) => Object.fromEntries(Object.entries(costs || {}).map(([c, v]) => [c, Number(v) * f]));

  function barChart(groups) {
    const W = 900, row = 26, left = 260, H = Math.max(1, groups.length) * row + 8;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "bars", role: "img", "aria-label": "Energy saved per site and department" });
    const max = groups.reduce((m, g) => Math.max(m, Number(g.energy_kwh)), 0) || 1;
    groups.forEach((g, i) => {
      const y = 4 + i * row;
      const label = s("text", { x: 0, y: y + 17 });
      label.textContent = `${g.site} · ${g.department || "no department"}`;
      const width = ((W - left - 120) * Number(g.energy_kwh)) / max;
      const bar = s("rect", { x: left, y: y + 3, width: Math.max(1, width), height: row - 8, class: "bar-saved" });
      const title = s("title", {});
      title.textContent = `${num(g.energy_kwh, 3)} kWh, ${money(g.costs)}`;
      bar.append(title);
      const value = s("text", { x: left + width + 6, y: y + 17 });
      value.textContent = `${num(g.energy_kwh, 2)} kWh`;
      svg.append(label, bar, value);
    });
    return svg;
  }

  async function savings(root, _arg, params) {
    const sitesRes = await api("GET", "/api/v1/sites");
    const minutes = h("input", { id: "savings-minutes", type: "number", min: 1, max: 10080, step: 1, value: params.get("sleep_after_minutes") || 30 });
    const presets = h("div", { class: "actions", role: "group", "aria-label": "Presets" }, [15, 30, 60, 120].map((n) =>
      h("button", { type: "button", class: "secondary", "data-preset": n, onclick: () => { minutes.value = n; run(); } }, n < 60 ? `${n} min` : `${n / 60} h`)));
    const when = h("select", { id: "savings-when" }, [["always", "always"], ["after_hours", "after hours only"]]
      .map(([v, l]) => h("option", { value: v, selected: v === params.get("when") }, l)));
    const site = h("select", { id: "savings-site" }, [h("option", { value: "" }, "every site"),
      ...sitesRes.items.map((x) => h("option", { value: x.name, selected: x.name === params.get("site") }, x.name))]);
    const dept = h("input", { id: "savings-department", placeholder: "every department", value: params.get("department") || "" });
    const days = h("select", { id: "savings-days" }, [1, 7, 14, 30].map((n) => h("option", { value: n, selected: String(n) === (params.get("days") || "7") }, n === 1 ? "last day" : `last ${n} days`)));
    const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
    const form = h("form", { class: "inline", id: "savings-form", role: "search", novalidate: true },
      field("savings-minutes", "Sleep after (minutes without input)", minutes), h("div", { class: "field" }, h("span", { class: "label-like" }, "Presets"), presets),
      field("savings-when", "When", when), field("savings-site", "Site", site), field("savings-department", "Department", dept),
      field("savings-days", "Window", days), h("div", { class: "field" }, h("button", { type: "submit" }, "Compute")));
    const cards = h("div", { class: "cards", id: "savings-cards" });
    const summary = h("p", { class: "muted", id: "savings-summary" });
    const breakdown = h("div", { id: "savings-groups" });
    const error = h("p", { class: "form-error", role: "alert", id: "savings-error" });
    root.replaceChildren(h("h1", {}, "What a sleep policy would save"),
      h("p", { class: "muted" }, "Computed exactly from the recorded heartbeats: every second a machine sat idle past the limit, at what its sleep would have saved (idle minus sleep watts), priced with the tariff and grid intensity in force then. Projections scale the window to 30 days."),
      h("div", { class: "panel" }, form, error), cards, summary, h("div", { class: "panel" }, h("h2", {}, "Where (as incurred)"), breakdown));
    const run = async () => {
      error.textContent = "";
      const p = new URLSearchParams({ sleep_after_minutes: minutes.value, when: when.value });
      if (site.value) p.set("site", site.value);
      if (dept.value.trim()) p.set("department", dept.value.trim());
      const to = new Date(), from = new Date(to.getTime() - Number(days.value) * 864e5);
      p.set("from", from.toISOString()); p.set("to", to.toISOString());
      const shown = new URLSearchParams(p); shown.delete("from"); shown.delete("to"); shown.set("days", days.value);
      history.replaceState(null, "", `#/savings?${shown}`);
      let r;
      try { r = await api("GET", `/api/v1/savings/what-if?${p}`); } catch (e) {
        error.textContent = Object.keys(e.fields || {}).length ? `${e.message}: ${Object.values(e.fields).join("; ")}` : e.message;
        return;
      }
      const month = 30 / Number(days.value);
      cards.replaceChildren(...[
        ["energy", "Energy saved", `${num(r.energy_kwh, 2)} kWh`, `${num(Number(r.energy_kwh) * month, 1)} kWh per month`],
        ["cost", "Money saved", money(r.costs), `${money(scaled(r.costs, month))} per month`],
        ["co2", "CO₂ avoided", `${num(Number(r.co2_grams) / 1000, 2)} kg`, `${num(Number(r.co2_grams) * month / 1000, 1)} kg per month`],
        ["machines", "Machines that would sleep", `${nf.format(r.machines_affected)}`, `of ${nf.format(r.machines_considered)} idle past the limit`],
        ["sleeps", "Times they would sleep", nf.format(r.sleeps), `${num(r.sleeps / Math.max(1, r.machines_affected), 1)} per machine`],
      ].map(([key, label, value, sub]) => h("div", { class: "card total", "data-saving": key }, h("div", { class: "label" }, label),
        h("div", { class: "value" }, value), h("div", { class: "label" }, sub))));
      summary.textContent = `Sleep after ${r.sleep_after_minutes} min without input${r.when === "after_hours" ? ", outside business hours only" : ""}: ${duration(Number(r.slept_seconds))} asleep from ${new Date(r.from).toLocaleString()} to ${new Date(r.to).toLocaleString()}.`;
      breakdown.replaceChildren(r.groups.length ? barChart(r.groups) : "", table([
        { label: "Site", cell: (g) => g.site }, { label: "Department", cell: (g) => g.department || "—" },
        { label: "kWh", num: true, cell: (g) => num(g.energy_kwh, 3) }, { label: "Per month", num: true, cell: (g) => `${num(Number(g.energy_kwh) * month, 1)} kWh` },
        { label: "Cost", num: true, cell: (g) => money(g.costs) }, { label: "CO₂", num: true, cell: (g) => `${num(Number(g.co2_grams) / 1000, 3)} kg` },
        { label: "Machines", num: true, cell: (g) => nf.format(g.machines_affected) }, { label: "Sleeps", num: true, cell: (g) => nf.format(g.sleeps) },
      ], r.groups, "Nothing would have slept: no machine was idle past the limit in this window."));
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
    await run();
  }

  // ---- Machines ----------------------------------------------------------------------
  const SORTABLE = { hostname: "Hostname", site: "Site", department: "Department", status: "Status", last_seen: "Last seen",
    input_idle: "Input idle", idle_time: "Idle time", idle_energy: "Idle energy" };

  function machineTable(items, sorting) {
    const col = (key, label, cell, numeric) => ({ key, label, cell, num: numeric });
    const columns = [
      col("hostname", "Hostname", (m) => h("a", { class: "host", href: `#/machine/${encodeURIComponent(m.id)}` }, m.hostname)),
      col("status", "Status", (m) => badge(m.status)),
      col("site", "Site", (m) => m.site),
      col("department", "Department", (m) => m.department || "—"),
      col("last_seen", "Last seen", (m) => ago(m.last_seen)),
      col("input_idle", "Input idle", (m) => duration(m.input_idle_seconds), true),
      col("idle_time", "Idle time", (m) => duration(m.idle_seconds), true),
      col("idle_energy", "Idle energy", (m) => kwh(m.idle_energy_j), true),
    ];
    const head = h("tr", {}, columns.map((c) => {
      const th = h("th", { class: c.num ? "num" : null, scope: "col" });
      if (sorting) {
        const active = sorting.sort === c.key;
        if (active) th.setAttribute("aria-sort", sorting.order === "desc" ? "descending" : "ascending");
        th.append(h("button", { type: "button", class: "sort", "data-sort": c.key,
          onclick: () => sorting.onSort(c.key, active && sorting.order !== "desc" ? "desc" : "asc") }, c.label));
      } else th.append(c.label);
      return th;
    }));
    const body = h("tbody", {});
    if (!items.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, "No machines match.")));
    for (const m of items) body.append(h("tr", { "data-machine": m.id }, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.cell(m)))));
    return h("div", { class: "table-wrap" }, h("table", { id: sorting ? "machines-table" : null }, h("thead", {}, head), body));
  }

  async function machines(root, _arg, params) {
    const state = {
      q: params.get("q") || "", status: params.get("status") || "", site: params.get("site") || "",
      department: params.get("department") || "", sort: params.get("sort") || "hostname",
      order: params.get("order") || "asc", page: Number(params.get("page") || 1), per_page: Number(params.get("per_page") || 50),
    };
    const sites = (await api("GET", "/api/v1/sites")).items;
    const q = h("input", { id: "filter-q", type: "search", value: state.q, placeholder: "part of a hostname" });
    const status = h("select", { id: "filter-status" }, ["", "active", "idle", "offline", "unknown"]
      .map((v) => h("option", { value: v, selected: v === state.status }, v || "any")));
    const site = h("select", { id: "filter-site" }, [h("option", { value: "" }, "any"),
      ...sites.map((x) => h("option", { value: x.name, selected: x.name === state.site }, x.name))]);
    const dept = h("input", { id: "filter-department", value: state.department, placeholder: "exact name" });
    const perPage = h("select", { id: "per-page" }, [25, 50, 100, 200, 500].map((n) => h("option", { value: n, selected: n === state.per_page }, n)));
    const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
    const filters = h("form", { class: "inline", role: "search", id: "machine-filters" },
      field("filter-q", "Search", q), field("filter-status", "Status", status), field("filter-site", "Site", site),
      field("filter-department", "Department", dept), field("per-page", "Per page", perPage),
      h("div", { class: "field" }, h("button", { type: "submit" }, "Apply")));
    const navigate = () => {
      const p = new URLSearchParams();
      for (const [k, v] of Object.entries(state)) if (v !== "" && v !== null) p.set(k, v);
      history.replaceState(null, "", `#/machines?${p}`);
      load().catch((e) => { list.replaceChildren(h("p", { class: "form-error" }, e.message)); });
    };
    filters.addEventListener("submit", (ev) => {
      ev.preventDefault();
      Object.assign(state, { q: q.value.trim(), status: status.value, site: site.value, department: dept.value.trim(), per_page: Number(perPage.value), page: 1 });
      navigate();
    });
    const list = h("div", {});
    const pager = h("div", { class: "pager" });
    const stamp = h("p", { class: "refreshed" });
    const attribution = h("select", { id: "export-attribution", title: "Attribution of the CSV export" },
      [["incurred", "where incurred"], ["current", "where machines are now"]].map(([v, l]) => h("option", { value: v }, l)));
    const links = ["machine", "site", "department"].map((g) =>
      h("a", { class: "button secondary", href: `/api/v1/reports/energy.csv?group_by=${g}`, download: "", "data-export": g }, `CSV by ${g}`));
    attribution.addEventListener("change", () => {
      for (const a of links) a.href = `/api/v1/reports/energy.csv?group_by=${a.dataset.export}&attribution=${attribution.value}`;
    });
    const exportLinks = h("div", { class: "actions" }, h("label", { for: "export-attribution", class: "muted" }, "CSV"), attribution, links);
    root.replaceChildren(h("div", { class: "row" }, h("h1", {}, "Machines"), h("div", { class: "spacer" }), exportLinks),
      h("div", { class: "panel" }, filters), h("div", { class: "panel" }, list, pager), stamp);
    const load = async () => {
      const p = new URLSearchParams();
      for (const k of ["q", "status", "site", "department", "sort", "order", "page", "per_page"]) if (state[k] !== "") p.set(k, state[k]);
      const res = await api("GET", `/api/v1/machines?${p}`);
      list.replaceChildren(machineTable(res.items, { sort: state.sort, order: state.order,
        onSort: (key, order) => { state.sort = key; state.order = order; state.page = 1; navigate(); } }));
      const pages = Math.max(1, Math.ceil(res.total / res.per_page));
      pager.replaceChildren(
        h("button", { type: "button", class: "secondary", disabled: state.page <= 1, onclick: () => { state.page -= 1; navigate(); } }, "‹ Previous"),
        h("span", { id: "page-info" }, `Page ${state.page} of ${pages} · ${nf.format(res.total)} machines`),
        h("button", { type: "button", class: "secondary", disabled: state.page >= pages, onclick: () => { state.page += 1; navigate(); } }, "Next ›"));
      stamp.textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every 30 s`;
    };
    await load();
    startRefresh(load);
  }

  // ---- One machine -------------------------------------------------------------------
  function chart(points) {
    const W = 900, H = 240, left = 40, bottom = 22, top = 8;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "Idle, active, unknown and unobserved time per step" });
    const step = points.length ? (W - left) / points.length : 0;
    const max = points.reduce((m, p) => Math.max(m, p.observed_seconds + p.unobserved_seconds), 1);
    const y = (v) => (H - bottom) - (v / max) * (H - bottom - top);
    svg.append(s("line", { x1: left, y1: H - bottom, x2: W, y2: H - bottom, class: "axis" }));
    svg.append(Object.assign(s("text", { x: 0, y: top + 10 }), { textContent: duration(max) }));
    points.forEach((p, i) => {
      let base = 0;
      for (const [key, cls] of [["active_seconds", "bar-active"], ["idle_seconds", "bar-idle"], ["unknown_seconds", "bar-unknown"], ["unobserved_seconds", "bar-unobserved"]]) {
        const v = p[key];
        if (v <= 0) continue;
        const r = s("rect", { x: left + i * step + 1, y: y(base + v), width: Math.max(1, step - 2), height: y(base) - y(base + v), class: cls });
        const title = s("title", {});
        title.textContent = `${new Date(p.start).toLocaleString()}: ${key.replace("_seconds", "")} ${duration(v)}`;
        r.append(title);
        svg.append(r);
        base += v;
      }
      if (points.length <= 12 || i % Math.ceil(points.length / 8) === 0) {
        const t = s("text", { x: left + i * step + 2, y: H - 6 });
        t.textContent = new Date(p.start).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
        svg.append(t);
      }
    });
    return svg;
  }

  async function machine(root, id) {
    const m = await api("GET", `/api/v1/machines/${encodeURIComponent(id)}`);
    const facts = h("dl", { class: "facts" });
    const costs = h("div", {});
    const chartBox = h("div", { id: "history" });
    const range = h("select", { id: "history-range" }, [["24h", "Last 24 hours"], ["7d", "Last 7 days"], ["30d", "Last 30 days"]]
      .map(([v, l]) => h("option", { value: v }, l)));
    const fill = (mm) => {
      facts.replaceChildren(...[["Hostname", mm.hostname], ["Status", badge(mm.status)], ["Machine id", mm.id], ["Site", mm.site],
        ["Department", mm.department || "—"], ["Power profile", mm.power_profile], ["Operating system", `${mm.os} ${mm.os_version}`],
        ["Agent", mm.agent_version], ["Last seen", ago(mm.last_seen)], ["Input idle", duration(mm.input_idle_seconds)],
        ["Observed time", duration(mm.observed_seconds)], ["Idle time", duration(mm.idle_seconds)],
        ["Energy", kwh(mm.energy_j)], ["Idle energy", kwh(mm.idle_energy_j)]]
        .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
      costs.replaceChildren(table([{ label: "Currency", cell: (c) => c.currency }, { label: "Cost", num: true, cell: (c) => num(c.cost, 4) },
        { label: "Idle cost", num: true, cell: (c) => num(c.idle_cost, 4) },
        { label: "Avoidable cost", num: true, cell: (c) => num(c.avoidable_cost, 4) }], mm.costs, "No cost accounted yet."));
      placements.replaceChildren(table([{ label: "From", cell: (x) => since(x.effective_from) }, { label: "Site", cell: (x) => x.site },
        { label: "Department", cell: (x) => x.department || "—" }, { label: "Power profile", cell: (x) => x.power_profile },
        { label: "", cell: (x) => (x.effective_from && Date.parse(x.effective_from) > Date.now() ? "scheduled" : "") }],
      mm.placements.slice().reverse()));
    };
    const placements = h("div", { id: "placements" });
    fill(m);
    const loadChart = async () => {
      const span = { "24h": 864e5, "7d": 7 * 864e5, "30d": 30 * 864e5 }[range.value];
      const to = new Date(), from = new Date(to.getTime() - span);
      const hist = await api("GET", `/api/v1/machines/${encodeURIComponent(id)}/history?from=${from.toISOString()}&to=${to.toISOString()}`);
      chartBox.replaceChildren(chart(hist.points), h("div", { class: "legend" }, h("span", { class: "l-active" }, "active"),
        h("span", { class: "l-idle" }, "idle (waste)"), h("span", { class: "l-unknown" }, "unknown"), h("span", { class: "l-unobserved" }, "not observed")),
        h("p", { class: "muted" }, `One bar per ${duration(hist.step_seconds)}.`));
    };
    range.addEventListener("change", () => loadChart().catch(() => {}));
    const parts = [h("p", {}, h("a", { href: "#/machines" }, "‹ All machines")), h("h1", { class: "host" }, m.hostname),
      h("div", { class: "panel" }, h("div", { class: "row" }, h("h2", {}, "History"), h("div", { class: "spacer" }),
        h("div", { class: "field" }, h("label", { for: "history-range" }, "Range"), range)), chartBox),
      h("div", { class: "panel" }, h("h2", {}, "Facts"), facts), h("div", { class: "panel" }, h("h2", {}, "Totals by currency"), costs),
      h("div", { class: "panel" }, h("h2", {}, "Placements"),
        h("p", { class: "muted" }, "Newest first. Time is accounted where the machine was when it was incurred."), placements)];
    if (isAdmin()) {
      const [sites, profiles] = await Promise.all([api("GET", "/api/v1/sites"), api("GET", "/api/v1/power-profiles")]);
      parts.push(h("div", { class: "panel", "data-write": "" }, h("h2", {}, "Placement"),
        h("p", { class: "muted" }, "A move applies from now (or a later moment); time already incurred stays where it was."),
        formFor([
          { name: "site", label: "Site", options: sites.items.map((x) => x.name), value: m.site },
          { name: "department", label: "Department", value: m.department, keepEmpty: true },
          { name: "power_profile", label: "Power profile", options: profiles.items.map((x) => x.name), value: m.power_profile },
          fromField,
        ], "Save placement", async (v) => { fill(await api("PATCH", `/api/v1/machines/${encodeURIComponent(id)}`, v)); }, { write: true }),
        h("h2", {}, "Retire"),
        h("p", { class: "muted" }, "Revokes the agent's credential and hides the machine; its history and totals are kept."),
        h("button", { type: "button", class: "danger", "data-write": "", onclick: async () => {
          if (!confirm(`Retire ${m.hostname}?`)) return;
          await api("DELETE", `/api/v1/machines/${encodeURIComponent(id)}`);
          location.hash = "#/machines";
        } }, "Retire machine")));
    }
    root.replaceChildren(...parts);
    await loadChart();
    startRefresh(async () => { fill(await api("GET", `/api/v1/machines/${encodeURIComponent(id)}`)); await loadChart(); });
  }

  // ---- Sites and power profiles ------------------------------------------------------
  // Rates are versions: the list shows what is in force now and what is scheduled; every
  // change applies from a moment (now by default) and never rewrites accounted time.
  function deleteButton(what, path, reload) {
    return h("button", { type: "button", class: "danger", "data-write": "", onclick: async () => {
      if (!confirm(`Delete ${what}?`)) return;
      try { await api("DELETE", path); await reload(); } catch (e) { alert(e.message); }
    } }, "Delete");
  }
  const priceOf = (v) => (v.bands.length ? `${v.price_per_kwh} (+${v.bands.length} band${v.bands.length > 1 ? "s" : ""})` : v.price_per_kwh);
  const scheduledOf = (x) => (x.scheduled.length ? x.scheduled.map((v) => since(v.effective_from)).join(", ") : "—");

  async function sites(root) {
    const list = h("div", {});
    const load = async () => {
      const res = await api("GET", "/api/v1/sites");
      const cols = [
        { label: "Name", cell: (x) => h("a", { href: `#/site/${x.id}`, "data-site": x.name }, x.name) },
        { label: "Time zone", cell: (x) => x.timezone }, { label: "Currency", cell: (x) => x.currency },
        { label: "Price / kWh", num: true, cell: (x) => priceOf(x) },
        { label: "g CO₂e / kWh", num: true, cell: (x) => x.carbon_intensity_g_per_kwh },
        { label: "Business hours", cell: (x) => formatSpans(x.business_hours, false).replace(/\n/g, "; ") || "none" },
        { label: "Idle threshold", num: true, cell: (x) => (x.idle_threshold_seconds ? `${x.idle_threshold_seconds} s` : "global") },
        { label: "Machines", num: true, cell: (x) => nf.format(x.machines) },
        { label: "Scheduled", cell: scheduledOf },
      ];
      if (isAdmin()) cols.push({ label: "", cell: (x) => deleteButton(`site ${x.name}`, `/api/v1/sites/${x.id}`, load) });
      list.replaceChildren(table(cols, res.items));
    };
    root.replaceChildren(h("h1", {}, "Sites"),
      h("p", { class: "muted" }, "Where machines are: the tariff, grid carbon intensity and business hours of their electricity, in the site's time zone. Open a site for its tariff history, time-of-use bands and hourly intensity."),
      h("div", { class: "panel" }, list),
      isAdmin() ? h("div", { class: "panel", "data-write": "" }, h("h2", {}, "New site"), formFor(siteFields({}, true), "Create", async (v, form) => {
        await api("POST", "/api/v1/sites", v); form.reset(); await load();
      }, { write: true })) : "");
    await load();
  }

  // The fields of a site's figures; `creating` adds the name and leaves out effective_from.
  function siteFields(v, creating) {
    const fields = [
      { name: "currency", label: "Currency", value: v.currency || (creating ? "USD" : ""), placeholder: "EUR" },
      { name: "price_per_kwh", label: "Price per kWh", value: v.price_per_kwh, placeholder: "0.12" },
      { name: "carbon_intensity_g_per_kwh", label: "Grid g CO₂e/kWh", value: v.carbon_intensity_g_per_kwh, placeholder: "420" },
      { name: "timezone", label: "Time zone (IANA)", value: v.timezone || (creating ? "UTC" : ""), placeholder: "Europe/Paris" },
      { name: "bands", label: "Time-of-use bands", type: "textarea", wide: true, value: formatSpans(v.bands, true), keepEmpty: !creating,
        parse: (t) => parseSpans(t, true), placeholder: "mon-fri 08:00-18:30 0.30", hint: "One per line: days, local start-end, price. Other times: the price above." },
      { name: "business_hours", label: "Business hours", type: "textarea", wide: true, value: formatSpans(v.business_hours, false), keepEmpty: !creating,
        parse: (t) => parseSpans(t, false), placeholder: "mon-fri 08:00-18:00", hint: "One per line, local time. Idle outside them is after-hours waste." },
      { name: "holidays", label: "Holidays", value: (v.holidays || []).join(", "), keepEmpty: !creating, parse: parseList,
        placeholder: "2026-12-25, 2027-01-01", hint: "Local dates, after hours all day." },
      { name: "idle_threshold_seconds", label: "Idle threshold (s)", type: "number", min: 0, value: v.idle_threshold_seconds,
        placeholder: "global", hint: creating ? "Empty: the global setting." : "0 removes the override." },
    ];
    return creating ? [{ name: "name", label: "Name", required: true }, ...fields] : [...fields, fromField];
  }

  async function site(root, id) {
    const facts = h("dl", { class: "facts" });
    const scheduled = h("div", {});
    const tariffs = h("div", {});
    const hours = h("div", { id: "intensity-hours" });
    const editor = h("div", {});
    let current = null;
    const load = async () => {
      const [all, tf] = await Promise.all([api("GET", "/api/v1/sites"), api("GET", `/api/v1/sites/${encodeURIComponent(id)}/tariffs`)]);
      current = all.items.find((x) => String(x.id) === String(id));
      if (!current) throw new Error(`site ${id} not found`);
      const v = current;
      facts.replaceChildren(...[["Name", current.name], ["In force since", since(v.effective_from)], ["Time zone", v.timezone],
        ["Currency", v.currency], ["Price per kWh", v.price_per_kwh], ["Time-of-use bands", formatSpans(v.bands, true) || "none (flat price)"],
        ["Grid g CO₂e/kWh", `${v.carbon_intensity_g_per_kwh} (where no hourly value is imported)`],
        ["Business hours", formatSpans(v.business_hours, false) || "none"], ["Holidays", v.holidays.join(", ") || "none"],
        ["Idle threshold", v.idle_threshold_seconds ? `${v.idle_threshold_seconds} s (site override)` : "the global setting"],
        ["Machines now", nf.format(current.machines)]].flatMap(([k, val]) => [h("dt", {}, k), h("dd", { class: "pre" }, val)]));
      scheduled.replaceChildren(table([{ label: "From", cell: (x) => since(x.effective_from) }, { label: "Currency", cell: (x) => x.currency },
        { label: "Price / kWh", num: true, cell: (x) => priceOf(x) }, { label: "g CO₂e / kWh", num: true, cell: (x) => x.carbon_intensity_g_per_kwh },
        { label: "Time zone", cell: (x) => x.timezone }], current.scheduled, "No scheduled changes."));
      tariffs.replaceChildren(table([{ label: "From", cell: (x) => since(x.effective_from) }, { label: "Currency", cell: (x) => x.currency },
        { label: "Price / kWh", num: true, cell: (x) => x.price_per_kwh },
        { label: "Bands", cell: (x) => h("span", { class: "pre" }, formatSpans(x.bands, true) || "—") }], tf.items));
      if (isAdmin()) edit();
    };
    const loadHours = async () => {
      const from = new Date(Date.now() - 864e5), to = new Date(Date.now() + 7 * 864e5);
      const res = await api("GET", `/api/v1/sites/${encodeURIComponent(id)}/carbon-intensity?from=${from.toISOString()}&to=${to.toISOString()}`);
      hours.replaceChildren(h("p", { class: "muted" }, `Imported hours from ${from.toLocaleString()} to ${to.toLocaleString()}: ${res.hours.length}.`),
        table([{ label: "Hour (UTC start)", cell: (x) => x.hour_start }, { label: "Local", cell: (x) => new Date(x.hour_start).toLocaleString() },
          { label: "g CO₂e / kWh", num: true, cell: (x) => x.g_co2e_per_kwh }], res.hours.slice(0, 200), "None imported: the site's static intensity applies."));
    };
    const edit = () => {
      const v = current;
      const csv = h("textarea", { id: "intensity-csv", name: "csv", rows: 6, spellcheck: "false",
        placeholder: "hour_start,g_co2e_per_kwh\n2026-12-02T14:00:00Z,251.5" });
      const file = h("input", { id: "intensity-file", type: "file", accept: ".csv,text/csv" });
      file.addEventListener("change", async () => { if (file.files[0]) csv.value = await file.files[0].text(); });
      const result = h("p", { role: "status", id: "intensity-result" });
      const importForm = h("form", { class: "stack", "data-write": "" },
        h("div", { class: "field" }, h("label", { for: "intensity-file" }, "CSV file"), file),
        h("div", { class: "field wide" }, h("label", { for: "intensity-csv" }, "or paste it"), csv),
        h("div", { class: "field" }, h("button", { type: "submit" }, "Import")), result);
      importForm.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        result.className = "";
        try {
          const res = await fetch(`/api/v1/sites/${encodeURIComponent(id)}/carbon-intensity`, { method: "PUT", credentials: "same-origin",
            headers: { "Content-Type": "text/csv", "X-GreenOps-CSRF": "1" }, body: csv.value });
          const data = await res.json().catch(() => null);
          if (!res.ok) throw new ApiError(res.status, data);
          result.textContent = `Imported ${data.imported} hours.`;
          await loadHours();
        } catch (e) {
          result.className = "form-error";
          const detail = Object.entries(e.fields || {}).map(([k, m]) => `${k}: ${m}`).join("; ");
          result.textContent = detail ? `${e.message} (${detail})` : e.message;
        }
      });
      editor.replaceChildren(
        h("h2", {}, "New tariff"), h("p", { class: "muted" }, "A price (and bands) from a moment on; earlier time keeps the price it was incurred at."),
        formFor([{ name: "currency", label: "Currency", value: v.currency }, { name: "price_per_kwh", label: "Price per kWh", required: true, value: v.price_per_kwh },
          { name: "bands", label: "Time-of-use bands", type: "textarea", wide: true, value: formatSpans(v.bands, true), parse: (t) => parseSpans(t, true),
            placeholder: "mon-fri 08:00-18:30 0.30", hint: "One per line, local time; empty: the flat price all day." }, fromField],
        "Add tariff", async (vals) => { if (!vals.bands) vals.bands = []; await api("POST", `/api/v1/sites/${encodeURIComponent(id)}/tariffs`, vals); await load(); },
        { write: true, id: "tariff-form" }),
        h("h2", {}, "Change the site"), h("p", { class: "muted" }, "Any figure adds a version from the moment given; a new name applies at once."),
        formFor([{ name: "name", label: "Name", value: current.name }, ...siteFields(v, false)], "Save changes", async (vals) => {
          // Send only what changed, so a rename does not also add a version.
          const was = { name: current.name, ...v, bands: formatSpans(v.bands, true), business_hours: formatSpans(v.business_hours, false),
            holidays: v.holidays.join(", ") };
          const patch = {};
          for (const [k, val] of Object.entries(vals)) {
            const before = was[k];
            const same = k === "bands" ? formatSpans(val, true) === before : k === "business_hours" ? formatSpans(val, false) === before
              : k === "holidays" ? val.join(", ") === before : String(val) === String(before ?? "");
            if (!same || k === "effective_from") patch[k] = val;
          }
          if (Object.keys(patch).every((k) => k === "effective_from")) throw new Error("Nothing changed.");
          await api("PATCH", `/api/v1/sites/${encodeURIComponent(id)}`, patch);
          await load();
        }, { write: true, id: "site-form" }),
        h("h2", {}, "Import hourly carbon intensity"),
        h("p", { class: "muted" }, "Lines of hour_start,g_co2e_per_kwh (UTC hours, RFC 3339, header allowed) for hours that have not begun. All or nothing: a bad line is named and nothing is stored."),
        importForm);
    };
    root.replaceChildren(h("p", {}, h("a", { href: "#/sites" }, "‹ All sites")), h("h1", { id: "site-name" }, "Site"),
      h("div", { class: "panel" }, h("h2", {}, "In force now"), facts), h("div", { class: "panel" }, h("h2", {}, "Scheduled changes"), scheduled),
      h("div", { class: "panel" }, h("h2", {}, "Tariff history"), tariffs), h("div", { class: "panel" }, h("h2", {}, "Hourly carbon intensity"), hours),
      isAdmin() ? h("div", { class: "panel", "data-write": "" }, editor) : "");
    await Promise.all([load(), loadHours()]);
    root.querySelector("#site-name").textContent = current.name;
  }

  async function profiles(root) {
    const list = h("div", {});
    const editor = h("div", {});
    const fields = (v) => [{ name: "idle_watts", label: "Idle watts", value: v.idle_watts, placeholder: "65" },
      { name: "active_watts", label: "Active watts", value: v.active_watts, placeholder: "120" },
      { name: "sleep_watts", label: "Sleep watts", value: v.sleep_watts, placeholder: "2", hint: "What it draws asleep: avoidable waste is idle minus sleep." }];
    const load = async () => {
      const res = await api("GET", "/api/v1/power-profiles");
      const cols = [{ label: "Name", cell: (x) => x.name }, { label: "Idle W", num: true, cell: (x) => x.idle_watts },
        { label: "Active W", num: true, cell: (x) => x.active_watts }, { label: "Sleep W", num: true, cell: (x) => x.sleep_watts },
        { label: "Since", cell: (x) => since(x.effective_from) }, { label: "Scheduled", cell: scheduledOf },
        { label: "Machines", num: true, cell: (x) => nf.format(x.machines) }];
      if (isAdmin()) {
        cols.push({ label: "", cell: (x) => h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", "data-write": "", onclick: () => edit(x) }, "Edit"),
          deleteButton(`profile ${x.name}`, `/api/v1/power-profiles/${x.id}`, load)) });
      }
      list.replaceChildren(table(cols, res.items));
    };
    const edit = (item) => {
      editor.replaceChildren(h("h2", {}, item ? `Edit profile ${item.name}` : "New power profile"),
        formFor(item ? [{ name: "name", label: "Name", value: item.name }, ...fields(item), fromField]
          : [{ name: "name", label: "Name", required: true }, ...fields({})], item ? "Save" : "Create",
        async (values) => {
          if (item) {
            const patch = {};
            for (const [k, v] of Object.entries(values)) if (k === "effective_from" || String(v) !== String(k === "name" ? item.name : item[k])) patch[k] = v;
            await api("PATCH", `/api/v1/power-profiles/${item.id}`, patch);
          } else await api("POST", "/api/v1/power-profiles", values);
          edit(null);
          await load();
        }, { write: true }));
    };
    root.replaceChildren(h("h1", {}, "Power profiles"),
      h("p", { class: "muted" }, "What a kind of machine draws idle, in use and asleep. A change of watts applies from a moment on; accounted time keeps its watts."),
      h("div", { class: "panel" }, list), isAdmin() ? h("div", { class: "panel", "data-write": "" }, editor) : "");
    if (isAdmin()) edit(null);
    await load();
  }

  // ---- Users and tokens (admins) -----------------------------------------------------
  async function users(root) {
    const list = h("div", {});
    const load = async () => {
      const res = await api("GET", "/api/v1/users");
      list.replaceChildren(table([
        { label: "Username", cell: (u) => u.username }, { label: "Role", cell: (u) => u.role },
        { label: "State", cell: (u) => (u.disabled ? "disabled" : "enabled") },
        { label: "", cell: (u) => h("div", { class: "actions" },
          h("button", { type: "button", class: "secondary", onclick: () => change(u.username, { role: u.role === "admin" ? "viewer" : "admin" }) },
            u.role === "admin" ? "Make viewer" : "Make admin"),
          h("button", { type: "button", class: u.disabled ? "secondary" : "danger", onclick: () => change(u.username, { disabled: !u.disabled }) },
            u.disabled ? "Enable" : "Disable"),
          h("button", { type: "button", class: "secondary", onclick: () => {
            const p = prompt(`New password for ${u.username} (at least 12 characters):`);
            if (p) change(u.username, { password: p });
          } }, "Set password")) },
      ], res.items));
    };
    const change = async (name, patch) => { try { await api("PATCH", `/api/v1/users/${encodeURIComponent(name)}`, patch); await load(); } catch (e) { alert(e.message); } };
    root.replaceChildren(h("h1", {}, "Users"), h("p", { class: "muted" }, "Admins change everything; viewers only look. A new password or disabling ends the user's sessions."),
      h("div", { class: "panel" }, list), h("div", { class: "panel", "data-write": "" }, h("h2", {}, "New user"),
        formFor([{ name: "username", label: "Username" }, { name: "password", label: "Password", type: "password", autocomplete: "new-password" },
          { name: "role", label: "Role", options: ["viewer", "admin"], value: "viewer" }], "Create user", async (v, form) => {
          await api("POST", "/api/v1/users", v); form.reset(); await load();
        }, { write: true })));
    await load();
  }

  async function tokenPage(root, { title, intro, path, columns, fields, created }) {
    const list = h("div", {});
    const shown = h("div", {});
    const load = async () => {
      const res = await api("GET", path);
      list.replaceChildren(table([...columns, { label: "", cell: (t) => (t.revoked_at_ms ? "revoked" : h("button", { type: "button", class: "danger",
        onclick: async () => { if (!confirm("Revoke this token?")) return; await api("DELETE", `${path}/${t.id}`); await load(); } }, "Revoke")) }], res.items));
    };
    root.replaceChildren(h("h1", {}, title), h("p", { class: "muted" }, intro), h("div", { class: "panel", "data-write": "" }, h("h2", {}, "Create"),
      formFor(fields, "Create token", async (v) => {
        const res = await api("POST", path, v);
        shown.replaceChildren(secretBox(created, res.token));
        await load();
      }, { write: true }), shown), h("div", { class: "panel" }, list));
    await load();
  }

  function enrollment(root) {
    return api("GET", "/api/v1/sites").then((sitesRes) => tokenPage(root, {
      title: "Enrollment tokens", path: "/api/v1/enrollment-tokens", created: "New enrollment token",
      intro: "Agents enrol with `greenops-agent enroll --enrollment-token …`; the machines join the token's site and department.",
      columns: [{ label: "Id", cell: (t) => t.id }, { label: "Site", cell: (t) => t.site }, { label: "Department", cell: (t) => t.department || "—" },
        { label: "Uses", num: true, cell: (t) => `${t.uses}${t.max_uses ? ` / ${t.max_uses}` : ""}` },
        { label: "Expires", cell: (t) => when(t.expires_at_ms) }, { label: "Created", cell: (t) => when(t.created_at_ms) }],
      fields: [{ name: "site", label: "Site", options: sitesRes.items.map((x) => x.name), value: "default" },
        { name: "department", label: "Department" }, { name: "max_uses", label: "Max uses", type: "number", min: 1 },
        { name: "expires_in_seconds", label: "Expires in (s)", type: "number", min: 60, placeholder: "never" }],
    }));
  }

  function apiTokens(root) {
    return tokenPage(root, { title: "API tokens", path: "/api/v1/api-tokens", created: "New API token",
      intro: "Personal tokens for scripts: send `Authorization: Bearer <token>`. A token carries its user's role.",
      columns: [{ label: "Id", cell: (t) => t.id }, { label: "Name", cell: (t) => t.name }, { label: "User", cell: (t) => t.username },
        { label: "Created", cell: (t) => when(t.created_at_ms) }],
      fields: [{ name: "name", label: "Name", placeholder: "inventory sync" }, { name: "username", label: "User", value: me.username }] });
  }

  // ---- Settings and audit ------------------------------------------------------------
  async function settings(root) {
    const st = await api("GET", "/api/v1/settings");
    const names = [["idle_threshold_seconds", "Idle threshold (s)"], ["max_gap_seconds", "Max gap (s)"], ["offline_after_seconds", "Offline after (s)"],
      ["max_clock_skew_seconds", "Max clock skew (s)"], ["heartbeat_interval_seconds", "Heartbeat interval (s)"]];
    const source = h("p", { class: "muted" }, `Source: ${st.source}.`);
    const body = isAdmin()
      ? formFor(names.map(([n, l]) => ({ name: n, label: l, type: "number", min: 0, value: st[n] })), "Save settings", async (v) => {
        const saved = await api("PATCH", "/api/v1/settings", v);
        source.textContent = `Source: ${saved.source}. Saved.`;
      }, { write: true })
      : h("dl", { class: "facts" }, names.flatMap(([n, l]) => [h("dt", {}, l), h("dd", {}, st[n])]));
    root.replaceChildren(h("h1", {}, "Settings"), h("p", { class: "muted" },
      "Accounting thresholds shared by every collector on this database. Changes apply to heartbeats accounted afterwards."),
    h("div", { class: "panel" }, body, source));
  }

  async function audit(root) {
    const res = await api("GET", "/api/v1/audit?limit=200");
    root.replaceChildren(h("h1", {}, "Audit log"), h("div", { class: "panel" }, table([
      { label: "When", cell: (e) => when(e.at_ms) }, { label: "Who", cell: (e) => e.actor }, { label: "Action", cell: (e) => e.action },
      { label: "Target", cell: (e) => e.target }, { label: "Details", cell: (e) => h("code", {}, e.details) }], res.items)));
  }

  // ---- Start -------------------------------------------------------------------------
  window.addEventListener("hashchange", () => { route(); });
  api("GET", "/api/v1/auth/me").then((u) => { me = u; route(); }).catch(() => showLogin());
})();
