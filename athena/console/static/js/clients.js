// Clients (admin key): the catalog with live health, add / edit / freeze / delete, statistics.

import * as api from "./api.js";
import { attempt, badge, clear, confirmAction, dataTable, errorBox, h, modal, toast } from "./dom.js";
import { byLabel, scrape } from "./metrics.js";

async function render(root, state, session, alive) {
  const again = () => {
    clear(root);
    render(root, state, session, alive);
  };
  const [listing, stats, samples] = await Promise.all([
    api.get("/admin/clients"),
    api.get("/admin/clients/statistics").catch(() => ({ statistics: [] })),
    scrape().catch(() => []),
  ]);
  if (!alive()) return;
  const up = byLabel(samples, "athena_pool_up", "client");
  const inUse = byLabel(samples, "athena_pool_in_use", "client");
  const size = byLabel(samples, "athena_pool_size", "client");
  const latency = byLabel(samples, "athena_request_duration_seconds_avg_24h", "client");
  const records = Object.fromEntries(listing.clients.map((c) => [c.client_name, c]));
  const statsOf = Object.fromEntries(stats.statistics.map((s) => [s.client_name, s]));

  const rows = listing.runtime.map((c) => {
    const record = records[c.client_name] || {};
    const s = statsOf[c.client_name] || {};
    const health = c.pool_connected && up[c.client_name] !== 0 ? badge("online", "ok") : badge("down", "bad");
    const flags = [c.is_active ? badge("active", "ok") : badge("inactive", "warn"), c.is_frozen ? badge("frozen", "warn") : null];
    const actions = h("td", { class: "actions" },
      h("button", { type: "button", class: "link client-edit", onclick: () => editClient(c, again) }, "Edit"),
      h("button", { type: "button", class: "link client-freeze", onclick: () => freeze(c, again) }, c.is_frozen ? "Unfreeze" : "Freeze"),
      c.source === "database" ? h("button", { type: "button", class: "link danger client-delete", onclick: () => removeClient(c, session, again) }, "Delete") : null);
    return h("tr", { dataset: { client: c.client_name } },
      h("td", {}, h("strong", {}, c.client_name), h("div", { class: "muted small" }, c.description || "")),
      h("td", {}, c.source),
      h("td", { class: "mono small" }, c.pg_uri || (c.pg_uri_env_var ? `$${c.pg_uri_env_var}` : "–")),
      h("td", {}, health, h("div", { class: "muted small" }, `pool ${inUse[c.client_name] ?? 0}/${size[c.client_name] ?? 0}`)),
      h("td", {}, latency[c.client_name] !== undefined ? `${(latency[c.client_name] * 1000).toFixed(1)} ms` : "–"),
      h("td", {}, flags),
      h("td", { class: "num" }, String(s.total_requests ?? 0)),
      h("td", { class: "num" }, String(s.failed_requests ?? 0)),
      h("td", { class: "small" }, s.last_request_at || record.updated_at || "–"),
      actions);
  });
  root.append(
    h("div", { class: "row" }, h("h1", {}, "Clients"), h("span", { class: "spacer" }),
      h("button", { type: "button", id: "client-add", onclick: () => addClient(session, again) }, "Add client")),
    h("div", { class: "scroll" }, h("table", { class: "grid", id: "clients" },
      h("thead", {}, h("tr", {}, ["client", "source", "URI (password masked)", "health", "avg latency 24 h", "state", "requests", "failed", "last request", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, rows))),
    h("h2", {}, "Statistics per table"),
    await tableStats(listing.runtime.map((c) => c.client_name)),
  );
}

async function tableStats(names) {
  const box = h("div", { id: "client-table-stats" });
  const rows = [];
  for (const name of names) {
    try {
      const body = await api.get(`/admin/clients/${encodeURIComponent(name)}/statistics`);
      for (const t of body.tables || []) rows.push({ client: name, ...t });
    } catch (err) {
      box.append(errorBox(err));
    }
  }
  box.append(dataTable(rows));
  return box;
}

// The other screens pick clients from the list read at sign-in: keep it current, so a client
// added here can be browsed, backed up or restored into without signing in again.
function knowClient(session, name, known) {
  const at = session.clients.indexOf(name);
  if (known && at < 0) session.clients.push(name);
  if (!known && at >= 0) session.clients.splice(at, 1);
}

async function addClient(session, done) {
  const v = await modal("Add client", [
    { name: "client_name", label: "Name", required: true },
    { name: "pg_uri", label: "PostgreSQL URI", type: "password", required: true, placeholder: "postgresql://user:password@host:5432/db" },
    { name: "description", label: "Description" },
  ], { submit: "Add", intro: "The URI is checked by connecting before it is saved; the password is never shown again." });
  if (!v) return;
  try {
    await api.post("/admin/clients", { client_name: v.client_name.trim(), pg_uri: v.pg_uri, description: v.description || null });
    knowClient(session, v.client_name.trim(), true);
    toast("Client added");
    done();
  } catch (err) {
    toast(`${err.code}: ${err.message}`, "error");
  }
}

async function editClient(c, done) {
  const fields = [
    { name: "description", label: "Description", value: c.description || "" },
    { name: "is_active", label: "Active", type: "checkbox", value: c.is_active },
  ];
  if (c.source === "database") fields.push({ name: "pg_uri", label: "New URI (empty: keep)", type: "password" });
  const v = await modal(`Edit ${c.client_name}`, fields, { submit: "Save" });
  if (!v) return;
  const body = { description: v.description || null, is_active: v.is_active };
  if (v.pg_uri) body.pg_uri = v.pg_uri;
  try {
    await api.call("PATCH", `/admin/clients/${encodeURIComponent(c.client_name)}`, { body });
    toast("Client saved");
    done();
  } catch (err) {
    toast(`${err.code}: ${err.message}`, "error");
  }
}

async function freeze(c, done) {
  const freezing = !c.is_frozen;
  if (freezing && !(await confirmAction(`Freeze ${c.client_name}?`, `Data and management requests to ${c.client_name} get 403 client_frozen until it is unfrozen.`, { submit: "Freeze" }))) return;
  const change = () => api.call("PUT", `/admin/clients/${encodeURIComponent(c.client_name)}/freeze`, { body: { is_frozen: freezing } });
  if (await attempt(freezing ? "Client frozen" : "Client unfrozen", change)) done();
}

async function removeClient(c, session, done) {
  if (!(await confirmAction(`Delete client ${c.client_name}?`, "The client is soft-deleted and its pool closed; its database is not touched.", { typed: c.client_name }))) return;
  if (await attempt("Client deleted", () => api.call("DELETE", `/admin/clients/${encodeURIComponent(c.client_name)}`))) {
    knowClient(session, c.client_name, false);
    done();
  }
}

export default { id: "clients", title: "Clients", visible: (s) => s.key.admin, render };
