// API keys (admin key): list, create (the secret shown once, with a copy button), edit rights
// from the rights catalog, expire, revoke, delete; global and per-client enforcement.

import * as api from "./api.js";
import { attempt, badge, clear, confirmAction, dataTable, h, modal, option, toast } from "./dom.js";

async function render(root, state, session, alive) {
  const again = () => {
    clear(root);
    render(root, state, session, alive);
  };
  const [keys, rights, config] = await Promise.all([api.get("/admin/api-keys"), api.get("/admin/api-key-rights"), api.get("/admin/api-key-config")]);
  if (!alive()) return;
  const rightNames = rights.rights.map((r) => r.name).sort();
  const now = Date.now();
  const rows = keys.api_keys.map((k) => {
    const expired = k.expires_at && Date.parse(k.expires_at) <= now;
    return h("tr", { dataset: { publicId: k.public_id } },
      h("td", {}, h("strong", {}, k.name), h("div", { class: "mono small muted" }, k.public_id)),
      h("td", {}, k.client_name || h("span", { class: "muted" }, "any")),
      h("td", { class: "small" }, k.rights.join(", ") || "–"),
      h("td", {}, !k.is_active ? badge("revoked", "bad") : expired ? badge("expired", "warn") : badge("active", "ok")),
      h("td", { class: "small" }, k.expires_at || "never"),
      h("td", { class: "small" }, k.last_used_at || "never"),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "link key-rights", onclick: () => editRights(k, rightNames, again) }, "Rights"),
        h("button", { type: "button", class: "link key-expire", onclick: () => expire(k, again) }, "Expiry"),
        k.is_active ? h("button", { type: "button", class: "link danger key-revoke", onclick: () => revoke(k, again) }, "Revoke") : h("button", { type: "button", class: "link key-activate", onclick: () => patch(k, { is_active: true }, "Key re-activated", again) }, "Re-activate"),
        h("button", { type: "button", class: "link danger key-delete", onclick: () => remove(k, again) }, "Delete")));
  });
  const secretBox = h("div", { id: "new-key" });
  if (state.newKey) showSecret(secretBox, state.newKey); // shown once: only in this render
  state.newKey = null;
  root.append(
    h("div", { class: "row" }, h("h1", {}, "API keys"), h("span", { class: "spacer" }),
      h("button", { type: "button", id: "key-create", onclick: () => create(state, session, rightNames, again) }, "Create key")),
    secretBox,
    keys.api_keys.length
      ? h("div", { class: "scroll" }, h("table", { class: "grid", id: "keys" }, h("thead", {}, h("tr", {}, ["key", "client", "rights", "state", "expires", "last used", ""].map((c) => h("th", {}, c)))), h("tbody", {}, rows)))
      : h("div", { class: "empty" }, "No API keys yet."),
    enforcement(config, session, again),
    h("h2", {}, "Rights catalog"),
    dataTable(rights.rights.map((r) => ({ right: r.name, description: r.description }))),
  );
}

function enforcement(config, session, done) {
  const global = h("input", { type: "checkbox", id: "enforce-global", checked: config.global.enforce_api_keys, onchange: async () => {
    if (!global.checked && !(await confirmAction("Stop enforcing API keys?", "Requests without a key will pass on every client without its own setting.", { submit: "Turn off" }))) {
      global.checked = true;
      return;
    }
    try {
      await api.call("PUT", "/admin/api-key-config", { body: { enforce_api_keys: global.checked } });
      toast("Enforcement saved");
    } catch (err) {
      toast(`${err.code}: ${err.message}`, "error");
    }
    done();
  } });
  const overrides = config.clients.map((c) => ({ client: c.client_name, enforce_api_keys: c.enforce_api_keys }));
  const clientSel = h("select", { id: "enforce-client" }, session.clients.map((c) => option(c)));
  const modeSel = h("select", { id: "enforce-mode" }, option("true", "enforce"), option("false", "do not enforce"), option("inherit", "inherit the global flag"));
  return h("div", { class: "panel", id: "enforcement" },
    h("h2", {}, "Enforcement"),
    h("label", {}, global, " Require an API key on every request (global)"),
    dataTable(overrides),
    h("div", { class: "row" }, h("label", {}, "Client", clientSel), h("label", {}, "Setting", modeSel), h("button", { type: "button", class: "secondary", onclick: async () => {
      try {
        if (modeSel.value === "inherit") await api.call("DELETE", `/admin/api-key-clients/${encodeURIComponent(clientSel.value)}`);
        else await api.call("PUT", `/admin/api-key-clients/${encodeURIComponent(clientSel.value)}`, { body: { enforce_api_keys: modeSel.value === "true" } });
        toast("Client setting saved");
      } catch (err) {
        toast(`${err.code}: ${err.message}`, "error");
      }
      done();
    } }, "Apply")));
}

