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
let current = { name: null, chart: null, product: null };

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

// A running channel whose sources keep failing makes no generation although its state is fine:
// say so next to the state, with the sources' names.
function failingSources(channel) {
  const keys = Object.keys(channel.failing_sources || {});
  return keys.length ? el("span", { class: "error failing-sources" }, ` sources failing: ${keys.join(", ")}`) : "";
}

// A table (or the graph) in a box of its own that scrolls sideways when it is wider than its card.
// `key` names the box, so that a re-rendered page keeps where the user scrolled it to.
function scroller(key, child) {
  return el("div", { class: "scroller", "data-scroll": key }, child);
}

// Replace the view's content, keeping the sideways scroll of every scroller.
function render(...children) {
  const scrolled = {};
  for (const box of view.querySelectorAll("[data-scroll]")) scrolled[box.dataset.scroll] = box.scrollLeft;
  view.replaceChildren(...children);
  for (const box of view.querySelectorAll("[data-scroll]")) box.scrollLeft = scrolled[box.dataset.scroll] || 0;
}

// -- overview ----------------------------------------------------------------------------------

async function showOverview() {
  current = { name: null, chart: null, product: null };
  const [{ channels }, reaper, { sources }] = await Promise.all([api("/channels"), api("/reaper"), api("/sources")]);
  const failing = channels.filter((c) => c.failing).length;
  const rows = channels.map((c) =>
    el("tr", { class: c.failing ? "failing channel-row" : "channel-row", "data-channel": c.name },
      el("td", {}, el("a", { href: `#/channel/${encodeURIComponent(c.name)}` }, c.name)),
      el("td", {}, stateBadge(c.state), c.standby ? " (standby)" : "", failingSources(c)),
      el("td", { class: "generation" }, c.generation ?? "-"),
      el("td", { class: "runs-on" }, c.owner_server || (c.assigned_server ? `${c.assigned_server} (taking it)` : "-")),
      el("td", {}, c.last_generation ? `${when(c.last_generation.started)} (${c.last_generation.outcome})` : "-"),
      el("td", {}, Object.entries(c.sources).map(([k, s]) =>
        el("div", { class: "nowrap" }, `${k}: ${ago(s.last_update)}`, s.missed_update_count ? el("span", { class: "error" }, ` missed ${s.missed_update_count}`) : ""))),
      el("td", { class: "error" }, c.last_error || "")));
  // Every source with its consumers: a shared one runs once (on one server of a cluster) for all of them.
  const sourceRows = sources.map((s) =>
    el("tr", { class: s.state === "ERROR" || s.missed_update_count ? "failing source-row" : "source-row", "data-source": s.source },
      el("td", {}, s.source, s.shared ? " (shared)" : ""),
      el("td", {}, stateBadge(s.state || "OFFLINE")),
      el("td", { class: "consumers" }, (s.consumers.length ? s.consumers : s.channels).join(", ")),
      el("td", {}, `${s.schedule} s`),
      el("td", { class: "runs-on" }, s.runs_on || (s.pid ? "this server" : "-")),
      el("td", {}, ago(s.last_acquire)),
      el("td", {}, s.deliveries),
      el("td", { class: "error" }, s.last_error || "")));
  render(
    el("h1", {}, `Channels (${channels.length}, ${failing} failing)`),
    el("div", { class: "grid" },
      el("div", { class: "card wide" }, scroller("channels", el("table", { id: "channels" },
        el("tr", {}, ["channel", "state", "generation", "runs on", "last generation", "sources", "last error"].map((h) => el("th", {}, h))),
        rows))),
      el("div", { class: "card wide" },
        el("h2", {}, `Sources (${sources.length})`),
        scroller("sources", el("table", { id: "source-table" },
          el("tr", {}, ["source", "state", "consumers", "schedule", "runs on", "last acquire", "deliveries", "last error"].map((h) => el("th", {}, h))),
          sourceRows))),
      el("div", { class: "card" },
        el("h2", {}, "Reaper"),
        el("p", { id: "reaper" }, stateBadge(reaper.state),
          ` retention ${reaper.retention_interval_in_days} days, ${reaper.runs} passes, next ${when(reaper.next_run)}`),
        token() ? el("div", { class: "controls" },
          el("button", { onclick: () => control("/reaper/start") }, "start reaper"),
          el("button", { onclick: () => control("/reaper/stop") }, "stop reaper")) : "")));
}

