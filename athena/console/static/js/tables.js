// Table browser: paging, sorting, filters with the gateway's operators, the row count,
// insert / edit / delete through /gateway/*, and CSV export of the current filter.

import * as api from "./api.js";
import { attempt, cell, clear, confirmAction, errorBox, h, loading, modal, option, toast } from "./dom.js";
import { clientPicker, contextHeaders, tablePicker, tablesFor, canListSchema } from "./common.js";

const OPERATORS = ["eq", "neq", "gt", "gte", "lt", "lte", "like", "ilike", "is", "in", "contains", "containedBy"];
const PAGE_SIZES = [25, 50, 100, 250];
const EXPORT_PAGE = 1000;
const EXPORT_MAX_ROWS = 100000;

function viewOf(state) {
  state.views = state.views || {};
  const id = `${state.client}/${state.table}`;
  state.views[id] = state.views[id] || { filters: [], sort: null, page: 1, pageSize: 50 };
  return state.views[id];
}

// A typed filter value as the gateway expects it.
function filterValue(op, text) {
  if (op === "is") return text === "null" ? null : text === "true" ? true : text === "false" ? false : text;
  if (op === "in") return text.split(",").map((v) => v.trim());
  if (op === "contains" || op === "containedBy") {
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return text;
}

function conditions(view) {
  return view.filters.map((f) => ({ column: f.column, operator: f.op, value: filterValue(f.op, f.value) }));
}

// The same filters in PostgREST's grammar, for the exact count in Content-Range.
function quoteItem(v) {
  const s = String(v);
  return /[,()"\\\s]/.test(s) ? `"${s.replace(/["\\]/g, (c) => "\\" + c)}"` : s;
}

function restFilter(f) {
  const v = filterValue(f.op, f.value);
  switch (f.op) {
    case "like":
    case "ilike":
      return `${f.op}.${String(v).replace(/%/g, "*")}`;
    case "is":
      return `is.${v}`;
    case "in":
      return `in.(${v.map(quoteItem).join(",")})`;
    case "contains":
    case "containedBy": {
      const op = f.op === "contains" ? "cs" : "cd";
      return Array.isArray(v) ? `${op}.{${v.map(quoteItem).join(",")}}` : `${op}.${typeof v === "object" ? JSON.stringify(v) : v}`;
    }
    default:
      return `${f.op}.${v}`;
  }
}

async function countRows(client, table, view) {
  const params = new URLSearchParams();
  for (const f of view.filters) params.append(f.column, restFilter(f));
  params.set("limit", "0");
  const res = await api.call("HEAD", `/rest/v1/${encodeURIComponent(table)}?${params}`, {
    client,
    headers: { Prefer: "count=exact", "X-Athena-Rest-Format": "postgrest" },
    response: true,
  });
  const range = res.headers.get("Content-Range") || "";
  const total = range.split("/")[1];
  return total && total !== "*" ? Number(total) : null;
}

async function fetchPage(client, table, view, page = view.page, pageSize = view.pageSize) {
  const body = { table_name: table, conditions: conditions(view), page_size: pageSize, current_page: page };
  if (view.sort) body.sort_by = { field: view.sort.field, direction: view.sort.dir };
  return (await api.post("/gateway/fetch", body, { client })).data || [];
}

async function columnsOf(state, session, client, table) {
  state.columnCache = state.columnCache || {};
  const id = `${client}/${table}`;
  if (state.columnCache[id]) return state.columnCache[id];
  if (!canListSchema(session)) return null;
  const body = await api.get("/schema/columns", { client, query: { table_name: table } });
  state.columnCache[id] = body.columns;
  return body.columns;
}

function isJsonType(col) {
  return col && (col.data_type === "json" || col.data_type === "jsonb" || col.data_type === "ARRAY");
}

function editText(value) {
  if (value === null || value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// Form values → a row body: JSON columns parsed, empty fields left out (insert) or set to
// null (edit, for fields that changed), unchanged fields dropped on edit.
function rowBody(values, columns, original) {
  const out = {};
  for (const col of columns) {
    const name = col.column_name;
    if (!(name in values)) continue;
    const text = values[name];
    if (original) {
      if (text === editText(original[name])) continue;
      if (text === "") {
        out[name] = null;
        continue;
      }
    } else if (text === "") continue;
    if (isJsonType(col)) {
      try {
        out[name] = JSON.parse(text);
      } catch {
        throw new api.ApiError(0, "invalid_json", `column ${name} needs JSON, e.g. {"a": 1} or ["x"]`);
      }
    } else out[name] = text;
  }
  return out;
}

function rowFields(columns, row) {
  return columns.map((c) => ({
    name: c.column_name,
    label: `${c.column_name} (${c.data_type}${c.is_nullable === "NO" ? ", required" : ""}${c.column_default ? ", has default" : ""})`,
    type: isJsonType(c) ? "textarea" : "text",
    value: row ? editText(row[c.column_name]) : "",
    placeholder: isJsonType(c) ? "JSON" : c.column_default ? "default" : "",
  }));
}

function csv(rows, columns) {
  const esc = (v) => {
    const s = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns.map(esc).join(","), ...rows.map((r) => columns.map((c) => esc(r[c])).join(","))].join("\r\n") + "\r\n";
}

async function render(root, state, session, alive) {
  root.append(h("h1", {}, "Tables"));
  const bar = h("div", { class: "row panel" });
  const body = h("div");
  root.append(bar, body);
  const rerender = () => {
    clear(root);
    render(root, state, session, alive);
  };
  bar.append(clientPicker(state, session, rerender));
  if (!state.client) return body.append(h("div", { class: "empty" }, "Name a client to browse its tables."));
  body.append(loading());
  const tables = await tablesFor(state, session, state.client);
  if (!alive()) return;
  if (!tables.length) return clear(body, h("div", { class: "empty" }, "This key may read no table of this client."));
  if (!tables.some((t) => t.name === state.table)) state.table = tables[0].name;
  bar.append(tablePicker(state, tables, rerender));
  const rights = tables.find((t) => t.name === state.table);
  await renderGrid(body, state, session, rights, alive);
}

async function renderGrid(body, state, session, rights, alive) {
  const { client, table } = state;
  const view = viewOf(state);
  let columns = null;
  try {
    columns = await columnsOf(state, session, client, table);
  } catch (err) {
    columns = null;
  }
  clear(body, loading());
  let rows;
  try {
    rows = await fetchPage(client, table, view);
  } catch (err) {
    return clear(body, errorBox(err));
  }
  if (!alive()) return;
  const names = columns ? columns.map((c) => c.column_name) : [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const editable = names.includes("id");
  const again = () => renderGrid(body, state, session, rights, alive);

  // -- filters ---------------------------------------------------------------------------
  const colSel = h("select", { id: "filter-column", "aria-label": "Filter column" }, names.map((n) => option(n)));
  const opSel = h("select", { id: "filter-operator", "aria-label": "Operator" }, OPERATORS.map((o) => option(o)));
  const valIn = h("input", { id: "filter-value", "aria-label": "Value", placeholder: "value" });
  const addFilter = h("form", {
    class: "row",
    onsubmit: (ev) => {
      ev.preventDefault();
      view.filters.push({ column: colSel.value, op: opSel.value, value: valIn.value });
      view.page = 1;
      again();
    },
  }, colSel, opSel, valIn, h("button", { type: "submit", id: "filter-add", class: "secondary" }, "Add filter"));
  const chips = h("div", { class: "chips", id: "filters" }, view.filters.map((f, i) =>
    h("span", { class: "chip" }, `${f.column} ${f.op} ${f.value}`, h("button", {
      type: "button", class: "link", "aria-label": `Remove filter ${f.column}`,
      onclick: () => { view.filters.splice(i, 1); view.page = 1; again(); },
    }, "×"))));

  // -- toolbar ---------------------------------------------------------------------------
  const countEl = h("span", { id: "row-count", class: "muted" }, "counting…");
  const sizeSel = h("select", { id: "page-size", "aria-label": "Rows per page", onchange: () => { view.pageSize = Number(sizeSel.value); view.page = 1; again(); } },
    PAGE_SIZES.map((n) => option(String(n), `${n} / page`, n === view.pageSize)));
  const prev = h("button", { type: "button", class: "secondary", id: "page-prev", disabled: view.page <= 1, onclick: () => { view.page--; again(); } }, "‹ Prev");
  const next = h("button", { type: "button", class: "secondary", id: "page-next", disabled: rows.length < view.pageSize, onclick: () => { view.page++; again(); } }, "Next ›");
  const pageInfo = h("span", { id: "page-info" }, `page ${view.page}`);
  const tools = h("div", { class: "row" }, prev, pageInfo, next, sizeSel, countEl, h("span", { class: "spacer" }),
    h("button", { type: "button", class: "secondary", id: "export-csv", onclick: () => exportCsv(client, table, view, names) }, "Export CSV"),
    rights.write && columns ? h("button", { type: "button", id: "row-insert", onclick: () => insertRow(client, table, columns, session).then((ok) => ok && again()) }, "Insert row") : null);

  // -- grid ------------------------------------------------------------------------------
  const header = names.map((n) => {
    const active = view.sort && view.sort.field === n;
    const arrow = active ? (view.sort.dir === "asc" ? " ▲" : " ▼") : "";
    return h("th", { scope: "col", "aria-sort": active ? (view.sort.dir === "asc" ? "ascending" : "descending") : null },
      h("button", { type: "button", class: "sort", onclick: () => {
        view.sort = active && view.sort.dir === "asc" ? { field: n, dir: "desc" } : { field: n, dir: "asc" };
        view.page = 1;
        again();
      } }, n + arrow));
  });
  const canEdit = editable && columns && rights.write;
  const canDelete = editable && rights.delete;
  const grid = rows.length
    ? h("div", { class: "scroll" }, h("table", { class: "grid", id: "rows" },
        h("thead", {}, h("tr", {}, header, canEdit || canDelete ? h("th", {}, "") : null)),
        h("tbody", {}, rows.map((r) => h("tr", { dataset: { id: editText(r.id) } }, names.map((n) => cell(r[n])),
          canEdit || canDelete ? h("td", { class: "actions" },
            canEdit ? h("button", { type: "button", class: "link row-edit", onclick: () => editRow(client, table, columns, r).then((ok) => ok && again()) }, "Edit") : null,
            canDelete ? h("button", { type: "button", class: "link danger row-delete", onclick: () => deleteRow(client, table, r, session).then((ok) => ok && again()) }, "Delete") : null) : null)))))
    : h("div", { class: "empty", id: "rows-empty" }, view.filters.length ? "No rows match these filters." : "This table has no rows.");

  clear(body, h("div", { class: "panel" }, addFilter, chips, tools), grid,
    !editable && (rights.write || rights.delete) ? h("p", { class: "muted small" }, "Rows are edited and deleted by their id column; this table has none.") : null);

  countRows(client, table, view).then(
    (n) => {
      const first = rows.length ? (view.page - 1) * view.pageSize + 1 : 0;
      countEl.textContent = n === null ? "count unknown" : `rows ${first}–${first + rows.length - (rows.length ? 1 : 0)} of ${n}`;
      if (n !== null) next.disabled = view.page * view.pageSize >= n;
    },
    (err) => {
      countEl.textContent = `count unavailable (${err.code})`;
    },
  );
}

async function insertRow(client, table, columns, session) {
  const values = await modal(`Insert into ${table}`, rowFields(columns), { submit: "Insert", intro: "Empty fields are left out (the column's default applies). JSON columns take JSON." });
  if (!values) return false;
  return attempt("Row inserted", () =>
    api.call("PUT", "/gateway/insert", { client, headers: contextHeaders(session), body: { table_name: table, insert_body: rowBody(values, columns) } }));
}

async function editRow(client, table, columns, row) {
  const values = await modal(`Edit ${table} row ${editText(row.id)}`, rowFields(columns.filter((c) => c.column_name !== "id"), row), { submit: "Save", intro: "Only changed fields are sent; a cleared field becomes null." });
  if (!values) return false;
  let change;
  try {
    change = rowBody(values, columns, row);
  } catch (err) {
    return attempt("", () => Promise.reject(err));
  }
  if (!Object.keys(change).length) return false; // nothing changed: nothing to send
  return attempt("Row saved", () =>
    api.post("/gateway/update", { table_name: table, update_body: change, conditions: [{ eq_column: "id", eq_value: row.id }] }, { client }));
}

async function deleteRow(client, table, row, session) {
  const ok = await confirmAction(`Delete row ${editText(row.id)}?`, `The row with id ${editText(row.id)} is deleted from ${table} in ${client}. This cannot be undone.`);
  if (!ok) return false;
  return attempt("Row deleted", () =>
    api.call("DELETE", "/gateway/delete", { client, headers: contextHeaders(session), body: { table_name: table, resource_id: editText(row.id) } }));
}

async function exportCsv(client, table, view, names) {
  const rows = [];
  try {
    for (let page = 1; rows.length < EXPORT_MAX_ROWS; page++) {
      const batch = await fetchPage(client, table, view, page, EXPORT_PAGE);
      rows.push(...batch);
      if (batch.length < EXPORT_PAGE) break;
    }
  } catch (err) {
    return toast(`${err.code}: ${err.message}`, "error");
  }
  const columns = names.length ? names : [...new Set(rows.flatMap((r) => Object.keys(r)))];
  api.saveBlob(new Blob([csv(rows, columns)], { type: "text/csv" }), `${client}-${table}.csv`);
  toast(`Exported ${rows.length} rows`);
}

export default {
  id: "tables",
  title: "Tables",
  visible: () => true,
  render,
};
