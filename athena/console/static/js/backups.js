// Backups (admin key): list, start a backup and watch its progress live (the job's
// Server-Sent Events), restore after a confirmation naming the target, download, delete.

import * as api from "./api.js";
import { attempt, clear, confirmAction, errorBox, formatBytes, h, modal, option, toast } from "./dom.js";

const enc = (key) => key.split("/").map(encodeURIComponent).join("%2F");

function progressView(title) {
  const bar = h("progress", { id: "job-progress" });
  const phase = h("span", { id: "job-phase" }, "starting");
  const bytes = h("span", { id: "job-bytes", class: "muted" }, "");
  const result = h("div", { id: "job-result" });
  const box = h("div", { class: "panel", id: "job" }, h("h2", {}, title), bar, h("div", { class: "row" }, phase, bytes), result);
  const update = (name, data) => {
    if (name === "progress") {
      phase.textContent = data.phase || "running";
      if (data.total_bytes) {
        bar.max = data.total_bytes;
        bar.value = data.bytes || 0;
      }
      const parts = [];
      if (data.dumped_bytes !== undefined) parts.push(`dumped ${formatBytes(data.dumped_bytes)}`);
      parts.push(`${data.total_bytes ? "read" : "compressed"} ${formatBytes(data.bytes)}${data.total_bytes ? " of " + formatBytes(data.total_bytes) : ""}`);
      if (data.uploaded_bytes !== undefined) parts.push(`uploaded ${formatBytes(data.uploaded_bytes)}`);
      bytes.textContent = parts.join(" · ");
    } else if (name === "result") {
      bar.max = 1;
      bar.value = 1;
      phase.textContent = "done";
      clear(result, h("p", { id: "job-done" }, "Finished: ", h("code", {}, data.key || JSON.stringify(data))));
    } else if (name === "error") {
      phase.textContent = "failed";
      clear(result, errorBox({ code: data.code, message: data.message, data: data.data }));
    }
  };
  return { box, update };
}

async function render(root, state, session, alive) {
  const again = () => {
    clear(root);
    render(root, state, session, alive);
  };
  const jobArea = h("div", { id: "job-area" });
  const clientSel = h("select", { id: "backup-client" }, session.clients.map((c) => option(c, c, c === state.client)));
  const label = h("input", { id: "backup-label", placeholder: "label (optional)" });
  const start = h("form", { class: "panel row", onsubmit: async (ev) => {
    ev.preventDefault();
    const view = progressView(`Backup of ${clientSel.value}`);
    clear(jobArea, view.box);
    startButton.disabled = true;
    try {
      await api.stream("POST", "/admin/backups", { client_name: clientSel.value, label: label.value || null }, view.update);
    } catch (err) {
      view.update("error", err);
    }
    startButton.disabled = false;
    refreshList();
  } }, h("label", {}, "Client", clientSel), h("label", {}, "Label", label));
  const startButton = h("button", { type: "submit", id: "backup-start" }, "Start backup");
  start.append(startButton);
  const list = h("div", { id: "backups" }, "Loading…");
  root.append(h("h1", {}, "Backups"), start, jobArea, h("h2", {}, "Backups in S3"), list);

  async function refreshList() {
    let body;
    try {
      body = await api.get("/admin/backups");
    } catch (err) {
      return clear(list, errorBox(err));
    }
    if (!alive()) return;
    if (!body.backups.length) return clear(list, h("div", { class: "empty" }, "No backups yet."));
    clear(list, h("div", { class: "scroll" }, h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, ["created", "client", "label", "size", "key", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, body.backups.map((b) => h("tr", { dataset: { key: b.key } },
        h("td", {}, b.created_at || b.last_modified || "–"), h("td", {}, b.client_name), h("td", {}, b.label || ""),
        h("td", { class: "num" }, formatBytes(b.size_bytes)), h("td", { class: "mono small" }, b.key),
        h("td", { class: "actions" },
          h("button", { type: "button", class: "link backup-download", onclick: () => download(b) }, "Download"),
          h("button", { type: "button", class: "link backup-restore", onclick: () => restore(b, session, jobArea, refreshList) }, "Restore"),
          h("button", { type: "button", class: "link danger backup-delete", onclick: () => remove(b, refreshList) }, "Delete"))))))));
  }
  await refreshList();
}

async function download(b) {
  try {
    const size = await api.download(`/admin/backups/${enc(b.key)}/download`, b.key.split("/").pop());
    toast(`Downloaded ${formatBytes(size)}`);
  } catch (err) {
    toast(`${err.code}: ${err.message}`, "error");
  }
}

async function restore(b, session, jobArea, done) {
  const v = await modal("Restore backup", [{ name: "target", label: "Into client", type: "select", options: session.clients.map((c) => option(c, c, c === b.client_name)) }], {
    submit: "Next", intro: `Backup ${b.key} of ${b.client_name}.`,
  });
  if (!v) return;
  const ok = await confirmAction(`Restore into ${v.target}?`, `Every object in the backup replaces its counterpart in the database of client ${v.target} (pg_restore --clean, one transaction).`, { typed: v.target, submit: "Restore" });
  if (!ok) return;
  const view = progressView(`Restore of ${b.key} into ${v.target}`);
  clear(jobArea, view.box);
  try {
    await api.stream("POST", `/admin/backups/${enc(b.key)}/restore`, { client_name: v.target }, view.update);
  } catch (err) {
    view.update("error", err);
  }
  done();
}

async function remove(b, done) {
  if (!(await confirmAction("Delete backup?", `${b.key} is deleted from S3.`))) return;
  if (await attempt("Backup deleted", () => api.call("DELETE", `/admin/backups/${enc(b.key)}`))) done();
}

export default { id: "backups", title: "Backups", visible: (s) => s.key.admin, render };
