// Pieces several screens share: the client picker, the tables a key may see, context headers.

import * as api from "./api.js";
import { h, option } from "./dom.js";

// Insert and delete carry who acted (recorded in the request log); the console says it was
// the console, under the key's public id.
export function contextHeaders(session) {
  const id = session.key.admin ? "admin" : session.key.public_id;
  return { "X-User-Id": `console:${id}`, "X-Company-Id": "console", "X-Organization-Id": "console" };
}

export function clientPicker(state, session, onChange) {
  const label = h("label", {}, "Client");
  let control;
  if (session.clients.length) {
    control = h(
      "select",
      {
        id: "client-picker",
        onchange: () => {
          state.client = control.value;
          state.table = null;
          onChange();
        },
      },
      session.clients.map((c) => option(c, c, c === state.client)),
    );
  } else {
    control = h("input", {
      id: "client-picker",
      value: state.client || "",
      placeholder: "client name",
      onchange: () => {
        state.client = control.value.trim() || null;
        state.table = null;
        onChange();
      },
    });
  }
  label.append(control);
  return label;
}

const TABLE_RIGHT = /^([^.*]+)\.(read|write|delete|\*)$/;
const NOT_TABLES = new Set(["gateway", "management"]);

export function canListSchema(session) {
  return session.can("gateway.read") || session.can("management.read");
}

// The tables of `client` this key may read, each with {name, read, write, delete}.
// Keys that may read the schema list it; others see the tables their rights name.
export async function tablesFor(state, session, client) {
  state.tableCache = state.tableCache || {};
  if (state.tableCache[client]) return state.tableCache[client];
  let names;
  if (canListSchema(session)) {
    const body = await api.get("/schema/tables", { client });
    names = body.tables.filter((t) => t.table_schema === "public").map((t) => t.table_name);
  } else {
    names = [...new Set(session.key.rights.map((r) => TABLE_RIGHT.exec(r)).filter((m) => m && !NOT_TABLES.has(m[1])).map((m) => m[1]))];
  }
  names.sort();
  let tables;
  if (session.key.admin) {
    tables = names.map((name) => ({ name, read: true, write: true, delete: true }));
  } else {
    const granted = {};
    for (let i = 0; i < names.length; i += 150) {
      const chunk = names.slice(i, i + 150);
      const rights = chunk.flatMap((t) => [`${t}.read`, `${t}.write`, `${t}.delete`]);
      Object.assign(granted, (await api.get("/auth/key", { query: { rights: rights.join(",") } })).granted);
    }
    tables = names
      .map((name) => ({ name, read: granted[`${name}.read`], write: granted[`${name}.write`], delete: granted[`${name}.delete`] }))
      .filter((t) => t.read);
  }
  state.tableCache[client] = tables;
  return tables;
}

export function forgetTables(state, client) {
  if (state.tableCache) delete state.tableCache[client];
}

export function tablePicker(state, tables, onChange) {
  const control = h(
    "select",
    {
      id: "table-picker",
      onchange: () => {
        state.table = control.value;
        onChange();
      },
    },
    tables.map((t) => option(t.name, t.name, t.name === state.table)),
  );
  return h("label", {}, "Table", control);
}
