// Building the page: every value becomes a text node or an attribute set through the DOM,
// never HTML parsed from a string, so data such as <img src=x onerror=…> shows as text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (name === "value") {
      el.value = value;
    } else if (name === "checked" || name === "disabled" || name === "selected" || name === "hidden") {
      el[name] = Boolean(value);
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function option(value, label, selected) {
  return h("option", { value, selected }, label ?? value);
}

export function select(options, attrs = {}) {
  return h("select", attrs, options.map((o) => (typeof o === "string" ? option(o, o, o === attrs.value) : o)));
}

// The text of one cell: JSON and arrays compact and readable, null marked as such.
export function cellText(value) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function cell(value) {
  const text = cellText(value);
  const cls = value === null || value === undefined ? "null" : typeof value === "object" ? "json" : typeof value === "number" ? "num" : "";
  const td = h("td", { class: cls, title: text.length > 40 ? (typeof value === "object" && value ? JSON.stringify(value, null, 2) : text) : null });
  td.textContent = text.length > 300 ? text.slice(0, 300) + "…" : text;
  return td;
}

export function dataTable(rows, { columns, actions } = {}) {
  if (!rows.length) return h("div", { class: "empty" }, "No rows.");
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col" }, c)), actions ? h("th", {}, "") : null)),
      h(
        "tbody",
        {},
        rows.map((r) => h("tr", {}, cols.map((c) => cell(r[c])), actions ? h("td", { class: "actions" }, actions(r)) : null)),
      ),
    ),
  );
}

export function errorBox(err) {
  if (!err) return null;
  const code = err.code || "error";
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("code", {}, code),
    err.status ? ` (HTTP ${err.status})` : "",
    ": ",
    err.message || String(err),
    err.data && Object.keys(err.data).length ? h("pre", { class: "small" }, JSON.stringify(err.data, null, 2)) : null,
  );
}

export function loading(text = "Loading…") {
  return h("div", { class: "loading", "aria-busy": "true" }, text);
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const t = h("div", { class: `toast ${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || ""}` }, text);
}

// One modal at a time, in the page's <dialog>. Resolves with the form's values, or null.
export function modal(title, fields, { submit = "Save", danger = false, intro } = {}) {
  const dialog = document.getElementById("dialog");
  return new Promise((resolve) => {
    const form = h("form", { method: "dialog" });
    const inputs = {};
    const grid = h("div", { class: "fields" });
    for (const f of fields) {
      let input;
      if (f.type === "select") {
        input = select(f.options, { name: f.name, value: f.value });
      } else if (f.type === "textarea") {
        input = h("textarea", { name: f.name, rows: f.rows || 3, value: f.value ?? "", placeholder: f.placeholder });
      } else if (f.type === "checkbox") {
        input = h("input", { type: "checkbox", name: f.name, checked: f.value });
      } else if (f.type === "node") {
        input = f.node;
      } else {
        input = h("input", {
          type: f.type || "text",
          name: f.name,
          value: f.value ?? "",
          placeholder: f.placeholder,
          required: f.required,
          autocomplete: "off",
          spellcheck: "false",
        });
      }
      inputs[f.name] = input;
      const id = `f-${f.name}`;
      input.id = id;
      grid.append(h("label", { for: id }, f.label || f.name), input);
    }
    const cancel = h("button", { type: "button", class: "ghost", onclick: () => dialog.close("cancel") }, "Cancel");
    const ok = h("button", { type: "submit", class: danger ? "danger" : "", value: "ok" }, submit);
    clear(
      dialog,
      h("div", {}, form),
    );
    form.append(h("h2", {}, title), intro ? h("p", {}, intro) : null, fields.length ? grid : null, h("div", { class: "buttons" }, cancel, ok));
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      for (const [name, input] of Object.entries(inputs)) {
        values[name] = input.type === "checkbox" ? input.checked : input.value;
      }
      resolve(values);
    };
    dialog.returnValue = "";
    dialog.showModal();
    const first = fields.length ? inputs[fields[0].name] : ok;
    if (first && first.focus) first.focus();
  });
}

// Destructive actions ask first. With `typed`, the operator must type that text to confirm.
export async function confirmAction(title, message, { typed, submit = "Delete" } = {}) {
  if (!typed) return (await modal(title, [], { submit, danger: true, intro: message })) !== null;
  const values = await modal(title, [{ name: "confirm", label: `Type ${typed} to confirm`, required: true }], {
    submit,
    danger: true,
    intro: message,
  });
  return values !== null && values.confirm === typed;
}

export function formatBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// Run one change; toast its success or the API's code and message. True when it worked.
export async function attempt(message, fn) {
  try {
    await fn();
    toast(message);
    return true;
  } catch (err) {
    toast(`${err.code}: ${err.message}`, "error");
    return false;
  }
}
