// Sign-in, navigation and the screens' shared state. Each screen module exports
// { id, title, visible(session), render(root, state) }.

import * as api from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import clients from "./clients.js";
import tables from "./tables.js";
import structure from "./structure.js";
import sqlEditor from "./sql.js";
import keys from "./keys.js";
import activity from "./activity.js";
import backups from "./backups.js";
import cluster from "./cluster.js";

const SCREENS = [clients, tables, structure, sqlEditor, keys, activity, backups, cluster];

// Rights the console asks about at sign-in to decide which screens and controls to show.
const FIXED_RIGHTS = [
  "gateway.read", "gateway.write", "gateway.delete", "gateway.query", "management.read",
  "management.tables.write", "management.tables.drop", "management.columns.drop",
  "management.indexes.write", "management.indexes.drop",
];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");

// Shared between screens: the client and table in focus, and anything a screen keeps.
export const state = { client: null, table: null, clients: [] };

function can(session, right) {
  return session.key.admin || Boolean(session.granted[right]);
}

async function describeKey(key) {
  api.signIn(key, null);
  const info = await api.get("/auth/key", { query: { rights: FIXED_RIGHTS.join(",") } });
  const session = { ...info, can: (right) => can(session, right) };
  if (info.key.admin) {
    const listed = await api.get("/clients");
    session.clients = listed.clients;
  } else {
    session.clients = info.key.client_name ? [info.key.client_name] : [];
  }
  api.signIn(key, session);
  return session;
}

function renderSignIn(error) {
  nav.hidden = who.hidden = signOutButton.hidden = true;
  const keyInput = h("input", {
    type: "password", id: "signin-key", name: "key", required: true, autocomplete: "off",
    spellcheck: "false", placeholder: "ath_… or the admin key",
  });
  const button = h("button", { type: "submit", id: "signin-submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "panel signin",
      onsubmit: async (ev) => {
        ev.preventDefault();
        button.disabled = true;
        try {
          const session = await describeKey(keyInput.value.trim());
          keyInput.value = "";
          state.client = session.clients[0] || null;
          state.clients = session.clients;
          start(session);
        } catch (err) {
          api.signOut();
          renderSignIn(err);
        }
      },
    },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "Use the admin key or an API key. The key stays in this tab's memory only: reloading the page signs you out."),
    h("label", { for: "signin-key" }, "Key"),
    keyInput,
    error ? errorBox(error) : null,
    h("div", { class: "row" }, h("span", { class: "spacer" }), button),
  );
  clear(main, form);
  keyInput.focus();
}

function visibleScreens(session) {
  return SCREENS.filter((s) => s.visible(session));
}

function start(session) {
  const screens = visibleScreens(session);
  clear(
    nav,
    screens.map((s) => h("a", { href: `#/${s.id}`, id: `nav-${s.id}`, dataset: { screen: s.id } }, s.title)),
  );
  nav.hidden = false;
  who.textContent = session.key.admin
    ? "admin key"
    : `key ${session.key.public_id}${session.key.client_name ? " · client " + session.key.client_name : ""}`;
  who.hidden = false;
  signOutButton.hidden = false;
  const wanted = location.hash.replace(/^#\//, "");
  if (!screens.some((s) => s.id === wanted)) {
    location.hash = `#/${screens[0] ? screens[0].id : ""}`;
  }
  route();
}

let renderToken = 0;

async function route() {
  const session = api.current();
  if (!session) return renderSignIn();
  const id = location.hash.replace(/^#\//, "");
  const screen = visibleScreens(session).find((s) => s.id === id);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.screen === id) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!screen) return clear(main, h("div", { class: "empty" }, "This key can open no screen here."));
  const token = ++renderToken;
  const root = h("section", { id: `screen-${screen.id}`, "aria-label": screen.title });
  clear(main, root);
  try {
    await screen.render(root, state, session, () => token === renderToken);
  } catch (err) {
    if (token === renderToken) root.append(errorBox(err));
  }
}

window.addEventListener("hashchange", route);
signOutButton.addEventListener("click", () => {
  api.signOut();
  state.client = state.table = null;
  history.replaceState(null, "", location.pathname);
  renderSignIn();
});

renderSignIn();
