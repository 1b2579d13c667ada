// The cdp console: one page, six views, plain JavaScript over the HTTP API (no framework, no build step).
// The token is kept in sessionStorage (this tab only) and sent as a bearer token; the server decides what it
// may see (GET /v1/console/session lists the pages). Every text from the API is set as text, never as HTML.
"use strict";

const TOKEN_KEY = "cdp.console.token";
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", session: null, timers: [], sources: [] };
const TITLES = { sources: "Sources", live: "Live events", profiles: "Profiles", audiences: "Audiences",
  pipeline: "Pipeline", sql: "SQL" };
const COLOURS = ["var(--c0)", "var(--c1)", "var(--c2)", "var(--c3)"];
const EXAMPLE_RULE = { all: [{ event: "Order Completed", type: "track", within_days: 30 }] };

// ---------------------------------------------------------------------------------------------- helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) el.setAttribute(name, value);
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = text; }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

function fmtTime(value) {
  if (value === null || value === undefined || value === "") return "";
  const d = typeof value === "number" ? new Date(value) : new Date(String(value).replace(" ", "T") + (/[zZ+]|[-]\d\d:\d\d$/.test(String(value).slice(10)) ? "" : "Z"));
  return isNaN(d) ? String(value) : d.toISOString().replace("T", " ").slice(0, 19);
}

function fmtNumber(n, digits = 0) {
  return Number(n || 0).toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function table(columns, rows, onClick) {
  return h("table", {},
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null }, c.title)))),
    h("tbody", {}, rows.map((row) => {
      const tr = h("tr", { class: onClick ? "clickable" : null },
        columns.map((c) => h("td", { class: c.num ? "num" : null }, c.value(row))));
      if (onClick) tr.addEventListener("click", () => {
        tr.parentNode.querySelectorAll("tr.selected").forEach((t) => t.classList.remove("selected"));
        tr.classList.add("selected");
        onClick(row);
      });
      return tr;
    })));
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function csv(columns, rows) {
  const cell = (v) => {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns, ...rows].map((r) => r.map(cell).join(",")).join("\r\n") + "\r\n";
}

// A line chart of one or more series [{name, points: [[x, y], ...]}], x in ms; small, hand-drawn SVG.
function lineChart(series, { width = 560, height = 160, unit = "", days = false } = {}) {
  const pad = { l: 44, r: 8, t: 8, b: 20 };
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const ys = all.map((p) => p[1]);
  const span = days ? 7 * 86400000 : 60000;
  const x0 = Math.min(...xs, Math.max(...xs, Date.now()) - span), x1 = Math.max(...xs, x0 + 1);
  const yMax = Math.max(1, ...ys) * 1.1;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - (y / yMax) * (height - pad.t - pad.b);
  const grid = [0, 0.5, 1].map((f) => [
    svg("line", { class: "grid", x1: pad.l, x2: width - pad.r, y1: Y(yMax * f / 1.1), y2: Y(yMax * f / 1.1) }),
    svg("text", { x: pad.l - 4, y: Y(yMax * f / 1.1) + 3, "text-anchor": "end" }, fmtNumber(yMax * f / 1.1, yMax < 5 ? 1 : 0) + unit),
  ]);
  const lines = series.map((s, i) => s.points.length ? svg("polyline", {
    fill: "none", stroke: COLOURS[i % COLOURS.length], "stroke-width": 2,
    points: s.points.map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join(" "),
  }) : null);
  const dots = series.map((s, i) => s.points.length <= 3 ? s.points.map((p) => svg("circle", {
    cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 3, fill: COLOURS[i % COLOURS.length] })) : null);
  const tick = (x) => (days ? fmtTime(x).slice(0, 10) : fmtTime(x).slice(11));
  const labels = [svg("text", { x: pad.l, y: height - 5 }, tick(x0)),
    svg("text", { x: width - pad.r, y: height - 5, "text-anchor": "end" }, tick(x1))];
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img" }, grid, lines, dots, labels);
  const legend = h("div", { class: "legend" }, series.map((s, i) => h("span", {}, h("i", { style: `background:${COLOURS[i % COLOURS.length]}` }), s.name)));
  return h("div", {}, chart, legend);
}