// -- one channel -------------------------------------------------------------------------------

async function showChannel(name) {
  // A live update re-renders the page: the chart's choice and the open product stay.
  const same = current.name === name;
  current = { name, chart: same ? current.chart : null, product: same ? current.product : null };
  const path = `/channels/${encodeURIComponent(name)}`;
  const shown = current.product;
  const [channel, products, decisions, productPage] = await Promise.all([
    api(path), api(`${path}/products`), api(`${path}/decisions?limit=1`),
    shown ? fetchProduct(name, shown).catch(() => null) : null]);
  let graph = null;
  try { graph = await api(`${path}/graph`); } catch (error) { graph = null; }
  const latest = decisions.decisions[decisions.decisions.length - 1];

  const controls = token() ? el("div", { class: "controls" },
    el("button", { id: "start", onclick: () => control(`${path}/start`) }, "start"),
    el("button", { id: "stop", onclick: () => control(`${path}/stop`) }, "stop")) : "";

  const summary = el("table", { class: "kv", id: "summary" },
    el("tr", {}, el("td", {}, "state"), el("td", { id: "state" }, stateBadge(channel.state), failingSources(channel))),
    channel.failed_module ? el("tr", {}, el("td", {}, "failed module"), el("td", { class: "error", id: "failed-module" },
      `${channel.failed_module.module}: ${channel.failed_module.error}`)) : "",
    Object.entries(channel.failing_sources || {}).map(([key, s]) => el("tr", { class: "failing" },
      el("td", {}, "failing source"), el("td", { class: "error" },
        `${key} since ${ago(s.since)} (${s.missed_update_count} missed updates): ${s.last_error || ""}`))),
    el("tr", {}, el("td", {}, "generation"), el("td", { id: "generation" }, channel.generation ?? "-")),
    el("tr", {}, el("td", {}, "last generation"), el("td", {},
      channel.last_generation ? `${when(channel.last_generation.started)}, ${channel.last_generation.outcome}, ${(channel.last_generation.duration ?? 0).toFixed(3)} s` : "-")),
    el("tr", {}, el("td", {}, "failed generations"), el("td", {}, channel.failed_generations)),
    channel.last_error ? el("tr", {}, el("td", {}, "last error"), el("td", { class: "error" }, channel.last_error)) : "");

  const sources = el("table", { id: "sources" },
    el("tr", {}, ["source", "last update", "deliveries", "missed updates", "last error"].map((h) => el("th", {}, h))),
    Object.entries(channel.sources).map(([key, s]) => el("tr", { class: s.missed_update_count ? "failing" : "" },
      el("td", {}, key), el("td", {}, ago(s.last_update)), el("td", {}, s.deliveries),
      el("td", {}, s.missed_update_count), el("td", { class: "error" }, s.last_error || ""))));

  const decision = latest ? el("div", { id: "decision" },
    el("p", {}, `generation ${latest.generation_id}: actions `, el("strong", {}, latest.actions.join(", ") || "none")),
    scroller("decision", el("table", {}, el("tr", {}, el("th", {}, "fact"), el("th", {}, "value")),
      latest.facts.map((f) => el("tr", {}, el("td", {}, f.fact_name),
        el("td", { class: f.fact_value ? "fact-true" : "fact-false" }, String(f.fact_value)))),
      latest.new_facts.map((f) => el("tr", {}, el("td", {}, `${f.fact_name} (rule ${f.rule_name})`),
        el("td", { class: f.fact_value ? "fact-true" : "fact-false" }, String(f.fact_value)))))))
    : el("p", {}, "no decision yet");

  const productList = el("ul", { id: "products" }, products.products.map((p) =>
    el("li", {}, el("a", { href: "#", onclick: (event) => { event.preventDefault(); showProduct(name, p.name); } }, p.name),
      ` ${p.type}${p.shape ? " " + p.shape.join("x") : ""}`)));

  const chooser = chartChooser(name, products.products);
  let productNodes = productPage ? productView(shown, productPage) : [];
  if (current.product !== shown) {
    // the user opened another product meanwhile: keep the view as it is (showProduct fills it in)
    const old = document.getElementById("product-view");
    productNodes = old ? [...old.childNodes] : [];
  } else if (shown && !productPage) {
    current.product = null;  // gone from the channel
  }
  render(
    el("h1", {}, el("a", { href: "#/" }, "Channels"), " / ", name, " ", stateBadge(channel.state)),
    controls,
    el("div", { class: "grid" },
      el("div", { class: "card" }, el("h2", {}, "Status"), scroller("summary", summary),
        el("h2", {}, "Sources"), scroller("sources", sources)),
      el("div", { class: "card wide" }, el("h2", {}, "Modules"),
        graph ? scroller("graph", drawGraph(graph)) : el("p", {}, "not validated yet")),
      el("div", { class: "card" }, el("h2", {}, "Latest decision"), decision),
      el("div", { class: "card" }, el("h2", {}, "History"), chooser, el("div", { id: "chart-area" })),
      el("div", { class: "card wide" }, el("h2", {}, "Products"), productList,
        el("div", { id: "product-view" }, productNodes))));
  await drawChart();
}

