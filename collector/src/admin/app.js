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

  // ---- Formatting: the browser's locale, scaled units, fixed decimals --------------------
  // Every figure goes through these, so the whole page reads alike: a quantity is scaled to
  // the unit that keeps it between 1 and 1000 and shown with three significant digits at most
  // (0 decimals from 100, 1 from 10, else 2); money is shown to its currency's minor unit and
  // an amount too small for it reads "< 0.01"; dates and times are in the browser's locale
  // and time zone.
  const NBSP = "\u00a0";
  const formats = new Map();
  const numberFormat = (options) => {
    const key = JSON.stringify(options);
    if (!formats.has(key)) formats.set(key, new Intl.NumberFormat(undefined, options));
    return formats.get(key);
  };
  const fixed = (x, digits) => numberFormat({ minimumFractionDigits: digits, maximumFractionDigits: digits }).format(x);
  const count = (n) => numberFormat({ maximumFractionDigits: 0 }).format(Number(n));
  const percent = (ratio) => (ratio === null || ratio === undefined ? "—"
    : numberFormat({ style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(Number(ratio)));
  const digitsFor = (abs) => (abs >= 99.95 ? 0 : abs >= 9.995 ? 1 : 2);

  // `units`: [factor, name] from the smallest, in the unit `value` is given in.
  function scaled(value, units) {
    const x = Number(value);
    if (value === null || value === undefined || !Number.isFinite(x)) return "—";
    if (x === 0) return `0${NBSP}${units[0][1]}`;
    const abs = Math.abs(x);
    let i = 0;
    while (i + 1 < units.length && abs >= units[i + 1][0]) i++;
    // 999.7 Wh would round to "1000 Wh": that is 1.00 kWh.
    if (i + 1 < units.length && abs / units[i][0] >= 999.5) i++;
    const v = abs / units[i][0];
    if (v < 0.005) return `<${NBSP}${fixed(0.01, 2)}${NBSP}${units[i][1]}`;
    return `${x < 0 ? "−" : ""}${fixed(v, digitsFor(v))}${NBSP}${units[i][1]}`;
  }
  const ENERGY = [[0.001, "Wh"], [1, "kWh"], [1e3, "MWh"], [1e6, "GWh"]];
  const MASS = [[1, "g"], [1e3, "kg"], [1e6, "t"], [1e9, "kt"]];
  const energy = (kwhValue) => scaled(kwhValue, ENERGY);
  const energyJ = (joules) => (joules === null || joules === undefined ? "—" : energy(Number(joules) / 3.6e6));
  const co2 = (grams) => scaled(grams, MASS);

  function currencyFormat(currency) {
    const key = `currency:${currency}`;
    if (!formats.has(key)) {
      let f;
      try { f = new Intl.NumberFormat(undefined, { style: "currency", currency }); } catch (_) { f = null; }
      formats.set(key, f);
    }
    return formats.get(key);
  }
  // One amount in one currency, to its minor unit (cents for EUR, none for JPY).
  function amount(value, currency) {
    const x = Number(value);
    if (!Number.isFinite(x)) return "—";
    const f = currencyFormat(currency);
    const digits = f ? f.resolvedOptions().maximumFractionDigits : 2;
    const show = (v) => (f ? f.format(v) : `${fixed(v, digits)}${NBSP}${currency}`);
    const minor = 10 ** -digits;
    if (x !== 0 && Math.abs(x) < minor / 2) return x > 0 ? `<${NBSP}${show(minor)}` : `>${NBSP}${show(-minor)}`;
    return show(x);
  }
  // Amounts in several currencies: [[currency, value], …] (a machine that moved may have two).
  const amounts = (pairs) => (pairs.length ? pairs.map(([c, v]) => amount(v, c)).join(" + ") : "—");
  const money = (costs) => amounts(Object.entries(costs || {}));
  const moneyOf = (list, field) => amounts((list || []).map((c) => [c.currency, c[field]]));
  const timesMoney = (costs, f) => Object.fromEntries(Object.entries(costs || {}).map(([c, v]) => [c, Number(v) * f]));

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s0 = Math.max(0, Math.round(Number(seconds)));
    if (s0 < 60) return `${s0}${NBSP}s`;
    if (s0 < 3570) return `${Math.round(s0 / 60)}${NBSP}min`;
    if (s0 < 86370) {
      const m = Math.round(s0 / 60);
      const hh = Math.floor(m / 60), mm = m % 60;
      return mm ? `${hh}${NBSP}h ${mm}${NBSP}min` : `${hh}${NBSP}h`;
    }
    const hours = Math.round(s0 / 3600);
    const d = Math.floor(hours / 24), hh = hours % 24;
    return hh ? `${count(d)}${NBSP}d ${hh}${NBSP}h` : `${count(d)}${NBSP}d`;
  }
  function ago(iso) {
    if (!iso) return "never";
    const secs = (Date.now() - Date.parse(iso)) / 1000;
    return secs < 5 ? "just now" : `${duration(Math.max(0, secs))} ago`;
  }
  const dateFormat = (options) => {
    const key = `date:${JSON.stringify(options)}`;
    if (!formats.has(key)) formats.set(key, new Intl.DateTimeFormat(undefined, options));
    return formats.get(key);
  };
  const toDate = (t) => (t instanceof Date ? t : new Date(typeof t === "number" ? t : Date.parse(t)));
  // A moment (ms, RFC 3339 or Date) in the browser's locale and time zone.
  const dateTime = (t) => (t === null || t === undefined ? "—" : dateFormat({ dateStyle: "medium", timeStyle: "short" }).format(toDate(t)));
  const clock = (t) => dateFormat({ timeStyle: "short" }).format(toDate(t));
  const clockSeconds = (t) => dateFormat({ timeStyle: "medium" }).format(toDate(t));
  const shortDate = (t) => dateFormat({ month: "short", day: "numeric" }).format(toDate(t));
  // A calendar day "2026-11-03" (a UTC day of the API), without shifting it to local time.
  const calendarDay = (day, options) => dateFormat({ timeZone: "UTC", ...(options || { dateStyle: "medium" })})
    .format(new Date(`${day}T00:00:00Z`));
  const when = (ms) => (ms ? dateTime(ms) : "—");
  const badge = (status) => h("span", { class: `badge ${status}` }, status);
  // A hostname that may wrap after a dot, hyphen or underscore, never inside a word.
  const hostText = (name) => String(name).split(/(?<=[._-])/).flatMap((part, i) => (i ? [h("wbr"), part] : [part]));

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
  const since = (iso) => (iso ? dateTime(iso) : "the beginning");

  // ---- Forms with field-level errors -------------------------------------------------
  // fields: [{name, label, type, value, options, required, step, min}]
  function formFor(fields, submitLabel, onSubmit, extra) {
    const errors = {};
    const inputs = {};
    const formError = h("p", { class: "form-error", role: "alert" });
    const form = h("form", { class: "inline fields", novalidate: true, id: extra && extra.id, "data-write": extra && extra.write ? "" : null });
    for (const f of fields) {
      const id = `f-${Math.random().toString(36).slice(2)}`;
      let input;
      if (f.options) {
        input = h("select", { id, name: f.name },
          f.options.map((o) => h("option", { value: o.value ?? o, selected: (o.value ?? o) === f.value }, o.label ?? o)));
      } else if (f.type === "textarea") {
        input = h("textarea", { id, name: f.name, rows: f.rows || 3, placeholder: f.placeholder, spellcheck: "false" });
        input.defaultValue = f.value ?? ""; // what a reset after a create goes back to
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
    // An empty label above the button keeps it level with the inputs when hints hang below them.
    form.append(h("div", { class: "field" }, h("span", { class: "label-like", "aria-hidden": "true" }, NBSP), h("button", { type: "submit" }, submitLabel)));
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

  // columns: [{label, cell(row), num?, cls?, key?}]; `key` names the cell (data-col) for tests
  // and styles; `rowAttrs(row)` adds attributes to each row.
  function table(columns, rows, empty, rowAttrs) {
    const cls = (c) => [c.num ? "num" : null, c.cls || null].filter(Boolean).join(" ") || null;
    const head = h("tr", {}, columns.map((c) => h("th", { class: cls(c), scope: "col" }, c.label)));
    const body = h("tbody", {});
    if (!rows.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, empty || "Nothing here yet.")));
    for (const r of rows) {
      body.append(h("tr", rowAttrs ? rowAttrs(r) : {}, columns.map((c) => h("td", { class: cls(c), "data-col": c.key || null }, c.cell(r)))));
    }
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

  // ---- Charts: SVG drawn at the box's own pixel width, axes on round values -------------
  const HOUR_MS = 3600e3, DAY_MS = 864e5;
  const text = (attrs, content) => Object.assign(s("text", attrs), { textContent: content });
  const titled = (el, title) => { const t = s("title", {}); t.textContent = title; el.append(t); return el; };

  // A box that draws its chart again whenever its width changes (phone turned, window resized).
  function chartBox(attrs) {
    const box = h("div", attrs);
    let draw = null, width = 0;
    const paint = (force) => {
      const w = Math.floor(box.clientWidth);
      if (!draw || !w || (!force && w === width)) return;
      width = w;
      box.replaceChildren(...[draw(w)].flat());
    };
    new ResizeObserver(() => paint(false)).observe(box);
    box.draw = (fn) => { draw = fn; paint(true); };
    return box;
  }

  // Round steps for a value axis: 1, 2, 2.5 or 5 times a power of ten.
  function niceAxis(max, wanted) {
    const m = max > 0 ? max : 1;
    const raw = m / wanted, mag = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((x) => x >= raw * (1 - 1e-9));
    let digits = 0;
    while (digits < 6 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6) digits++;
    const top = Math.ceil(m / step - 1e-9) * step;
    const ticks = [];
    for (let i = 0; i * step <= top * (1 + 1e-9); i++) ticks.push(i * step);
    return { top, ticks, digits };
  }
  // An energy axis (values in kWh) in the unit its top needs.
  function energyAxis(maxKwh, wanted) {
    const m = maxKwh > 0 ? maxKwh : 0.001;
    let i = 0;
    while (i + 1 < ENERGY.length && m >= ENERGY[i + 1][0]) i++;
    const [factor, unit] = ENERGY[i];
    const a = niceAxis(m / factor, wanted);
    return { top: a.top * factor, ticks: a.ticks.map((v) => ({ v: v * factor, label: `${fixed(v, a.digits)}${NBSP}${unit}` })) };
  }
  // A time axis (values in seconds) on round durations.
  function durationAxis(maxSeconds, wanted) {
    const steps = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
    const raw = (maxSeconds > 0 ? maxSeconds : 3600) / wanted;
    const step = steps.find((x) => x >= raw) || steps[steps.length - 1];
    const ticks = [];
    for (let v = 0; v <= maxSeconds + 1e-6; v += step) ticks.push({ v, label: v ? duration(v) : "0" });
    return { top: maxSeconds, ticks };
  }
  // Round local moments between `from` and `to` (ms): whole hours divisible by n, local
  // midnights, Mondays or first days of months; at most `most` of them.
  function timeTicks(from, to, most) {
    const span = to - from;
    const hourly = [1, 2, 3, 6, 12].find((n) => span / (n * HOUR_MS) <= most);
    const daily = [1, 2, 7, 14].find((n) => span / (n * DAY_MS) <= most);
    const monthly = [1, 2, 3, 6, 12].find((n) => span / (n * 30.4 * DAY_MS) <= most) || 12;
    const start = new Date(from);
    start.setMinutes(0, 0, 0);
    const out = [];
    const dayNumber = (d) => Math.round(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()) / DAY_MS);
    for (let t = start.getTime(); t <= to; t += HOUR_MS) {
      if (t < from) continue;
      const d = new Date(t);
      if (d.getMinutes() !== 0) continue;
      const midnight = d.getHours() === 0;
      let take;
      if (hourly) take = d.getHours() % hourly === 0;
      else if (daily === 7 || daily === 14) take = midnight && d.getDay() === 1 && (daily === 7 || Math.floor(dayNumber(d) / 7) % 2 === 0);
      else if (daily) take = midnight && dayNumber(d) % daily === 0;
      else take = midnight && d.getDate() === 1 && d.getMonth() % monthly === 0;
      if (take) out.push({ t, midnight });
    }
    const long = span > 200 * DAY_MS;
    return out.map(({ t, midnight }) => ({
      t, label: midnight ? (long ? dateFormat({ month: "short", year: "numeric" }).format(new Date(t)) : shortDate(t)) : clock(t),
    }));
  }

  // The frame every chart shares: horizontal grid with value labels, bottom axis, x labels.
  function frame(width, height, yTicks, yTop, xLabels) {
    const top = 10, bottom = 24, right = 10;
    const left = 10 + 7 * Math.max(1, ...yTicks.map((t) => t.label.length));
    const plot = { left, top, width: Math.max(10, width - left - right), height: height - top - bottom };
    const y = (v) => plot.top + plot.height - (v / (yTop || 1)) * plot.height;
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart" });
    for (const t of yTicks) {
      svg.append(s("line", { x1: left, x2: width - right, y1: y(t.v), y2: y(t.v), class: t.v ? "grid" : "axis" }));
      svg.append(text({ x: left - 6, y: y(t.v) + 4, "text-anchor": "end" }, t.label));
    }
    const labels = s("g", { class: "x-labels" });
    for (const l of xLabels(plot)) {
      const anchor = l.x < left + 24 ? "start" : l.x > width - right - 24 ? "end" : "middle";
      labels.append(s("line", { x1: l.x, x2: l.x, y1: plot.top + plot.height, y2: plot.top + plot.height + 4, class: "axis" }));
      labels.append(text({ x: l.x, y: height - 6, "text-anchor": anchor, "data-tick": l.t ?? "" }, l.label));
    }
    svg.append(labels);
    return { svg, plot, y };
  }

  // A machine's history: one stacked bar per step (active, idle, unknown, not observed).
  function historyChart(hist, width) {
    const from = Date.parse(hist.from), to = Date.parse(hist.to), stepMs = hist.step_seconds * 1000;
    const axis = durationAxis(hist.step_seconds, 4);
    const x = (plot, t) => plot.left + ((t - from) / (to - from)) * plot.width;
    const { svg, plot, y } = frame(width, 240, axis.ticks, axis.top,
      (p) => timeTicks(from, to, Math.max(3, Math.floor(p.width / 96))).map((l) => ({ ...l, x: x(p, l.t) })));
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Active, idle, unknown and unobserved time per ${duration(hist.step_seconds)}`);
    const gap = (plot.width / Math.max(1, hist.points.length)) > 6 ? 1 : 0;
    const parts = [["active_seconds", "bar-active", "active"], ["idle_seconds", "bar-idle", "idle"],
      ["unknown_seconds", "bar-unknown", "unknown"], ["unobserved_seconds", "bar-unobserved", "not observed"]];
    for (const p of hist.points) {
      const start = Date.parse(p.start), end = Math.min(start + stepMs, to);
      const x0 = x(plot, start) + gap, w = Math.max(1, x(plot, end) - x(plot, start) - 2 * gap);
      const g = titled(s("g", { "data-start": p.start }), `${dateTime(start)} – ${end - start >= DAY_MS ? dateTime(end) : clock(end)}: ${
        parts.map(([k, , label]) => `${label} ${duration(p[k])}`).join(", ")}`);
      let base = 0;
      for (const [key, cls] of parts) {
        const v = p[key];
        if (!(v > 0)) continue;
        g.append(s("rect", { x: x0, y: y(base + v), width: w, height: y(base) - y(base + v), class: cls }));
        base += v;
      }
      svg.append(g);
    }
    return svg;
  }

  // Daily waste (bars), the avoidable part inside them, the after-hours waste (line).
  function trendChart(days, width) {
    const max = days.reduce((m, d) => Math.max(m, Number(d.idle_energy_kwh), Number(d.after_hours_idle_energy_kwh)), 0);
    const axis = energyAxis(max, 4);
    const band = (plot) => plot.width / Math.max(1, days.length);
    const every = (plot) => [1, 2, 3, 5, 7, 10, 14].find((k) => (days.length / k) * 64 <= plot.width) || 14;
    const dayNumber = (d) => Math.round(Date.parse(`${d}T00:00:00Z`) / DAY_MS);
    const { svg, plot, y } = frame(width, 220, axis.ticks, axis.top, (p) => {
      const k = every(p);
      return days.map((d, i) => ({ d, i })).filter(({ d }) => (k === 7 ? new Date(`${d.day}T00:00:00Z`).getUTCDay() === 1 : dayNumber(d.day) % k === 0))
        .map(({ d, i }) => ({ x: p.left + (i + 0.5) * band(p), label: calendarDay(d.day, { month: "short", day: "numeric" }), t: d.day }));
    });
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "Daily waste and avoidable energy");
    const b = band(plot), pad = b > 8 ? Math.min(4, b * 0.15) : 0;
    const points = [];
    days.forEach((d, i) => {
      const x0 = plot.left + i * b + pad, w = Math.max(1, b - 2 * pad);
      for (const [key, cls] of [["idle_energy_kwh", "bar-idle"], ["avoidable_energy_kwh", "bar-active"]]) {
        const v = Number(d[key]);
        if (!(v > 0)) continue;
        svg.append(titled(s("rect", { x: x0, y: y(v), width: w, height: y(0) - y(v), class: cls, "data-day": d.day }),
          `${calendarDay(d.day)}: ${energy(d.idle_energy_kwh)} wasted, ${energy(d.avoidable_energy_kwh)} avoidable, ${energy(d.after_hours_idle_energy_kwh)} after hours`));
      }
      points.push(`${plot.left + (i + 0.5) * b},${y(Number(d.after_hours_idle_energy_kwh))}`);
    });
    svg.append(s("polyline", { points: points.join(" "), class: "line-after" }));
    return svg;
  }

  // Energy a policy would save per site and department: one bar each, the figure beside it.
  function groupBars(groups, width) {
    const row = 30, labelWidth = Math.min(260, Math.round(width * 0.38)), valueWidth = 84;
    const height = Math.max(1, groups.length) * row + 4;
    const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "bars", role: "img",
      "aria-label": "Energy saved per site and department" });
    const max = groups.reduce((m, g) => Math.max(m, Number(g.energy_kwh)), 0) || 1;
    const room = Math.max(10, width - labelWidth - valueWidth - 8);
    const fit = (t, px) => (t.length * 7.4 > px ? `${t.slice(0, Math.max(1, Math.floor(px / 7.4) - 1))}…` : t);
    groups.forEach((g, i) => {
      const top = 2 + i * row;
      const name = `${g.site} · ${g.department || "no department"}`;
      const w = Math.max(1, (room * Number(g.energy_kwh)) / max);
      svg.append(titled(text({ x: 0, y: top + 19 }, fit(name, labelWidth - 10)), name),
        titled(s("rect", { x: labelWidth, y: top + 5, width: w, height: row - 12, rx: 3, class: "bar-saved" }),
          `${name}: ${energy(g.energy_kwh)}, ${money(g.costs)}`),
        text({ x: labelWidth + w + 6, y: top + 19 }, energy(g.energy_kwh)));
    });
    return svg;
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
        h("div", { class: "who", title: `Signed in as ${me.username} (${me.role === "admin" ? "administrator" : "viewer: read-only"})` },
          h("span", { class: "user" }, me.username), isAdmin() ? null : h("span", { class: "role" }, "read-only"), logout)),
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
    const trend = chartBox({ id: "trend" });
    const legend = h("div", { class: "legend" }, h("span", { class: "l-idle" }, "wasted while idle"),
      h("span", { class: "l-active" }, "of which sleep would have saved"), h("span", { class: "l-after" }, "after hours"));
    root.replaceChildren(h("h1", {}, "Fleet overview"), cards, h("div", { class: "panel" }, h("h2", {}, "Idle waste"), periods),
      h("div", { class: "panel" }, h("h2", {}, "Waste per day, last 30 days (UTC days)"), trend, legend),
      h("div", { class: "panel" }, h("h2", {}, "Top wasters (all time)"), top), stamp);
    const load = async () => {
      const st = await api("GET", "/api/v1/stats");
      const m = st.machines;
      cards.replaceChildren(...[["total", "Machines", m.total], ["active", "Active", m.active], ["idle", "Idle", m.idle],
        ["offline", "Offline", m.offline], ["unknown", "Unknown", m.unknown]]
        .map(([cls, label, v]) => h("div", { class: `card ${cls}`, "data-card": cls }, h("div", { class: "label" }, label), h("div", { class: "value" }, count(v)))));
      const names = { today: "Today (UTC)", "7d": "Last 7 days", "30d": "Last 30 days", all: "All time" };
      periods.replaceChildren(table([
        { label: "Period", cell: (p) => names[p.period] || p.period, cls: "nowrap" },
        { label: "Idle ratio", num: true, cell: (p) => percent(p.idle_ratio) },
        { label: "Idle time", num: true, cell: (p) => duration(p.idle_seconds) },
        { label: "Waste energy", num: true, cell: (p) => energy(p.waste_kwh), key: "waste-energy" },
        { label: "Waste cost", num: true, cell: (p) => moneyOf(p.costs, "waste_cost"), key: "waste-cost" },
        { label: "Waste CO₂", num: true, cell: (p) => co2(p.waste_co2_grams), key: "waste-co2" },
        { label: "Avoidable", num: true, cell: (p) => energy(p.avoidable_kwh) },
        { label: "After hours", num: true, cell: (p) => duration(p.after_hours_idle_seconds) },
        { label: "Idle data", num: true, cell: (p) => percent(p.idle_data_ratio) },
        { label: "Total energy", num: true, cell: (p) => energy(p.energy_kwh) },
      ], st.periods, null, (p) => ({ "data-period": p.period })));
      top.replaceChildren(machineTable(st.top_wasters, null));
      const daily = await api("GET", "/api/v1/stats/daily?days=30");
      trend.draw((w) => trendChart(daily.days, w));
      stamp.textContent = `Updated ${clockSeconds(new Date())} · refreshes every 30 s`;
    };
    await load();
    startRefresh(load);
  }

  // ---- Savings: what a sleep policy would have saved -----------------------------------
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
        ["energy", "Energy saved", energy(r.energy_kwh), `${energy(Number(r.energy_kwh) * month)} per month`],
        ["cost", "Money saved", money(r.costs), `${money(timesMoney(r.costs, month))} per month`],
        ["co2", "CO₂ avoided", co2(r.co2_grams), `${co2(Number(r.co2_grams) * month)} per month`],
        ["machines", "Machines that would sleep", count(r.machines_affected), `of ${count(r.machines_considered)} idle past the limit`],
        ["sleeps", "Times they would sleep", count(r.sleeps), `${fixed(r.sleeps / Math.max(1, r.machines_affected), 1)} per machine`],
      ].map(([key, label, value, sub]) => h("div", { class: "card total", "data-saving": key }, h("div", { class: "label" }, label),
        h("div", { class: "value" }, value), h("div", { class: "label" }, sub))));
      summary.textContent = `Sleep after ${duration(r.sleep_after_minutes * 60)} without input${r.when === "after_hours" ? ", outside business hours only" : ""}: ${duration(Number(r.slept_seconds))} asleep from ${dateTime(r.from)} to ${dateTime(r.to)}.`;
      const bars = chartBox({});
      breakdown.replaceChildren(bars, table([
        { label: "Site", cell: (g) => g.site }, { label: "Department", cell: (g) => g.department || "—" },
        { label: "Energy", num: true, cell: (g) => energy(g.energy_kwh) }, { label: "Per month", num: true, cell: (g) => energy(Number(g.energy_kwh) * month) },
        { label: "Money", num: true, cell: (g) => money(g.costs) }, { label: "CO₂", num: true, cell: (g) => co2(g.co2_grams) },
        { label: "Machines", num: true, cell: (g) => count(g.machines_affected) }, { label: "Sleeps", num: true, cell: (g) => count(g.sleeps) },
      ], r.groups, "Nothing would have slept: no machine was idle past the limit in this window."));
      if (r.groups.length) bars.draw((w) => groupBars(r.groups, w));
    };
    form.addEventListener("submit", (ev) => { ev.preventDefault(); run(); });
    await run();
  }

  // ---- Machines ----------------------------------------------------------------------
  const SORTABLE = { hostname: "Hostname", site: "Site", department: "Department", status: "Status", last_seen: "Last seen",
    input_idle: "Input idle", idle_time: "Idle time", idle_energy: "Idle energy" };

  function machineTable(items, sorting) {
    const col = (key, label, cell, extra) => ({ key, label, cell, ...extra });
    const columns = [
      // A usual hostname stays on one line (the table scrolls on a phone); a long one wraps at its dots.
      col("hostname", "Hostname", (m) => (m.hostname.length <= 32
        ? h("a", { class: "host nowrap", href: `#/machine/${encodeURIComponent(m.id)}` }, m.hostname)
        : h("a", { class: "host", href: `#/machine/${encodeURIComponent(m.id)}` }, hostText(m.hostname)))),
      col("status", "Status", (m) => badge(m.status)),
      col("site", "Site", (m) => m.site, { cls: "hide-medium" }),
      col("department", "Department", (m) => m.department || "—"),
      col("last_seen", "Last seen", (m) => ago(m.last_seen), { cls: "nowrap" }),
      col("input_idle", "Input idle", (m) => duration(m.input_idle_seconds), { num: true, cls: "hide-medium" }),
      col("idle_time", "Idle time", (m) => duration(m.idle_seconds), { num: true, cls: "hide-medium" }),
      col("idle_energy", "Idle energy", (m) => energyJ(m.idle_energy_j), { num: true }),
      col("idle_cost", "Idle cost", (m) => moneyOf(m.costs, "idle_cost"), { num: true, unsortable: true }),
    ];
    const cls = (c) => [c.num ? "num" : null, c.cls || null].filter(Boolean).join(" ") || null;
    const head = h("tr", {}, columns.map((c) => {
      const th = h("th", { class: cls(c), scope: "col" });
      if (sorting && !c.unsortable) {
        const active = sorting.sort === c.key;
        if (active) th.setAttribute("aria-sort", sorting.order === "desc" ? "descending" : "ascending");
        th.append(h("button", { type: "button", class: "sort", "data-sort": c.key,
          onclick: () => sorting.onSort(c.key, active && sorting.order !== "desc" ? "desc" : "asc") }, c.label));
      } else th.append(c.label);
      return th;
    }));
    const body = h("tbody", {});
    if (!items.length) body.append(h("tr", {}, h("td", { class: "empty", colspan: columns.length }, "No machines match.")));
    for (const m of items) {
      body.append(h("tr", { "data-machine": m.id }, columns.map((c) => h("td", { class: cls(c), "data-col": c.key, "data-label": c.label }, c.cell(m)))));
    }
    return h("div", { class: "table-wrap" }, h("table", { id: sorting ? "machines-table" : null, class: "machines" }, h("thead", {}, head), body));
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
      h("a", { class: "button secondary", href: `/api/v1/reports/energy.csv?group_by=${g}`, download: "", "data-export": g }, `by ${g}`));
    attribution.addEventListener("change", () => {
      for (const a of links) a.href = `/api/v1/reports/energy.csv?group_by=${a.dataset.export}&attribution=${attribution.value}`;
    });
    const exportLinks = h("div", { class: "actions export" }, h("label", { for: "export-attribution", class: "muted" }, "Energy CSV"), attribution, links);
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
        h("span", { id: "page-info" }, `Page ${count(state.page)} of ${count(pages)} · ${count(res.total)} machine${res.total === 1 ? "" : "s"}`),
        h("button", { type: "button", class: "secondary", disabled: state.page >= pages, onclick: () => { state.page += 1; navigate(); } }, "Next ›"));
      stamp.textContent = `Updated ${clockSeconds(new Date())} · refreshes every 30 s`;
    };
    await load();
    startRefresh(load);
  }

  // ---- One machine -------------------------------------------------------------------
  const IDLE_SOURCES = {
    "x11-screensaver": "X11 screen saver extension",
    "gnome-mutter": "GNOME Mutter idle monitor",
    logind: "systemd-logind idle hint (coarse)",
    "windows-wts": "Windows console session (WTS)",
    "macos-iokit": "macOS IOKit HID idle time",
    none: "none works: idle time unknown",
    "seed-legacy": "original GreenOps agent: 0 when its detection fails, guessed from CPU on headless Linux — read with care",
    other: "one this collector does not know (a newer agent)",
  };
  const idleSource = (name) => (name ? h("span", { class: name === "none" || name === "seed-legacy" ? "warn" : null, title: name }, IDLE_SOURCES[name] || name)
    : h("span", { class: "muted" }, "not reported by this agent"));

  // The history's range: a preset, or whole local days picked in the browser's calendar.
  const RANGES = [["24h", "Last 24 hours", 1], ["7d", "Last 7 days", 7], ["30d", "Last 30 days", 30], ["90d", "Last 90 days", 90],
    ["custom", "Chosen dates"]];
  const pad2 = (n) => String(n).padStart(2, "0");
  const isoDay = (d) => `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())}`;
  const localMidnight = (day) => { const [y, m, d] = day.split("-").map(Number); return new Date(y, m - 1, d).getTime(); };
  const addDays = (ms, n) => { const d = new Date(ms); d.setDate(d.getDate() + n); return d.getTime(); };
  // Whole hours per bar, so that a range has at most 100 bars.
  const stepFor = (from, to) => ([1, 3, 6, 12, 24, 168, 720].find((n) => (to - from) / (n * HOUR_MS) <= 100) || 720) * 3600;

  function historyRange(params, onChange) {
    const preset = RANGES.some(([v]) => v === params.get("range")) ? params.get("range") : (params.get("from") ? "custom" : "24h");
    const range = h("select", { id: "history-range" }, RANGES.map(([v, l]) => h("option", { value: v, selected: v === preset }, l)));
    const today = isoDay(new Date());
    const from = h("input", { id: "history-from", type: "date", max: today, required: true, value: params.get("from") || "" });
    const to = h("input", { id: "history-to", type: "date", max: today, required: true, value: params.get("to") || "" });
    const error = h("p", { class: "form-error", role: "alert", id: "history-error" });
    const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
    const form = h("form", { class: "inline range-picker", id: "history-form", novalidate: true },
      field("history-range", "Range", range), field("history-from", "From", from), field("history-to", "To (inclusive)", to),
      h("div", { class: "field" }, h("button", { type: "submit", class: "secondary" }, "Show")));
    // The days a preset covers, shown in the date fields so they can be adjusted from there.
    const fillDays = () => {
      const r = RANGES.find(([v]) => v === range.value);
      if (!r || r[0] === "custom") return;
      const now = Date.now();
      from.value = isoDay(new Date(r[0] === "24h" ? now - DAY_MS : addDays(localMidnight(isoDay(new Date(now))), 1 - r[2])));
      to.value = isoDay(new Date(now));
    };
    fillDays();
    const windowOf = () => {
      const now = Date.now();
      const r = RANGES.find(([v]) => v === range.value);
      if (r[0] === "24h") return { from: now - DAY_MS, to: now };
      if (r[0] !== "custom") return { from: addDays(localMidnight(isoDay(new Date(now))), 1 - r[2]), to: now };
      if (!from.value || !to.value) throw new Error("Pick the first and the last day.");
      const start = localMidnight(from.value), end = Math.min(addDays(localMidnight(to.value), 1), now);
      if (start >= now) throw new Error("The first day has not begun yet.");
      if (start >= end) throw new Error("The first day must not be after the last.");
      return { from: start, to: end };
    };
    const apply = () => {
      error.textContent = "";
      let w;
      try { w = windowOf(); } catch (e) { error.textContent = e.message; return; }
      onChange(w, range.value === "custom" ? { from: from.value, to: to.value } : { range: range.value });
    };
    range.addEventListener("change", () => { fillDays(); if (range.value !== "custom") apply(); else from.focus(); });
    for (const input of [from, to]) input.addEventListener("input", () => { range.value = "custom"; });
    form.addEventListener("submit", (ev) => { ev.preventDefault(); apply(); });
    return { form, error, windowOf, apply };
  }

  async function machine(root, id, params) {
    const path = `/api/v1/machines/${encodeURIComponent(id)}`;
    const m = await api("GET", path);
    const title = h("h1", { class: "host" });
    const subtitle = h("p", { class: "muted subtitle" });
    const lastReport = h("dl", { class: "facts", id: "facts-now" });
    const about = h("dl", { class: "facts", id: "facts-machine" });
    const totals = h("dl", { class: "facts", id: "facts-totals" });
    const placements = h("div", { id: "placements" });
    const facts = (dl, rows) => dl.replaceChildren(...rows.flatMap(([key, label, value, stack]) =>
      [h("dt", { class: stack ? "stack" : null }, label), h("dd", { "data-fact": key, class: stack ? "stack" : null }, value)]));
    const fill = (mm) => {
      title.replaceChildren(...hostText(mm.hostname), " ", badge(mm.status));
      subtitle.textContent = `${mm.site}${mm.department ? ` · ${mm.department}` : ""} · last seen ${ago(mm.last_seen)}`;
      facts(lastReport, [["status", "Status", badge(mm.status)], ["last-seen", "Last seen", mm.last_seen ? h("span", { title: dateTime(mm.last_seen) }, ago(mm.last_seen)) : "never"],
        ["input-idle", "Input idle", duration(mm.input_idle_seconds)], ["cpu", "CPU", percent(mm.cpu_usage_ratio)],
        ["memory", "Memory", percent(mm.memory_usage_ratio)], ["uptime", "Uptime", duration(mm.uptime_seconds)],
        ["idle-source", "Idle source", idleSource(mm.idle_source)]]);
      facts(about, [["os", "Operating system", `${mm.os} ${mm.os_version}`.trim()],
        ["agent", "Agent", mm.agent_version], ["site", "Site", mm.site], ["department", "Department", mm.department || "—"],
        ["power-profile", "Power profile", mm.power_profile], ["id", "Machine id", h("code", { class: "id" }, mm.id), true]]);
      facts(totals, [["observed", "Observed", duration(mm.observed_seconds)], ["idle-time", "Idle", duration(mm.idle_seconds)],
        ["energy", "Energy", energyJ(mm.energy_j)], ["idle-energy", "Idle energy", energyJ(mm.idle_energy_j)],
        ["cost", "Cost", moneyOf(mm.costs, "cost")], ["idle-cost", "Idle cost", moneyOf(mm.costs, "idle_cost")],
        ["avoidable-cost", "Avoidable cost", moneyOf(mm.costs, "avoidable_cost")]]);
      placements.replaceChildren(table([{ label: "From", cell: (x) => since(x.effective_from) }, { label: "Site", cell: (x) => x.site },
        { label: "Department", cell: (x) => x.department || "—" }, { label: "Power profile", cell: (x) => x.power_profile },
        { label: "", cell: (x) => (x.effective_from && Date.parse(x.effective_from) > Date.now() ? "scheduled" : "") }],
      mm.placements.slice().reverse()));
    };
    fill(m);

    const chart = chartBox({ id: "history" });
    const note = h("p", { class: "muted", id: "history-note" });
    const legend = h("div", { class: "legend" }, h("span", { class: "l-active" }, "active"), h("span", { class: "l-idle" }, "idle (waste)"),
      h("span", { class: "l-unknown" }, "unknown"), h("span", { class: "l-unobserved" }, "not observed"));
    let shown = null;
    const loadChart = async (w) => {
      const step = stepFor(w.from, w.to);
      const q = new URLSearchParams({ from: new Date(w.from).toISOString(), to: new Date(w.to).toISOString(), step });
      const hist = await api("GET", `${path}/history?${q}`);
      chart.draw((width) => historyChart(hist, width));
      note.textContent = `One bar per ${duration(hist.step_seconds)}, ${dateTime(hist.from)} to ${dateTime(hist.to)}.`;
    };
    const picker = historyRange(params, (w, state) => {
      shown = state;
      history.replaceState(null, "", `#/machine/${encodeURIComponent(id)}?${new URLSearchParams(state)}`);
      loadChart(w).catch((e) => { picker.error.textContent = e.message; });
    });

    const parts = [h("p", {}, h("a", { href: "#/machines" }, "‹ All machines")), title, subtitle,
      h("div", { class: "panel" }, h("div", { class: "panel-head" }, h("h2", {}, "History"), picker.form), picker.error, chart, legend, note),
      h("div", { class: "panels" }, h("div", { class: "panel" }, h("h2", {}, "Last report"), lastReport),
        h("div", { class: "panel" }, h("h2", {}, "Machine"), about), h("div", { class: "panel" }, h("h2", {}, "Totals"), totals)),
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
        ], "Save placement", async (v) => { fill(await api("PATCH", path, v)); }, { write: true }),
        h("h2", {}, "Retire"),
        h("p", { class: "muted" }, "Revokes the agent's credential and hides the machine; its history and totals are kept."),
        h("button", { type: "button", class: "danger", "data-write": "", onclick: async () => {
          if (!confirm(`Retire ${m.hostname}?`)) return;
          await api("DELETE", path);
          location.hash = "#/machines";
        } }, "Retire machine")));
    }
    root.replaceChildren(...parts);
    let first;
    try { first = picker.windowOf(); } catch (e) { picker.error.textContent = e.message; first = { from: Date.now() - DAY_MS, to: Date.now() }; }
    shown = params.get("from") ? { from: params.get("from"), to: params.get("to") } : { range: params.get("range") || "24h" };
    await loadChart(first);
    startRefresh(async () => {
      fill(await api("GET", path));
      // A preset moves with the clock; chosen dates stay as they are.
      if (shown && shown.range) await loadChart(picker.windowOf());
    });
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
        { label: "Machines", num: true, cell: (x) => count(x.machines) },
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
        ["Machines now", count(current.machines)]].flatMap(([k, val]) => [h("dt", {}, k), h("dd", { class: "pre" }, val)]));
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
      hours.replaceChildren(h("p", { class: "muted" }, `Imported hours from ${dateTime(from)} to ${dateTime(to)}: ${count(res.hours.length)}.`),
        table([{ label: "Hour (your time)", cell: (x) => dateTime(x.hour_start) },
          { label: "UTC", cell: (x) => dateFormat({ dateStyle: "medium", timeStyle: "short", timeZone: "UTC" }).format(new Date(x.hour_start)) },
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
          csv.value = "";
          file.value = "";
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
        { label: "Machines", num: true, cell: (x) => count(x.machines) }];
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

  // A token is usable until revoked, expired or used up; only a usable one can be revoked.
  function tokenState(t) {
    if (t.revoked_at_ms) return "revoked";
    if (t.expires_at_ms && t.expires_at_ms <= Date.now()) return "expired";
    if (t.max_uses && t.uses >= t.max_uses) return "used up";
    return null;
  }

  async function tokenPage(root, { title, intro, path, columns, fields, created, id }) {
    const list = h("div", {});
    const shown = h("div", {});
    const load = async () => {
      const res = await api("GET", path);
      list.replaceChildren(table([...columns, { label: "", cell: (t) => tokenState(t) || h("button", { type: "button", class: "danger",
        onclick: async () => { if (!confirm("Revoke this token?")) return; await api("DELETE", `${path}/${t.id}`); await load(); } }, "Revoke") }],
      res.items, "No tokens yet.", (t) => ({ "data-token": t.id, class: tokenState(t) ? "inactive" : null })));
    };
    root.replaceChildren(h("h1", {}, title), h("p", { class: "muted" }, intro), h("div", { class: "panel", "data-write": "" }, h("h2", {}, "Create"),
      formFor(fields, "Create token", async (v, form) => {
        const res = await api("POST", path, v);
        form.reset();
        shown.replaceChildren(secretBox(created, res.token));
        await load();
      }, { write: true, id }), shown), h("div", { class: "panel" }, list));
    await load();
  }

  // Lifetimes offered for enrollment tokens (seconds); the server takes 60 s to 10 years.
  const LIFETIMES = [["3600", "1 hour"], ["86400", "1 day"], ["604800", "7 days"], ["2592000", "30 days"], ["7776000", "90 days"],
    ["31536000", "1 year"], ["", "never"]];

  function enrollment(root) {
    return api("GET", "/api/v1/sites").then((sitesRes) => tokenPage(root, {
      title: "Enrollment tokens", path: "/api/v1/enrollment-tokens", created: "New enrollment token", id: "enrollment-form",
      intro: ["Agents enrol with ", h("code", {}, "greenops-agent enroll --enrollment-token …"),
        "; the machines join the token's site and department."],
      columns: [{ label: "Id", cell: (t) => t.id }, { label: "Site", cell: (t) => t.site }, { label: "Department", cell: (t) => t.department || "—" },
        { label: "Uses", num: true, cell: (t) => `${count(t.uses)}${t.max_uses ? ` of ${count(t.max_uses)}` : ""}` },
        { label: "Expires", cell: (t) => (t.expires_at_ms ? when(t.expires_at_ms) : "never"), key: "expires" },
        { label: "Created", cell: (t) => when(t.created_at_ms) }],
      fields: [{ name: "site", label: "Site", options: sitesRes.items.map((x) => x.name), value: "default" },
        { name: "department", label: "Department", placeholder: "none" },
        { name: "max_uses", label: "Max uses", type: "number", min: 1, placeholder: "unlimited" },
        { name: "expires_in_seconds", label: "Expires after", options: LIFETIMES.map(([value, label]) => ({ value, label })), value: "604800",
          parse: Number }],
    }));
  }

  function apiTokens(root) {
    return tokenPage(root, { title: "API tokens", path: "/api/v1/api-tokens", created: "New API token", id: "api-token-form",
      intro: ["Personal tokens for scripts: send ", h("code", {}, "Authorization: Bearer <token>"), ". A token carries its user's role."],
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
      { label: "When", cell: (e) => dateFormat({ dateStyle: "medium", timeStyle: "medium" }).format(new Date(e.at_ms)), cls: "nowrap" }, { label: "Who", cell: (e) => e.actor }, { label: "Action", cell: (e) => e.action },
      { label: "Target", cell: (e) => e.target }, { label: "Details", cell: (e) => h("code", {}, e.details) }], res.items)));
  }

  // ---- Start -------------------------------------------------------------------------
  // The formatters, for the browser test (and anyone curious in the console).
  window.greenopsFormat = Object.freeze({ energy, energyJ, co2, amount, duration, percent, dateTime, calendarDay });
  window.addEventListener("hashchange", () => { route(); });
  api("GET", "/api/v1/auth/me").then((u) => { me = u; route(); }).catch(() => showLogin());
})();