// Pretty-printed JSON and the line of every path in it (rule.all[0].op), so a validation message from the API
// can point at its line in the editor.
function prettyWithLines(value, path = "rule", indent = "", lines = [], at = {}, prefix = "") {
  const first = lines.length;
  at[path] = first;
  if (Array.isArray(value) && value.length) {
    lines.push(prefix + "[");
    value.forEach((v, i) => prettyWithLines(v, `${path}[${i}]`, indent + "  ", lines, at, indent + "  "));
    lines.push(indent + "]");
  } else if (value && typeof value === "object" && !Array.isArray(value) && Object.keys(value).length) {
    lines.push(prefix + "{");
    Object.entries(value).forEach(([k, v]) => prettyWithLines(v, `${path}.${k}`, indent + "  ", lines, at, `${indent}  ${JSON.stringify(k)}: `));
    lines.push(indent + "}");
  } else {
    lines.push(prefix + JSON.stringify(value));
  }
  return { lines, at };
}

function jsonText(value) {
  const { lines } = prettyWithLines(value);
  return fixCommas(lines).join("\n");
}

function fixCommas(lines) {
  // Commas between siblings: a line is followed by a comma unless the next one closes its container.
  return lines.map((line, i) => {
    const clean = line.replace(/,$/, "");
    const next = (lines[i + 1] || "").trim();
    const opens = clean.endsWith("[") || clean.endsWith("{");
    return opens || i === lines.length - 1 || next.startsWith("]") || next.startsWith("}") ? clean : clean + ",";
  });
}

// ---------------------------------------------------------------------------------------------- frame

function showLogin(message) {
  state.session = null;
  document.getElementById("nav").replaceChildren();
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  const input = h("input", { id: "token", type: "password", placeholder: "admin, analyst or read token", autocomplete: "off" });
  const form = h("form", { class: "panel login", id: "login", onsubmit: async (e) => {
    e.preventDefault();
    state.token = input.value.trim();
    await start();
  } },
  h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "Paste a token that `make run` printed (admin token: everything; read token: no SQL, no write keys)."),
  input, h("button", { type: "submit" }, "Sign in"),
  message ? h("p", { class: "error" }, message) : null);
  document.getElementById("main").replaceChildren(form);
  input.focus();
}

async function start() {
  try {
    state.session = await api("GET", "/v1/console/session");
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(state.token ? e.message : "");
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  document.getElementById("who").textContent = `${state.session.role} token`;
  const logout = document.getElementById("logout");
  logout.hidden = false;
  logout.onclick = () => { sessionStorage.removeItem(TOKEN_KEY); state.token = ""; location.hash = ""; showLogin(); };
  document.getElementById("nav").replaceChildren(...state.session.pages.map((p) => h("a", { href: `#${p}`, id: `nav-${p}` }, TITLES[p])));
  route();
}

function route() {
  if (!state.session) return;
  state.timers.forEach(clearInterval);
  state.timers = [];
  const [name, query] = (location.hash.slice(1) || state.session.pages[0]).split("?");
  const page = state.session.pages.includes(name) ? name : state.session.pages[0];
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.id === `nav-${page}`));
  document.title = `${TITLES[page]} · cdp console`;
  const main = document.getElementById("main");
  main.replaceChildren(h("h1", {}, TITLES[page]));
  main.dataset.page = page;
  PAGES[page](main, new URLSearchParams(query || "")).catch((e) => main.append(h("p", { class: "error" }, e.message)));
}

async function loadSources() {
  state.sources = (await api("GET", "/v1/sources")).sources;
  return state.sources;
}

// ---------------------------------------------------------------------------------------------- pages