function fetchProduct(channel, key) {
  return api(`/channels/${encodeURIComponent(channel)}/products/${encodeURIComponent(key)}?limit=50`);
}

function productView(key, page) {
  if (page.type === "DataFrame") {
    return [el("h2", {}, `${key} (generation ${page.generation}, ${page.total_rows} rows)`),
      scroller("product", el("table", { class: "product-table" },
        el("tr", {}, page.columns.map((c) => el("th", {}, c))),
        page.rows.map((row) => el("tr", {}, page.columns.map((c) => el("td", {}, row[c] ?? ""))))))];
  }
  return [el("h2", {}, `${key} (generation ${page.generation})`), el("pre", {}, JSON.stringify(page.value, null, 2))];
}

async function showProduct(channel, key) {
  current.product = key;
  const page = await fetchProduct(channel, key);
  const target = document.getElementById("product-view");
  if (target && current.name === channel && current.product === key) target.replaceChildren(...productView(key, page));
}

// -- module graph ----------------------------------------------------------------------------------
// Modules stand in columns by depth, with one arrow per pair of modules, labelled with the products
// it carries. Between two columns of modules is a column of labels: each arrow has a slot of its own
// there, right after its source, and a thin slot of its own in every later column it crosses. So no
// two labels overlap, no label lies on a module and no arrow passes behind one. Boxes are as wide
// as their texts (as the page's CSS draws them); a text longer than GRAPH.maxText is cut with "…",
// and the tooltip (<title>) of its module or arrow has it in full.

const GRAPH = { pad: 10, gap: 26, nodeHeight: 36, line: 12, maxText: 220, minScale: 0.9 };

// Text widths measured in a hidden <svg>, with the classes the graph uses.
function textMeasurer() {
  const probe = svg("svg", { width: 0, height: 0, style: "position: absolute; visibility: hidden" });
  document.body.append(probe);
  const cache = {};
  const width = (text, cls) => {
    const key = `${cls}\u0000${text}`;
    if (!(key in cache)) {
      const node = svg("text", { class: cls }, text);
      probe.append(node);
      cache[key] = node.getComputedTextLength();
      node.remove();
    }
    return cache[key];
  };
  // The longest start of `text` that, with "…", is at most `room` wide.
  const fit = (text, cls, room) => {
    if (width(text, cls) <= room) return text;
    let length = text.length - 1;
    while (length > 1 && width(text.slice(0, length) + "\u2026", cls) > room) length -= 1;
    return text.slice(0, length) + "\u2026";
  };
  return { width, fit, done: () => probe.remove() };
}

