// SQL editor (keys with gateway.query): run, rows and meta, errors with their codes, and a
// history of the last queries kept in this tab's memory (queries may hold secrets: no storage).

import * as api from "./api.js";
import { clear, dataTable, errorBox, h, loading } from "./dom.js";
import { clientPicker } from "./common.js";

const HISTORY = 20;

async function render(root, state, session) {
  state.sqlHistory = state.sqlHistory || [];
  const rerender = () => {
    clear(root);
    render(root, state, session);
  };
  const editor = h("textarea", { id: "sql-text", rows: 8, spellcheck: "false", "aria-label": "SQL", value: state.sqlDraft || "SELECT now()" });
  const out = h("div", { id: "sql-result" });
  const history = h("ol", { id: "sql-history", class: "small mono" });
  const runButton = h("button", { type: "button", id: "sql-run" }, "Run (Ctrl+Enter)");
  const showHistory = () =>
    clear(history, state.sqlHistory.map((q) => h("li", {}, h("button", { type: "button", class: "link", onclick: () => { editor.value = q; editor.focus(); } }, q.length > 120 ? q.slice(0, 120) + "…" : q))));
  const runIt = async () => {
    const query = editor.value.trim();
    if (!query || !state.client) return;
    state.sqlDraft = editor.value;
    state.sqlHistory = [query, ...state.sqlHistory.filter((q) => q !== query)].slice(0, HISTORY);
    showHistory();
    runButton.disabled = true;
    clear(out, loading("Running…"));
    const started = performance.now();
    try {
      const body = await api.post("/gateway/query", { query }, { client: state.client });
      const ms = Math.round(performance.now() - started);
      clear(out, h("p", { class: "muted", id: "sql-meta" }, `${(body.data || []).length} rows · ${ms} ms · `, h("code", {}, JSON.stringify(body.meta || {}))), dataTable(body.data || []));
    } catch (err) {
      clear(out, errorBox(err));
    } finally {
      runButton.disabled = false;
    }
  };
  runButton.addEventListener("click", runIt);
  editor.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      runIt();
    }
  });
  root.append(
    h("h1", {}, "SQL"),
    h("div", { class: "panel" }, h("div", { class: "row" }, clientPicker(state, session, rerender), h("span", { class: "spacer" }), runButton), h("p", {}, editor),
      h("p", { class: "muted small" }, "Several statements run in one transaction; the rows of the last one are shown.")),
    out,
    h("div", { class: "panel" }, h("h2", {}, "History"), history),
  );
  showHistory();
  editor.focus();
}

export default { id: "sql", title: "SQL", visible: (s) => s.can("gateway.query"), render };
