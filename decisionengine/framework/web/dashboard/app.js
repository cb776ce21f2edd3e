// decisionengine dashboard: plain JavaScript, no build step, no CDN (the server may have no internet).
// Views: "#/" (every channel) and "#/channel/NAME" (one channel). Data from /api/v1, live
// updates from the Server-Sent Events stream /api/v1/events.
"use strict";

const API = "/api/v1";
const view = document.getElementById("view");
const live = document.getElementById("live");
const message = document.getElementById("message");
const tokenInput = document.getElementById("token");
const tokenClear = document.getElementById("token-clear");
let current = { name: null, chart: null };

// -- helpers -----------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children.flat()) if (child) node.append(child);
  return node;
}

function when(epoch) {
  return epoch ? new Date(epoch * 1000).toLocaleString() : "-";
}

function ago(epoch) {
  if (!epoch) return "never";
  const seconds = Math.max(0, Date.now() / 1000 - epoch);
  if (seconds < 90) return `${seconds.toFixed(0)} s ago`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

function token() {
  return sessionStorage.getItem("de-api-token");
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function say(text, isError = false) {
  message.textContent = text;
  message.className = isError ? "error" : "";
}

function stateBadge(state) {
  return el("span", { class: `state state-${state}` }, state);
}

// -- overview ----------------------------------------------------------------------------------

async function showOverview() {
  current = { name: null, chart: null };
  const [{ channels }, reaper] = await Promise.all([api("/channels"), api("/reaper")]);
  const failing = channels.filter((c) => c.failing).length;
  const rows = channels.map((c) =>
    el("tr", { class: c.failing ? "failing channel-row" : "channel-row", "data-channel": c.name },
      el("td", {}, el("a", { href: `#/channel/${encodeURIComponent(c.name)}` }, c.name)),
      el("td", {}, stateBadge(c.state), c.standby ? " (standby)" : ""),
      el("td", { class: "generation" }, c.generation ?? "-"),
      el("td", {}, c.last_generation ? `${when(c.last_generation.started)} (${c.last_generation.outcome})` : "-"),
      el("td", {}, Object.entries(c.sources).map(([k, s]) =>
        el("div", {}, `${k}: ${ago(s.last_update)}`, s.missed_update_count ? el("span", { class: "error" }, ` missed ${s.missed_update_count}`) : ""))),
      el("td", { class: "error" }, c.last_error || "")));
  view.replaceChildren(
    el("h1", {}, `Channels (${channels.length}, ${failing} failing)`),
    el("table", { id: "channels" },
      el("tr", {}, ["channel", "state", "generation", "last generation", "sources", "last error"].map((h) => el("th", {}, h))),
      rows),
    el("h2", {}, "Reaper"),
    el("p", { id: "reaper" }, stateBadge(reaper.state),
      ` retention ${reaper.retention_interval_in_days} days, ${reaper.runs} passes, next ${when(reaper.next_run)}`),
    token() ? el("div", { class: "controls" },
      el("button", { onclick: () => control("/reaper/start") }, "start reaper"),
      el("button", { onclick: () => control("/reaper/stop") }, "stop reaper")) : "");
}

// -- one channel -------------------------------------------------------------------------------

async function showChannel(name) {
  const keep = current.name === name ? current.chart : null;
  current = { name, chart: keep };
  const path = `/channels/${encodeURIComponent(name)}`;
  const [channel, products, decisions] = await Promise.all([
    api(path), api(`${path}/products`), api(`${path}/decisions?limit=1`)]);
  let graph = null;
  try { graph = await api(`${path}/graph`); } catch (error) { graph = null; }
  const latest = decisions.decisions[decisions.decisions.length - 1];

  const controls = token() ? el("div", { class: "controls" },
    el("button", { id: "start", onclick: () => control(`${path}/start`) }, "start"),
    el("button", { id: "stop", onclick: () => control(`${path}/stop`) }, "stop")) : "";

  const summary = el("table", { class: "kv" },
    el("tr", {}, el("td", {}, "state"), el("td", { id: "state" }, stateBadge(channel.state))),
    el("tr", {}, el("td", {}, "generation"), el("td", { id: "generation" }, channel.generation ?? "-")),
    el("tr", {}, el("td", {}, "last generation"), el("td", {},
      channel.last_generation ? `${when(channel.last_generation.started)}, ${channel.last_generation.outcome}, ${(channel.last_generation.duration ?? 0).toFixed(3)} s` : "-")),
    el("tr", {}, el("td", {}, "failed generations"), el("td", {}, channel.failed_generations)),
    channel.last_error ? el("tr", {}, el("td", {}, "last error"), el("td", { class: "error" }, channel.last_error)) : "");

  const sources = el("table", {},
    el("tr", {}, ["source", "last update", "deliveries", "missed updates", "last error"].map((h) => el("th", {}, h))),
    Object.entries(channel.sources).map(([key, s]) => el("tr", { class: s.missed_update_count ? "failing" : "" },
      el("td", {}, key), el("td", {}, ago(s.last_update)), el("td", {}, s.deliveries),
      el("td", {}, s.missed_update_count), el("td", { class: "error" }, s.last_error || ""))));

  const decision = latest ? el("div", { id: "decision" },
    el("p", {}, `generation ${latest.generation_id}: actions `, el("strong", {}, latest.actions.join(", ") || "none")),
    el("table", {}, el("tr", {}, el("th", {}, "fact"), el("th", {}, "value")),
      latest.facts.map((f) => el("tr", {}, el("td", {}, f.fact_name),
        el("td", { class: f.fact_value ? "fact-true" : "fact-false" }, String(f.fact_value)))),
      latest.new_facts.map((f) => el("tr", {}, el("td", {}, `${f.fact_name} (rule ${f.rule_name})`),
        el("td", { class: f.fact_value ? "fact-true" : "fact-false" }, String(f.fact_value))))))
    : el("p", {}, "no decision yet");

  const productList = el("ul", { id: "products" }, products.products.map((p) =>
    el("li", {}, el("a", { href: "#", onclick: (event) => { event.preventDefault(); showProduct(name, p.name); } }, p.name),
      ` ${p.type}${p.shape ? " " + p.shape.join("x") : ""}`)));

  const chooser = chartChooser(name, products.products);
  view.replaceChildren(
    el("h1", {}, el("a", { href: "#/" }, "Channels"), " / ", name, " ", stateBadge(channel.state)),
    controls,
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("h2", {}, "Status"), summary, el("h2", {}, "Sources"), sources),
      el("div", { class: "card wide" }, el("h2", {}, "Modules"), graph ? drawGraph(graph) : el("p", {}, "not validated yet")),
      el("div", { class: "card" }, el("h2", {}, "Latest decision"), decision),
      el("div", { class: "card" }, el("h2", {}, "History"), chooser, el("div", { id: "chart-area" }))),
    el("h2", {}, "Products"), productList, el("div", { id: "product-view" }));
  await drawChart();
}

