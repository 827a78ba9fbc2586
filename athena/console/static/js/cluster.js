// Cluster: /health/cluster's mirrors with status, latency and version.

import * as api from "./api.js";
import { badge, dataTable, h } from "./dom.js";

async function render(root) {
  const body = await api.get("/health/cluster");
  const rows = body.mirrors.map((m) => ({
    mirror: m.url,
    status: m.status,
    latency_ms: m.latency_ms,
    version: m.cargo_toml_version,
    download: m.download_bytes_per_sec,
    checked_at: m.checked_at,
    message: m.message,
  }));
  root.append(
    h("h1", {}, "Cluster"),
    h("div", { class: "panel row" }, h("span", {}, "This gateway: version ", h("code", {}, body.version), " · pools "),
      badge(body.athena_deadpool, body.athena_deadpool === "online" ? "ok" : "bad"), h("span", { class: "muted", id: "cluster-summary" }, body.message)),
    rows.length ? dataTable(rows) : h("div", { class: "empty" }, "No mirrors configured (ATHENA_CLUSTER_MIRRORS)."),
  );
}

export default { id: "cluster", title: "Cluster", visible: () => true, render };
