// Structure of a table (/schema/columns, indexes) and schema changes through /management/*:
// create / drop table, add / rename / drop column, create / drop index, with the audit log.

import * as api from "./api.js";
import { attempt, clear, confirmAction, dataTable, errorBox, h, loading, modal } from "./dom.js";
import { clientPicker, forgetTables, tablePicker, tablesFor } from "./common.js";

function sqlLiteral(text) {
  return `'${String(text).replace(/'/g, "''")}'`;
}

async function capabilities(state, client) {
  state.caps = state.caps || {};
  // The answer is the success envelope: the capabilities are its `data`. (Reading the envelope
  // itself left the column-type list empty and made "Create index" throw before its form.)
  if (!state.caps[client]) state.caps[client] = (await api.get("/management/capabilities", { client })).data;
  return state.caps[client];
}

async function run(label, fn, done) {
  if (await attempt(label, fn)) done();
}

async function render(root, state, session, alive) {
  const rerender = () => {
    clear(root);
    render(root, state, session, alive);
  };
  root.append(h("h1", {}, "Structure"));
  const bar = h("div", { class: "row panel" }, clientPicker(state, session, rerender));
  const body = h("div", {}, loading());
  root.append(bar, body);
  if (!state.client) return clear(body, h("div", { class: "empty" }, "Name a client."));
  const client = state.client;
  const can = (r) => session.can(r);
  const tables = await tablesFor(state, session, client);
  if (!alive()) return;
  if (tables.length && !tables.some((t) => t.name === state.table)) state.table = tables[0].name;
  if (tables.length) bar.append(tablePicker(state, tables, rerender));
  const dataTypes = can("management.read") ? (await capabilities(state, client).catch(() => null))?.allowed_column_data_types || [] : [];
  const changed = () => {
    forgetTables(state, client);
    if (state.columnCache) delete state.columnCache[`${client}/${state.table}`];
    rerender();
  };
  if (can("management.tables.write")) {
    bar.append(h("span", { class: "spacer" }), h("button", { type: "button", id: "create-table", onclick: () => createTable(client, dataTypes, state, changed) }, "Create table"));
  }
  if (!state.table) return clear(body, h("div", { class: "empty" }, "No table yet."));
  const table = state.table;

  const columns = (await api.get("/schema/columns", { client, query: { table_name: table } })).columns;
  if (!alive()) return;
  const colRows = columns.map((c) => ({ column: c.column_name, type: c.data_type === "ARRAY" ? `${c.udt_name.replace(/^_/, "")}[]` : c.data_type, default: c.column_default, nullable: c.is_nullable }));
  const columnActions = (row) => [
    can("management.tables.write") ? h("button", { type: "button", class: "link col-rename", onclick: () => renameColumn(client, table, row.column, changed) }, "Rename") : null,
    can("management.columns.drop") ? h("button", { type: "button", class: "link danger col-drop", onclick: () => dropColumn(client, table, row.column, changed) }, "Drop") : null,
  ];
  const columnPanel = h("div", { class: "panel", id: "columns" },
    h("div", { class: "row" }, h("h2", {}, `Columns of ${table}`), h("span", { class: "spacer" }),
      can("management.tables.write") ? h("button", { type: "button", class: "secondary", id: "add-column", onclick: () => addColumn(client, table, dataTypes, changed) }, "Add column") : null),
    dataTable(colRows, { actions: can("management.tables.write") || can("management.columns.drop") ? columnActions : null }));

  const indexPanel = h("div", { class: "panel", id: "indexes" }, h("div", { class: "row" }, h("h2", {}, "Indexes"), h("span", { class: "spacer" }),
    can("management.indexes.write") ? h("button", { type: "button", class: "secondary", id: "create-index", onclick: () => createIndex(client, table, columns, state, changed) }, "Create index") : null));
  if (can("gateway.query")) {
    try {
      const q = `SELECT indexname AS index, indexdef AS definition FROM pg_indexes WHERE schemaname = 'public' AND tablename = ${sqlLiteral(table)} ORDER BY indexname`;
      const rows = (await api.post("/gateway/query", { query: q }, { client })).data || [];
      indexPanel.append(dataTable(rows, {
        actions: can("management.indexes.drop") ? (r) => h("button", { type: "button", class: "link danger index-drop", onclick: () => dropIndex(client, r.index, changed) }, "Drop") : null,
      }));
    } catch (err) {
      indexPanel.append(errorBox(err));
    }
  } else {
    indexPanel.append(h("p", { class: "muted" }, "Listing indexes reads pg_indexes and needs the right gateway.query."));
  }

  const danger = can("management.tables.drop")
    ? h("div", { class: "panel" }, h("button", { type: "button", class: "danger", id: "drop-table", onclick: () => dropTable(client, table, state, changed) }, `Drop table ${table}`))
    : null;

  const audit = h("div", { class: "panel", id: "audit" }, h("h2", {}, "Audit log (schema changes through /management)"));
  try {
    const rows = (await api.post("/gateway/fetch", {
      table_name: "database_audit_log",
      columns: ["created_at", "operation", "table_name", "object_name", "api_key_public_id", "ddl"],
      sort_by: { field: "id", direction: "desc" },
      page_size: 20,
    }, { client })).data || [];
    audit.append(dataTable(rows));
  } catch (err) {
    audit.append(err.code === "unknown_table" ? h("p", { class: "muted" }, "This database has no database_audit_log: provision it to allow schema changes.") : errorBox(err));
  }
  if (!alive()) return;
  clear(body, columnPanel, indexPanel, audit, danger);
}