const PAGES = {
  async sources(main) {
    const list = h("div", { class: "panel", id: "source-list" });
    const snippetBox = h("div", { class: "panel", id: "snippet-box", hidden: true });
    main.append(list);
    if (state.session.create) {
      const name = h("input", { id: "source-name", placeholder: "name, e.g. shop-web", required: true });
      const channel = h("select", { id: "source-channel" }, ["online", "mobile", "offline"].map((c) => h("option", { value: c }, c)));
      const message = h("span", { id: "source-message" });
      main.append(h("form", { class: "panel inline", id: "new-source", onsubmit: async (e) => {
        e.preventDefault();
        message.className = "";
        message.textContent = "creating…";
        try {
          const created = await api("POST", "/v1/sources", { name: name.value, channel: channel.value });
          message.className = "ok";
          message.textContent = `created ${created.name}`;
          name.value = "";
          await drawList();
          showSnippet(created);
        } catch (err) {
          message.className = "error";
          message.textContent = err.message;
        }
      } }, h("strong", {}, "New source"), name, channel, h("button", { type: "submit" }, "Create"), message));
    }
    main.append(snippetBox);

    function showSnippet(source) {
      snippetBox.hidden = false;
      const pre = h("pre", { id: "snippet" }, source.snippet);
      snippetBox.replaceChildren(
        h("h2", {}, `Snippet for ${source.name}`),
        h("p", { class: "muted" }, "Paste it into the <head> of every page of the site. The script it loads is the file ",
          h("code", {}, "dist/umd/standalone.js"), " of the npm package ", h("code", {}, "@segment/analytics-next"),
          ", served by your site at ", h("code", {}, source.script_path), " (or Segment's copy: ", h("code", {}, source.script_cdn), ")."),
        pre,
        h("p", {}, h("button", { type: "button", id: "copy-snippet", onclick: async (e) => {
          await navigator.clipboard.writeText(source.snippet).catch(() => null);
          e.target.textContent = "Copied";
        } }, "Copy"), " ", h("a", { href: `#live?source=${encodeURIComponent(source.name)}` }, "Watch its events arrive →")));
    }

    async function drawList() {
      const sources = await loadSources();
      const keys = state.session.source_keys;
      const columns = [
        { title: "name", value: (s) => s.name }, { title: "channel", value: (s) => s.channel },
        { title: "kind", value: (s) => s.kind }, { title: "created", value: (s) => fmtTime(s.created_at_ms) },
      ];
      if (keys) columns.push({ title: "write key", value: (s) => h("code", {}, s.write_key) });
      list.replaceChildren(h("h2", {}, `${sources.length} sources`),
        table(columns, sources, keys ? (s) => s.snippet && showSnippet(s) : null),
        keys ? h("p", { class: "muted small" }, "Click an SDK source for its snippet.") :
          h("p", { class: "muted small" }, "Write keys and snippets are shown to the admin token only."));
    }
    await drawList();
  },

  async live(main, params) {
    const sources = await loadSources();
    const select = h("select", { id: "live-source" }, h("option", { value: "" }, "all sources"),
      sources.map((s) => h("option", { value: s.name }, `${s.name} (${s.channel})`)));
    select.value = params.get("source") || "";
    const status = h("span", { class: "muted", id: "live-status" });
    const events = h("div", { id: "live-events" });
    const detail = h("pre", { id: "live-detail", hidden: true });
    const rejected = h("div", { id: "live-rejected" });
    main.append(h("div", { class: "panel inline" }, h("form", { class: "inline" }, "Source ", select, status)),
      h("div", { class: "row" }, h("div", { class: "panel" }, h("h2", {}, "Latest events"), events),
        h("div", { class: "panel" }, h("h2", {}, "Event"), h("p", { class: "muted small" }, "Click an event for its payload."), detail)),
      h("div", { class: "panel" }, h("h2", {}, "Rejected (dead-letter topic)"), rejected));
    select.addEventListener("change", () => { location.hash = select.value ? `live?source=${encodeURIComponent(select.value)}` : "live"; });
    const label = (e) => e.type === "track" ? e.event : e.type === "identify" ? e.userId : e.type === "page" || e.type === "screen" ? (e.name || (e.properties || {}).path || "") : e.groupId || e.previousId || "";
    every(1000, async () => {
      const q = select.value ? `?source=${encodeURIComponent(select.value)}` : "";
      const data = await api("GET", `/v1/console/live${q}`);
      status.textContent = `${data.events.length} recent events, ${data.rejected.length} rejected · updated ${fmtTime(Date.now()).slice(11)}`;
      events.replaceChildren(data.events.length ? table([
        { title: "received", value: (e) => fmtTime(e.receivedAt || e._kafka_ms) },
        { title: "source", value: (e) => e.sourceId || "" }, { title: "type", value: (e) => e.type },
        { title: "event", value: (e) => label(e) }, { title: "who", value: (e) => e.userId || e.anonymousId || "" },
      ], data.events, (e) => { detail.hidden = false; detail.textContent = JSON.stringify(e, null, 2); })
        : h("p", { class: "muted" }, "No events yet: load a page that carries this source's snippet."));
      rejected.replaceChildren(data.rejected.length ? table([
        { title: "received", value: (r) => fmtTime(r.received_at || r._kafka_ms) },
        { title: "source", value: (r) => r.source || "(pipeline)" }, { title: "reason", value: (r) => h("span", { class: "error" }, r.reason) },
        { title: "event", value: (r) => h("code", {}, JSON.stringify(r.event ?? r.event_json ?? r.raw ?? null).slice(0, 160)) },
      ], data.rejected) : h("p", { class: "muted" }, "Nothing rejected recently."));
    });
  },

  async profiles(main, params) {
    const type = h("select", { id: "id-type" }, state.session.id_types.map((t) => h("option", { value: t }, t)));
    type.value = params.get("type") || (state.session.id_types.includes("email") ? "email" : state.session.id_types[0]);
    const value = h("input", { id: "id-value", placeholder: "e.g. jane@example.com", size: 40, value: params.get("value") || "" });
    const out = h("div", { id: "profile" });
    main.append(h("form", { class: "panel inline", id: "profile-search", onsubmit: (e) => {
      e.preventDefault();
      location.hash = `profiles?type=${encodeURIComponent(type.value)}&value=${encodeURIComponent(value.value.trim())}`;
    } }, "Find a profile by ", type, value, h("button", { type: "submit" }, "Search")), out);
    if (!params.get("value")) return;
    let p;
    try {
      p = await api("GET", `/v1/profiles/${encodeURIComponent(type.value)}/${encodeURIComponent(params.get("value"))}`);
    } catch (e) {
      out.append(h("p", { class: e.status === 404 ? "muted" : "error", id: "profile-missing" }, e.message));
      return;
    }
    const c = p.computed;
    const kv = (pairs) => h("dl", { class: "kv" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    const dict = (obj) => Object.keys(obj).length ? kv(Object.entries(obj).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)])) : h("p", { class: "muted" }, "none");
    let merges = [];
    try { merges = (await api("GET", `/v1/console/merges/${encodeURIComponent(p.profile_id)}`)).merges; } catch (e) { merges = []; }
    const names = {};  // audience ids to names, where the token may read audiences
    if (state.session.pages.includes("audiences") && p.audiences.length) {
      (await api("GET", "/v1/audiences")).audiences.forEach((a) => { names[a.id] = a.name; });
    }
    const audienceBadge = (id) => names[id] ? h("a", { class: "badge", href: `#audiences?id=${encodeURIComponent(id)}` }, names[id]) : h("span", { class: "badge" }, id);
    out.append(
      h("div", { class: "panel" }, h("h2", {}, "Profile ", h("code", { id: "profile-id" }, p.profile_id))),
      h("div", { class: "row" },
        h("div", { class: "panel" }, h("h2", {}, "Identifiers"), h("div", { id: "identifiers" }, table(
          [{ title: "type", value: (i) => i.type }, { title: "value", value: (i) => i.value }], p.identifiers))),
        h("div", { class: "panel", id: "computed" }, h("h2", {}, "Computed"), kv([
          ["LTV", h("span", {}, h("span", { id: "ltv" }, fmtNumber(c.lifetime_value.value, 2)), ` ${c.lifetime_value.currency}`)],
          ["orders", fmtNumber(c.orders)],
          ["events", fmtNumber(c.events)], ["first seen", fmtTime(c.first_seen)], ["last seen", fmtTime(c.last_seen)],
          ["channels", (c.channels || []).join(", ")], ["last channel", c.last_channel || ""],
        ]))),
      h("div", { class: "row" },
        h("div", { class: "panel" }, h("h2", {}, "Traits"), dict(p.traits)),
        h("div", { class: "panel" }, h("h2", {}, "Consent"), dict(p.consent)),
        h("div", { class: "panel", id: "groups" }, h("h2", {}, "Groups"),
          dict(Object.fromEntries(p.groups.map((g) => [g.group_id, g.traits])))),
        h("div", { class: "panel" }, h("h2", {}, "Audiences"), h("div", { id: "profile-audiences" },
          p.audiences.length ? p.audiences.map(audienceBadge) : h("p", { class: "muted" }, "none")))),
      h("div", { class: "panel" }, h("h2", {}, "Merges"), merges.length ? table([
        { title: "merged", value: (m) => fmtTime(m.merged_at) }, { title: "from", value: (m) => m.from_profile },
        { title: "into", value: (m) => m.into_profile }, { title: "cause", value: (m) => m.cause },
      ], merges) : h("p", { class: "muted" }, "none")),
      h("div", { class: "panel" }, h("h2", {}, `Timeline (latest ${p.events.length} events)`), h("ul", { class: "plain timeline", id: "timeline" },
        p.events.map((e) => h("li", {}, h("code", {}, fmtTime(e.timestamp)), " ", h("strong", {}, e.type), " ", e.event || "", " ",
          h("span", { class: "muted small" }, `${e.channel} · ${JSON.stringify(e.properties).slice(0, 120)}`))))));
  },

  async audiences(main, params) {
    const list = h("div", { class: "panel", id: "audience-list" });
    const detail = h("div", { class: "panel", id: "audience-detail", hidden: true });
    const admin = state.session.create;
    const name = h("input", { id: "aud-name", placeholder: "name", size: 36 });
    const scope = h("select", { id: "aud-scope" }, h("option", { value: "profile" }, "profile"), h("option", { value: "anonymous" }, "anonymous"));
    const rule = h("textarea", { class: "code", id: "aud-rule", spellcheck: "false" });
    rule.value = jsonText(EXAMPLE_RULE);
    const errors = h("ul", { class: "errors error", id: "aud-errors" });
    const size = h("span", { id: "aud-size", class: "figure" });
    const message = h("span", { id: "aud-message" });
    let editing = null;
    const heading = h("h2", {}, "New audience");

    function body() {
      errors.replaceChildren();
      let parsed;
      try {
        parsed = JSON.parse(rule.value);
      } catch (e) {
        const at = /position (\d+)/.exec(e.message);
        const line = at ? rule.value.slice(0, Number(at[1])).split("\n").length : null;
        showErrors([{ loc: "rule", msg: `not JSON: ${e.message}`, line }]);
        return null;
      }
      return { name: name.value.trim() || "untitled", scope: scope.value, rule: parsed };
    }

    function showErrors(items) {
      errors.replaceChildren(...items.map((item) => h("li", { onclick: () => selectLine(item.line) },
        item.line ? `line ${item.line}: ` : "", h("code", {}, item.loc), ` ${item.msg}`)));
      const first = items.find((i) => i.line);
      if (first) selectLine(first.line);
    }

    function selectLine(line) {
      if (!line) return;
      const lines = rule.value.split("\n");
      const start = lines.slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
      rule.focus();
      rule.setSelectionRange(start, start + lines[line - 1].length);
    }

    function apiErrors(err, parsed) {
      // The API names the rule's path (rule.all[2].where[0].op); the editor is re-laid out so that each path has
      // a line of its own, and the message is shown against it.
      const { lines, at } = prettyWithLines(parsed.rule);
      rule.value = fixCommas(lines).join("\n");
      const fields = (err.body && err.body.errors) || [];
      if (!fields.length) return showErrors([{ loc: "", msg: err.message }]);
      showErrors(fields.map((f) => {
        let path = f.loc || "";
        while (path && !(path in at)) {  // the deepest path the rule has (a missing key is reported on its parent)
          const shorter = path.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
          path = shorter === path ? "" : shorter;
        }
        return { loc: f.loc, msg: f.msg, line: path ? at[path] + 1 : null };
      }));
    }

    async function preview() {
      const b = body();
      if (!b) return;
      size.textContent = "…";
      try {
        const answer = await api("POST", "/v1/audiences/preview", b);
        size.textContent = `${fmtNumber(answer.size)} members now`;
      } catch (err) {
        size.textContent = "";
        apiErrors(err, b);
      }
    }

    async function save() {
      const b = body();
      if (!b) return;
      try {
        const saved = editing ? await api("PUT", `/v1/audiences/${editing}`, b) : await api("POST", "/v1/audiences", b);
        message.className = "ok";
        message.textContent = `saved ${saved.name}`;
        await drawList();
        showAudience(saved);
      } catch (err) {
        message.className = "error";
        message.textContent = err.message;
        apiErrors(err, b);
      }
    }

    function edit(a) {
      editing = a ? a.id : null;
      heading.textContent = a ? `Edit ${a.name}` : "New audience";
      name.value = a ? a.name : "";
      scope.value = a ? a.scope : "profile";
      rule.value = jsonText(a ? a.rule : EXAMPLE_RULE);
      errors.replaceChildren();
      size.textContent = "";
      message.textContent = "";
    }

    async function showAudience(a) {
      detail.hidden = false;
      const history = (await api("GET", `/v1/audiences/${a.id}/history`)).days;
      const points = history.map((d) => [Date.parse(d.day), d.size]);
      detail.replaceChildren(h("h2", {}, a.name, " ", h("span", { class: "muted small" }, a.id)),
        h("p", {}, h("span", { class: "figure", id: "aud-current-size" }, fmtNumber(a.size)), " members · scope ", a.scope),
        history.length ? lineChart([{ name: "members at the end of each day", points }], { height: 140, days: true }) : h("p", { class: "muted" }, "No membership changes yet."),
        h("p", {}, h("button", { type: "button", id: "aud-download", onclick: async () => {
          const r = await fetch(`/v1/audiences/${a.id}/members?format=csv`, { headers: { Authorization: `Bearer ${state.token}` } });
          download(`${a.name}.csv`, "text/csv", await r.text());
        } }, "Download members (CSV)"), " ",
        admin ? h("button", { type: "button", class: "plain", onclick: () => edit(a) }, "Edit") : null));
    }

    async function drawList() {
      const audiences = (await api("GET", "/v1/audiences")).audiences;
      list.replaceChildren(h("h2", {}, `${audiences.length} audiences`), audiences.length ? table([
        { title: "name", value: (a) => a.name }, { title: "scope", value: (a) => a.scope },
        { title: "members", num: true, value: (a) => fmtNumber(a.size) }, { title: "created", value: (a) => fmtTime(a.created_at_ms) },
      ], audiences, showAudience) : h("p", { class: "muted" }, "None yet."));
      return audiences;
    }

    main.append(h("div", { class: "row" }, h("div", {}, list, detail),
      h("div", { class: "panel", id: "aud-editor" }, heading,
        h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, name, scope),
        h("p", { class: "muted small" }, "The rule language: all / any / not, trait, computed, and behaviour (event, type, where, within_days, count). See the README's Audiences."),
        rule, errors,
        h("p", { class: "inline" }, h("button", { type: "button", id: "aud-preview", onclick: preview, class: "plain" }, "Preview size"), " ",
          admin ? h("button", { type: "button", id: "aud-save", onclick: save }, "Save") : null, " ",
          admin ? h("button", { type: "button", class: "plain", onclick: () => edit(null) }, "New") : null, " ", message),
        h("p", {}, size))));
    const audiences = await drawList();
    const wanted = params.get("id") && audiences.find((a) => a.id === params.get("id"));
    if (wanted) await showAudience(wanted);
  },

  async pipeline(main) {
    const charts = {
      received: h("div", { id: "chart-received" }), stitched: h("div", { id: "chart-stitched" }),
      lag: h("div", { id: "chart-lag" }), dead: h("div", { id: "chart-dead" }),
    };
    const figures = h("div", { class: "row", id: "pipeline-figures" });
    main.append(figures,
      h("div", { class: "row" }, h("div", { class: "panel" }, h("h2", {}, "Events/s per channel"), charts.received),
        h("div", { class: "panel" }, h("h2", {}, "Stitched events/s"), charts.stitched)),
      h("div", { class: "row" }, h("div", { class: "panel" }, h("h2", {}, "Consumer lag per stage (records)"), charts.lag),
        h("div", { class: "panel" }, h("h2", {}, "Dead letters held"), charts.dead)),
      h("p", { class: "muted small" }, "From the broker (every process of the installation); updated every 2 s while this page is open. Per-process counters: ", h("a", { href: "/metrics" }, "/metrics"), "."));
    every(2000, async () => {
      const data = await api("GET", "/v1/console/pipeline");
      const s = data.samples;
      const last = s[s.length - 1];
      const rated = s.filter((x) => Object.keys(x.rates).length);
      const figure = (title, value, id) => h("div", { class: "panel" }, h("div", { class: "muted small" }, title), h("div", { class: "figure", id }, value));
      figures.replaceChildren(
        figure("events received", fmtNumber(Object.values(last.received).reduce((a, b) => a + b, 0)), "fig-received"),
        figure("stitching lag", fmtNumber(last.lag.stitching), "fig-lag-stitching"),
        figure("sink lag", fmtNumber(last.lag.sink), "fig-lag-sink"),
        figure("dead letters", fmtNumber(last.deadletters), "fig-dead"));
      charts.received.replaceChildren(lineChart(data.channels.map((c) => ({ name: c, points: rated.map((x) => [x.at_ms, x.rates[c] || 0]) })), { unit: "/s" }));
      charts.stitched.replaceChildren(lineChart([{ name: "stitched", points: rated.map((x) => [x.at_ms, x.rates.stitched || 0]) }], { unit: "/s" }));
      charts.lag.replaceChildren(lineChart(data.stages.map((st) => ({ name: st, points: s.map((x) => [x.at_ms, x.lag[st] || 0]) }))));
      charts.dead.replaceChildren(lineChart([{ name: "dead letters", points: s.map((x) => [x.at_ms, x.deadletters]) }]));
    });
  },

  async sql(main) {
    const query = h("textarea", { class: "code", id: "sql-query", spellcheck: "false" });
    query.value = "SELECT type, event, count() AS events\nFROM cdp.events\nGROUP BY type, event\nORDER BY events DESC\nLIMIT 20";
    const out = h("div", { id: "sql-result" });
    const status = h("span", { class: "muted", id: "sql-status" });
    let last = null;
    const run = async () => {
      status.className = "muted";
      status.textContent = "running…";
      const started = performance.now();
      try {
        last = await api("POST", "/v1/sql", { query: query.value });
        status.textContent = `${last.rows.length} rows in ${Math.round(performance.now() - started)} ms`;
        out.replaceChildren(table(last.columns.map((c, i) => ({ title: c, value: (r) => typeof r[i] === "object" && r[i] !== null ? JSON.stringify(r[i]) : String(r[i] ?? "") })), last.rows));
      } catch (err) {
        last = null;
        status.className = "error";
        status.textContent = err.message;
        out.replaceChildren();
      }
    };
    main.append(h("div", { class: "panel" }, h("p", { class: "muted small" }, "Read-only SQL over the analyst tables (README: Tables for analysts); refused: writes, settings, table functions."),
      query, h("p", { class: "inline" }, h("button", { type: "button", id: "sql-run", onclick: run }, "Run"), " ",
        h("button", { type: "button", class: "plain", id: "sql-csv", onclick: () => last && download("result.csv", "text/csv", csv(last.columns, last.rows)) }, "Download CSV"), " ", status)),
    h("div", { class: "panel" }, out));
    query.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) run(); });
  },
};

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => (state.token ? start() : showLogin()));