function drawGraph(graph) {
  if (!graph.nodes.length) return el("p", {}, "no modules");
  const depth = {};
  const byKey = Object.fromEntries(graph.nodes.map((n) => [n.key, n]));
  const incoming = {};
  for (const edge of graph.edges) (incoming[edge.to] = incoming[edge.to] || []).push(edge.from);
  const rank = (key, seen = new Set()) => {
    if (key in depth) return depth[key];
    if (seen.has(key)) return 0;
    seen.add(key);
    const parents = (incoming[key] || []).filter((p) => p in byKey);
    depth[key] = byKey[key].kind === "source" || !parents.length ? 0 : 1 + Math.max(...parents.map((p) => rank(p, seen)));
    return depth[key];
  };
  graph.nodes.forEach((n) => rank(n.key));

  // The boxes ("items"): modules, arrows' labels and arrows' pass-through slots, each in a column.
  const measure = textMeasurer();
  const items = [];
  const add = (item) => { items.push(Object.assign(item, { prev: [], next: [] })); return item; };
  const moduleItem = {};
  for (const node of graph.nodes) {
    const wanted = Math.max(measure.width(node.key, "node-key") + 12 + measure.width(node.kind, "node-kind"),
      measure.width(node.class_name, "node-detail"));
    moduleItem[node.key] = add({ type: "node", node, column: 2 * depth[node.key], height: GRAPH.nodeHeight,
      width: Math.min(wanted, GRAPH.maxText) + 16 });
  }
  // One arrow per pair of modules, labelled with every product it carries (one a line).
  const pairs = {};
  for (const edge of graph.edges) {
    if (!(edge.from in byKey && edge.to in byKey)) continue;
    const key = `${edge.from}\u0000${edge.to}`;
    (pairs[key] = pairs[key] || { from: edge.from, to: edge.to, products: [] }).products.push(edge.product);
  }
  const arrows = Object.values(pairs);
  for (const arrow of arrows) {
    const from = moduleItem[arrow.from], to = moduleItem[arrow.to];
    const widest = Math.max(...arrow.products.map((p) => measure.width(p, "edge-label")));
    const label = add({ type: "label", arrow, column: from.column + 1,
      height: arrow.products.length * GRAPH.line + 6, width: Math.min(widest, GRAPH.maxText) + 12 });
    arrow.chain = [from, label];
    for (let column = label.column + 1; column < to.column; column++) {
      arrow.chain.push(add({ type: "pass", arrow, column, height: 4, width: 0 }));
    }
    arrow.chain.push(to);
    for (let i = 1; i < arrow.chain.length; i++) {
      arrow.chain[i].prev.push(arrow.chain[i - 1]);
      arrow.chain[i - 1].next.push(arrow.chain[i]);
    }
  }
  const columns = [];
  for (const item of items) (columns[item.column] = columns[item.column] || []).push(item);
  for (let c = 0; c < columns.length; c++) columns[c] = columns[c] || [];

  // Order each column by the mean position of its items' neighbours in the column before (then
  // after) it, a few times over: fewer crossing arrows.
  const position = (item) => columns[item.column].indexOf(item);
  for (let sweep = 0; sweep < 4; sweep++) {
    const forward = sweep % 2 === 0;
    for (const column of forward ? columns.slice(1) : columns.slice(0, -1).reverse()) {
      const order = new Map(column.map((item, i) => {
        const near = (forward ? item.prev : item.next).filter((n) => Math.abs(n.column - item.column) === 1);
        return [item, near.length ? near.reduce((sum, n) => sum + position(n), 0) / near.length : i];
      }));
      column.sort((a, b) => order.get(a) - order.get(b));
    }
  }

  // Where the arrows run through a box: a label's arrow runs under its text.
  const anchorOffset = (item) => (item.type === "label" ? item.height - 2 : item.height / 2);
  const anchor = (item) => item.y + anchorOffset(item);
  // Top to bottom in each column, every box as level with its arrows' previous boxes as there is room for.
  for (const column of columns) {
    let above = null;
    for (const item of column) {
      const near = item.prev.filter((n) => n.column < item.column);
      const wanted = near.length ? near.reduce((sum, n) => sum + anchor(n), 0) / near.length - anchorOffset(item) : 0;
      const spacing = above && (above.type === "node" || item.type === "node") ? 14 : 6;
      item.y = Math.max(above ? above.y + above.height + spacing : GRAPH.pad, wanted);
      above = item;
    }
  }
  const widths = columns.map((column) => Math.max(0, ...column.map((item) => item.width)));
  const left = [];
  let x = GRAPH.pad;
  for (const width of widths) { left.push(x); x += width + GRAPH.gap; }
  const totalWidth = Math.ceil(x - GRAPH.gap + GRAPH.pad);
  const totalHeight = Math.ceil(Math.max(...items.map((item) => item.y + item.height)) + GRAPH.pad);

  // Each module's arrows leave (and arrive) at points spread along its side, in the order of the
  // boxes they go to (come from).
  const port = {};
  for (const item of items.filter((i) => i.type === "node")) {
    for (const [side, neighbours] of [["out", item.next], ["in", item.prev]]) {
      const sorted = [...neighbours].sort((a, b) => anchor(a) - anchor(b));
      sorted.forEach((n, i) => { port[`${side}\u0000${item.node.key}\u0000${n.arrow.from}\u0000${n.arrow.to}`] =
        item.y + (item.height * (i + 1)) / (sorted.length + 1); });
    }
  }
  const curve = (x1, y1, x2, y2) => { const mid = (x1 + x2) / 2; return ` C${mid},${y1} ${mid},${y2} ${x2},${y2}`; };
  const edges = arrows.map((arrow) => {
    const [from, label, ...rest] = arrow.chain;
    const to = rest.pop();
    const pair = `${arrow.from}\u0000${arrow.to}`;
    let cx = left[from.column] + widths[from.column], cy = port[`out\u0000${arrow.from}\u0000${pair}`];
    let d = `M${cx},${cy}`;
    for (const item of [label, ...rest]) {
      d += curve(cx, cy, left[item.column], anchor(item));
      [cx, cy] = [left[item.column] + widths[item.column], anchor(item)];
      d += ` L${cx},${cy}`;
    }
    d += curve(cx, cy, left[to.column], port[`in\u0000${arrow.to}\u0000${pair}`]);
    const middle = left[label.column] + widths[label.column] / 2;
    return svg("g", {},
      svg("title", {}, `${arrow.from} \u2192 ${arrow.to}: ${arrow.products.join(", ")}`),
      svg("path", { class: "edge", d, "marker-end": "url(#arrow)" }),
      svg("text", { class: "edge-label", x: middle, y: label.y + GRAPH.line - 3, "text-anchor": "middle" },
        arrow.products.map((product, i) => svg("tspan", { x: middle, dy: i ? GRAPH.line : 0 },
          measure.fit(product, "edge-label", GRAPH.maxText)))));
  });
  const nodes = items.filter((i) => i.type === "node").map((item) => {
    const node = item.node, x0 = left[item.column], y0 = item.y, width = widths[item.column];
    const kind = measure.width(node.kind, "node-kind");
    return svg("g", { class: `node ${node.kind}`, "data-key": node.key },
      svg("title", {}, `${node.key}: ${node.kind} ${node.module}`),
      svg("rect", { x: x0, y: y0, width, height: item.height, rx: 5 }),
      svg("text", { class: "node-key", x: x0 + 8, y: y0 + 15 }, measure.fit(node.key, "node-key", width - 28 - kind)),
      svg("text", { class: "node-kind", x: x0 + width - 8, y: y0 + 15, "text-anchor": "end" }, node.kind),
      svg("text", { class: "node-detail", x: x0 + 8, y: y0 + 29 }, measure.fit(node.class_name, "node-detail", width - 16)));
  });
  measure.done();
  const arrow = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" },
    svg("path", { d: "M0,0 L10,5 L0,10 z", fill: "#9aa4b1" })));
  // As wide as the card allows, but never shrunk below GRAPH.minScale: then its box scrolls.
  return svg("svg", { id: "graph", width: totalWidth, height: totalHeight, viewBox: `0 0 ${totalWidth} ${totalHeight}`,
    style: `max-width: ${totalWidth}px; min-width: ${Math.ceil(totalWidth * GRAPH.minScale)}px` },
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
  listen();
});
tokenClear.addEventListener("click", () => {
  sessionStorage.removeItem("de-api-token");
  updateTokenUi();
  route();
  listen();
});