function columnFields(dataTypes) {
  return [
    { name: "name", label: "Column name", required: true },
    { name: "data_type", label: "Type", type: dataTypes.length ? "select" : "text", options: dataTypes, value: "text" },
    { name: "nullable", label: "Nullable", type: "checkbox", value: true },
    { name: "default_expression", label: "Default (literal or now())", placeholder: "optional" },
  ];
}

function columnBody(v) {
  const col = { name: v.name.trim(), data_type: v.data_type, nullable: v.nullable };
  if (v.default_expression.trim()) col.default_expression = v.default_expression.trim();
  return col;
}

async function createTable(client, dataTypes, state, done) {
  const v = await modal("Create table", [{ name: "table_name", label: "Table name", required: true }, ...columnFields(dataTypes)], {
    submit: "Create", intro: "Every managed table also gets id (uuid primary key), created_at and updated_at. Add more columns afterwards.",
  });
  if (!v) return;
  const columns = v.name.trim() ? [columnBody(v)] : [];
  await run("Table created", () => api.post("/management/tables", { table_name: v.table_name.trim(), columns }, { client }), () => {
    state.table = v.table_name.trim();
    done();
  });
}

async function addColumn(client, table, dataTypes, done) {
  const v = await modal(`Add column to ${table}`, columnFields(dataTypes), { submit: "Add" });
  if (!v) return;
  await run("Column added", () => api.call("PATCH", `/management/tables/${encodeURIComponent(table)}`, { client, body: { operations: [{ type: "add_column", column: columnBody(v) }] } }), done);
}

async function renameColumn(client, table, column, done) {
  const v = await modal(`Rename ${table}.${column}`, [{ name: "to", label: "New name", value: column, required: true }], { submit: "Rename" });
  if (!v || v.to.trim() === column) return;
  await run("Column renamed", () => api.call("PATCH", `/management/tables/${encodeURIComponent(table)}`, { client, body: { operations: [{ type: "rename_column", from: column, to: v.to.trim() }] } }), done);
}

async function dropColumn(client, table, column, done) {
  if (!(await confirmAction(`Drop column ${column}?`, `Column ${column} of ${table} in ${client} and all its values are deleted.`, { submit: "Drop column" }))) return;
  await run("Column dropped", () => api.call("DELETE", `/management/tables/${encodeURIComponent(table)}/columns/${encodeURIComponent(column)}`, { client }), done);
}

async function createIndex(client, table, columns, state, done) {
  const caps = await capabilities(state, client).catch(() => ({ allowed_index_methods: ["btree"] }));
  const v = await modal(`Create index on ${table}`, [
    { name: "columns", label: "Columns (comma separated)", required: true, placeholder: columns.map((c) => c.column_name).slice(0, 2).join(", ") },
    { name: "method", label: "Method", type: "select", options: caps.allowed_index_methods, value: "btree" },
    { name: "unique", label: "Unique", type: "checkbox", value: false },
  ], { submit: "Create index" });
  if (!v) return;
  const body = { table_name: table, columns: v.columns.split(",").map((c) => c.trim()).filter(Boolean), method: v.method };
  if (v.unique) body.unique = true;
  await run("Index created", () => api.post("/management/indexes", body, { client }), done);
}

async function dropIndex(client, index, done) {
  if (!(await confirmAction(`Drop index ${index}?`, `Index ${index} in ${client} is dropped.`, { submit: "Drop index" }))) return;
  await run("Index dropped", () => api.call("DELETE", `/management/indexes/${encodeURIComponent(index)}`, { client }), done);
}

async function dropTable(client, table, state, done) {
  if (!(await confirmAction(`Drop table ${table}?`, `Table ${table} in ${client} and every row in it are deleted.`, { typed: table, submit: "Drop table" }))) return;
  await run("Table dropped", () => api.call("DELETE", `/management/tables/${encodeURIComponent(table)}`, { client, body: { cascade: false } }), () => {
    state.table = null;
    done();
  });
}

export default {
  id: "structure",
  title: "Structure",
  visible: (s) => s.can("gateway.read") || s.can("management.read"),
  render,
};
