// Activity (admin key): the request log with filters, client statistics, and charts (plotly)
// of request rate, error rate and latency per minute from the request log, plus the live
// request rate sampled from /metrics while the screen is open.

import * as api from "./api.js";
import { clear, dataTable, errorBox, h, option } from "./dom.js";
import { scrape, sum } from "./metrics.js";

const LIVE_EVERY_MS = 5000;
const LOG_COLUMNS = ["id", "created_at", "client_name", "method", "route", "status_code", "duration_ms", "api_key_public_id", "error_code", "request_id"];

function plot(el, traces, yTitle) {
  const layout = {
    margin: { l: 48, r: 12, t: 8, b: 36 },
    yaxis: { title: { text: yTitle }, rangemode: "tozero" },
    xaxis: { type: "date" },
    showlegend: traces.length > 1,
    legend: { orientation: "h", y: 1.15 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
  };
  return window.Plotly.react(el, traces, layout, { displayModeBar: false, responsive: true });
}

async function render(root, state, session, alive) {
  state.logFilter = state.logFilter || { client_name: "", status: "", route: "", api_key_public_id: "", minutes: "60" };
  const f = state.logFilter;
  const field = (name, label, attrs = {}) => h("label", {}, label, h("input", { id: `log-${name}`, value: f[name], ...attrs, onchange: (ev) => { f[name] = ev.target.value.trim(); } }));
  const clientSel = h("select", { id: "log-client_name", onchange: () => { f.client_name = clientSel.value; } }, option("", "all"), session.clients.map((c) => option(c, c, c === f.client_name)));
  const statusSel = h("select", { id: "log-status", onchange: () => { f.status = statusSel.value; } }, ["", "2xx", "3xx", "4xx", "5xx", "error"].map((s) => option(s, s || "all", s === f.status)));
  const minutesSel = h("select", { id: "log-minutes", onchange: () => { f.minutes = minutesSel.value; } }, ["15", "60", "360", "1440"].map((m) => option(m, `last ${m} min`, m === f.minutes)));
  const filters = h("form", { class: "panel row", id: "log-filters", onsubmit: (ev) => { ev.preventDefault(); load(); } },
    h("label", {}, "Client", clientSel), h("label", {}, "Status", statusSel), field("route", "Path contains"), field("api_key_public_id", "Key public id"),
    h("label", {}, "Charts", minutesSel), h("button", { type: "submit", id: "log-apply" }, "Apply"));
  const charts = {
    rate: h("div", { class: "chart", id: "chart-rate" }),
    errors: h("div", { class: "chart", id: "chart-errors" }),
    latency: h("div", { class: "chart", id: "chart-latency" }),
    live: h("div", { class: "chart", id: "chart-live" }),
  };
  const chartPanel = (title, el) => h("div", { class: "panel" }, h("h2", {}, title), el);
  const log = h("div", { id: "log" });
  const stats = h("div", { id: "stats" });
  root.append(h("h1", {}, "Activity"), filters,
    h("div", { class: "charts" }, chartPanel("Requests per minute", charts.rate), chartPanel("Error rate (%)", charts.errors),
      chartPanel("Latency (ms)", charts.latency), chartPanel("Live request rate (/metrics, req/s)", charts.live)),
    h("h2", {}, "Request log"), log, h("h2", {}, "Client statistics"), stats);

  const query = () => ({ client_name: f.client_name, status: f.status, route: f.route, api_key_public_id: f.api_key_public_id });
  async function load() {
    try {
      const [entries, series] = await Promise.all([
        api.get("/admin/request-log", { query: { ...query(), limit: 100 } }),
        api.get("/admin/request-log/series", { query: { ...query(), minutes: f.minutes } }),
      ]);
      if (!alive()) return;
      clear(log, dataTable(entries.entries, { columns: LOG_COLUMNS }));
      const t = series.series.map((p) => p.t);
      await plot(charts.rate, [{ x: t, y: series.series.map((p) => p.requests), type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "requests", line: { shape: "hv" } }], "req/min");
      await plot(charts.errors, [{ x: t, y: series.series.map((p) => (p.requests ? (100 * p.errors) / p.requests : 0)), type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "errors", line: { color: "#b42323" } }], "%");
      await plot(charts.latency, [
        { x: t, y: series.series.map((p) => p.avg_ms), type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "mean", connectgaps: false },
        { x: t, y: series.series.map((p) => p.p95_ms), type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "p95", connectgaps: false },
      ], "ms");
      root.dataset.loaded = "true";
    } catch (err) {
      clear(log, errorBox(err));
    }
  }
  await load();
  api.get("/admin/clients/statistics").then((b) => clear(stats, dataTable(b.statistics)), (err) => clear(stats, errorBox(err)));

  // Live: the gateway-wide request counter, sampled while this screen is shown.
  const live = { x: [], y: [] };
  let last = null;
  await plot(charts.live, [{ x: [], y: [], type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "req/s" }], "req/s");
  const tick = async () => {
    if (!alive()) return;
    try {
      const samples = await scrape();
      const total = sum(samples, "athena_requests_total");
      const at = Date.now();
      if (last) {
        live.x.push(new Date(at).toISOString());
        live.y.push(Math.max(0, (total - last.total) / ((at - last.at) / 1000)));
        if (live.x.length > 120) live.x.shift(), live.y.shift();
        await plot(charts.live, [{ x: live.x, y: live.y, type: "scatter", mode: "lines+markers", marker: { size: 4 }, name: "req/s" }], "req/s");
      }
      last = { total, at };
    } catch {
      /* a missed sample leaves a gap */
    }
    if (alive()) setTimeout(tick, LIVE_EVERY_MS);
  };
  tick();
}

export default { id: "activity", title: "Activity", visible: (s) => s.key.admin, render };