function updateTokenUi() {
  tokenClear.hidden = !token();
  tokenInput.placeholder = token() ? "token set" : "token (to read or to control)";
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

// The event stream is read with fetch() rather than EventSource, so that it can carry the token
// (a server with a read token answers nothing without it), and is opened again after a break.
let stream = null;
function listen() {
  if (stream) stream.abort();
  const controller = new AbortController();
  stream = controller;
  const headers = { Accept: "text/event-stream" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const onEvent = (data) => {
    live.classList.add("flash");
    setTimeout(() => live.classList.remove("flash"), 400);
    if (current.name === null || current.name === data.channel) refreshSoon();
  };
  const retry = () => {
    live.classList.remove("on");
    if (stream === controller) setTimeout(() => { if (stream === controller) listen(); }, 2000);
  };
  fetch(`${API}/events`, { headers, signal: controller.signal }).then(async (response) => {
    if (!response.ok || !response.body) return retry();
    live.classList.add("on");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return retry();
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block.split("\n").filter((line) => line.startsWith("data:")).map((line) => line.slice(5).trim());
        if (data.length) onEvent(JSON.parse(data.join("\n")));
      }
    }
  }).catch((error) => { if (error.name !== "AbortError") retry(); });
}

window.addEventListener("hashchange", route);
updateTokenUi();
route();
listen();