function rightsPicker(rightNames, chosen) {
  return h("div", { class: "rights", id: "rights-picker" }, rightNames.map((r) => h("label", {}, h("input", { type: "checkbox", value: r, checked: chosen.includes(r) }), " ", r)));
}

function pickedRights(box) {
  return [...box.querySelectorAll("input:checked")].map((i) => i.value);
}

function isoOrNull(local) {
  return local ? new Date(local).toISOString() : null;
}

async function create(state, session, rightNames, done) {
  const picker = rightsPicker(rightNames, []);
  const v = await modal("Create API key", [
    { name: "name", label: "Name", required: true },
    { name: "client_name", label: "Bound to client", type: "select", options: [option("", "any client"), ...session.clients.map((c) => option(c))] },
    { name: "expires_at", label: "Expires", type: "datetime-local" },
    { name: "rights", label: "Rights", type: "node", node: picker },
  ], { submit: "Create" });
  if (!v) return;
  try {
    const body = { name: v.name.trim(), client_name: v.client_name || null, rights: pickedRights(picker), expires_at: isoOrNull(v.expires_at) };
    state.newKey = await api.post("/admin/api-keys", body);
    done();
  } catch (err) {
    toast(`${err.code}: ${err.message}`, "error");
  }
}

function showSecret(box, created) {
  const secret = h("div", { class: "secret", id: "new-key-secret" }, created.api_key);
  const copy = h("button", { type: "button", class: "secondary", id: "new-key-copy", onclick: async () => {
    try {
      await navigator.clipboard.writeText(created.api_key);
      copy.textContent = "Copied";
    } catch {
      toast("The browser refused the clipboard: select the key and copy it", "error");
    }
  } }, "Copy");
  clear(box, h("div", { class: "panel" }, h("h2", {}, `Key “${created.record.name}” created`),
    h("p", {}, "This is the only time the key is shown. Store it now."), secret, h("div", { class: "row" }, copy,
      h("button", { type: "button", class: "ghost", onclick: () => clear(box) }, "Done"))));
}

async function patch(k, body, message, done) {
  if (await attempt(message, () => api.call("PATCH", `/admin/api-keys/${encodeURIComponent(k.id)}`, { body }))) done();
}

async function editRights(k, rightNames, done) {
  const picker = rightsPicker(rightNames, k.rights);
  const v = await modal(`Rights of ${k.name}`, [{ name: "rights", label: "Rights", type: "node", node: picker }], { submit: "Save rights", intro: "The chosen rights replace the key's set." });
  if (v) await patch(k, { rights: pickedRights(picker) }, "Rights saved", done);
}

async function expire(k, done) {
  const v = await modal(`Expiry of ${k.name}`, [{ name: "expires_at", label: "Expires (empty: never)", type: "datetime-local" }, { name: "now", label: "Expire now", type: "checkbox", value: false }], { submit: "Save" });
  if (!v) return;
  const at = v.now ? new Date().toISOString() : isoOrNull(v.expires_at);
  await patch(k, { expires_at: at }, at ? "Expiry saved" : "Key never expires", done);
}

async function revoke(k, done) {
  if (await confirmAction(`Revoke ${k.name}?`, `Key ${k.public_id} stops working at once on every gateway.`, { submit: "Revoke" })) {
    await patch(k, { is_active: false }, "Key revoked", done);
  }
}

async function remove(k, done) {
  if (!(await confirmAction(`Delete ${k.name}?`, `Key ${k.public_id} is deleted for good.`))) return;
  if (await attempt("Key deleted", () => api.call("DELETE", `/admin/api-keys/${encodeURIComponent(k.id)}`))) done();
}

export default { id: "keys", title: "API keys", visible: (s) => s.key.admin, render };