async function showProduct(channel, key) {
  const page = await api(`/channels/${encodeURIComponent(channel)}/products/${encodeURIComponent(key)}?limit=50`);
  const target = document.getElementById("product-view");
  if (page.type === "DataFrame") {
    target.replaceChildren(el("h2", {}, `${key} (generation ${page.generation}, ${page.total_rows} rows)`),
      el("table", { class: "product-table" },
        el("tr", {}, page.columns.map((c) => el("th", {}, c))),
        page.rows.map((row) => el("tr", {}, page.columns.map((c) => el("td", {}, row[c] ?? ""))))));
  } else {
    target.replaceChildren(el("h2", {}, `${key} (generation ${page.generation})`),
      el("pre", {}, JSON.stringify(page.value, null, 2)));
  }
}

// -- module graph: columns by depth, edges labelled with products ------------------------------------

function drawGraph(graph) {
  const depth = {};
  const byKey = Object.fromEntries(graph.nodes.map((n) => [n.key, n]));
  const incoming = {};
  for (const edge of graph.edges) (incoming[edge.to] = incoming[edge.to] || []).push(edge.from);
  const rank = (key, seen = new Set()) => {
    if (key in depth) return depth[key];
    if (seen.has(key)) return 0;
    seen.add(key);
    const parents = incoming[key] || [];
    depth[key] = byKey[key].kind === "source" || !parents.length ? 0 : 1 + Math.max(...parents.map((p) => rank(p, seen)));
    return depth[key];
  };
  graph.nodes.forEach((n) => rank(n.key));
  const columns = {};
  for (const node of graph.nodes) (columns[depth[node.key]] = columns[depth[node.key]] || []).push(node);
  const width = 200, height = 34, gapX = 110, gapY = 26;
  const position = {};
  let maxRows = 0;
  for (const [column, nodes] of Object.entries(columns)) {
    nodes.forEach((node, row) => { position[node.key] = { x: 10 + column * (width + gapX), y: 10 + row * (height + gapY) }; });
    maxRows = Math.max(maxRows, nodes.length);
  }
  const totalWidth = 20 + Object.keys(columns).length * (width + gapX);
  const totalHeight = 20 + maxRows * (height + gapY);
  // One arrow per pair of modules, labelled with every product it carries.
  const pairs = {};
  for (const edge of graph.edges) {
    const key = `${edge.from}\u0000${edge.to}`;
    (pairs[key] = pairs[key] || { from: edge.from, to: edge.to, products: [] }).products.push(edge.product);
  }
  const edges = Object.values(pairs).map((edge) => {
    edge.product = edge.products.join(", ");
    const a = position[edge.from], b = position[edge.to];
    const x1 = a.x + width, y1 = a.y + height / 2, x2 = b.x, y2 = b.y + height / 2;
    const mid = (x1 + x2) / 2;
    return svg("g", {},
      svg("path", { class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" }),
      svg("text", { class: "edge-label", x: mid, y: (y1 + y2) / 2 - 4, "text-anchor": "middle" }, edge.product));
  });
  const nodes = graph.nodes.map((node) => {
    const p = position[node.key];
    return svg("g", { class: `node ${node.kind}`, "data-key": node.key },
      svg("rect", { x: p.x, y: p.y, width, height, rx: 5 }),
      svg("text", { x: p.x + 8, y: p.y + 14 }, node.key),
      svg("text", { x: p.x + 8, y: p.y + 27, class: "edge-label" }, `${node.kind} ${node.class_name}`));
  });
  const arrow = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa4b1" })));
  return svg("svg", { id: "graph", width: "100%", style: `max-width:${totalWidth}px`, viewBox: `0 0 ${totalWidth} ${totalHeight}` },
    arrow, edges, nodes);
}

// -- history chart -------------------------------------------------------------------------------

function chartChooser(channel, products) {
  const choices = products.filter((p) => p.type === "DataFrame" || ["int", "float", "bool"].includes(p.type));
  if (!current.chart && choices.length) {
    // The first product of the channel's own modules with a numeric column, else any.
    const own = choices.filter((p) => !p.name.startsWith("de_") && p.name !== "publisher_status");
    const first = own.find((p) => p.numeric_columns && p.numeric_columns.length) || own[0] || choices[0];
    current.chart = { product: first.name, column: (first.numeric_columns || [])[0] || "" };
  }
  const productSelect = el("select", { id: "chart-product" }, choices.map((p) =>
    el("option", Object.assign({ value: p.name }, current.chart && current.chart.product === p.name ? { selected: "" } : {}), p.name)));
  const chosen = choices.find((p) => current.chart && p.name === current.chart.product);
  const columnSelect = el("select", { id: "chart-column" }, el("option", { value: "" }, "rows"),
    ((chosen && chosen.numeric_columns) || []).map((c) =>
      el("option", Object.assign({ value: c }, current.chart && current.chart.column === c ? { selected: "" } : {}), `sum(${c})`)));
  productSelect.addEventListener("change", () => { current.chart = { product: productSelect.value, column: "" }; showChannel(channel); });
  columnSelect.addEventListener("change", () => { current.chart.column = columnSelect.value; drawChart(); });
  return el("div", {}, productSelect, columnSelect);
}

async function drawChart() {
  const area = document.getElementById("chart-area");
  if (!area || !current.chart) return;
  const { product, column } = current.chart;
  const query = `since=24h${column ? `&column=${encodeURIComponent(column)}` : ""}`;
  const history = await api(`/channels/${encodeURIComponent(current.name)}/products/${encodeURIComponent(product)}/history?${query}`);
  const points = history.points.filter((p) => p.value !== null);
  const width = 520, height = 220, pad = 40;
  if (!points.length) { area.replaceChildren(el("p", {}, "no data yet")); return; }
  const xs = points.map((p) => p.generation_id), ys = points.map((p) => p.value);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [Math.min(...ys, 0), Math.max(...ys)];
  const sx = (x) => pad + ((x - x0) / Math.max(1, x1 - x0)) * (width - 2 * pad);
  const sy = (y) => height - pad - ((y - y0) / Math.max(1e-9, y1 - y0)) * (height - 2 * pad);
  const line = points.map((p) => `${sx(p.generation_id)},${sy(p.value)}`).join(" ");
  area.replaceChildren(svg("svg", { id: "chart", width: "100%", viewBox: `0 0 ${width} ${height}`, "data-points": points.length },
    svg("line", { class: "axis", x1: pad, y1: height - pad, x2: width - pad, y2: height - pad }),
    svg("line", { class: "axis", x1: pad, y1: pad, x2: pad, y2: height - pad }),
    svg("text", { x: pad, y: height - pad + 16 }, `generation ${x0}`),
    svg("text", { x: width - pad, y: height - pad + 16, "text-anchor": "end" }, `${x1}`),
    svg("text", { x: pad - 4, y: pad, "text-anchor": "end" }, String(+y1.toPrecision(4))),
    svg("text", { x: pad - 4, y: height - pad, "text-anchor": "end" }, String(+y0.toPrecision(4))),
    svg("text", { x: width / 2, y: 14, "text-anchor": "middle" }, `${product}: ${history.measure}`),
    svg("polyline", { class: "line", points: line }),
    points.map((p) => svg("circle", { class: "dot", cx: sx(p.generation_id), cy: sy(p.value), r: 2.5 }))));
}

// -- control -------------------------------------------------------------------------------------

async function control(path) {
  try {
    const answer = await api(path, { method: "POST" });
    say(answer.result);
    setTimeout(route, 500);
  } catch (error) {
    say(error.message, true);
  }
}

document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  if (tokenInput.value) sessionStorage.setItem("de-api-token", tokenInput.value);
  tokenInput.value = "";
  updateTokenUi();
  route();
});
tokenClear.addEventListener("click", () => { sessionStorage.removeItem("de-api-token"); updateTokenUi(); route(); });

function updateTokenUi() {
  tokenClear.hidden = !token();
  tokenInput.placeholder = token() ? "token set" : "API token (for control)";
}

// -- routing and live updates ---------------------------------------------------------------------

async function route() {
  const match = location.hash.match(/^#\/channel\/(.+)$/);
  try {
    if (match) await showChannel(decodeURIComponent(match[1]));
    else await showOverview();
  } catch (error) {
    say(error.message, true);
  }
}

let refreshing = null;
function refreshSoon() {
  clearTimeout(refreshing);
  refreshing = setTimeout(route, 150);
}

function listen() {
  const events = new EventSource(`${API}/events`);
  events.onopen = () => live.classList.add("on");
  events.onerror = () => live.classList.remove("on");
  const onEvent = (event) => {
    const data = JSON.parse(event.data);
    live.classList.add("flash");
    setTimeout(() => live.classList.remove("flash"), 400);
    if (current.name === null || current.name === data.channel) refreshSoon();
  };
  events.addEventListener("generation", onEvent);
  events.addEventListener("state", onEvent);
}

window.addEventListener("hashchange", route);
updateTokenUi();
route();
listen();
