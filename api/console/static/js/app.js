// The console's shell: the API key prompt, and a router from the address bar to one view.

import { api, auth } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { collectionsView, documentsView } from "./collections.js";
import { askView } from "./ask.js";
import { chatView } from "./chat.js";
import { traceView } from "./trace.js";
import { searchView } from "./search.js";
import { usageView } from "./usage.js";

const view = document.getElementById("view");
const routes = [
  [/^\/$/, () => ["collections", collectionsView()]],
  [/^\/collections\/([^/]+)$/, (m) => ["collections", documentsView(decodeURIComponent(m[1]))]],
  [/^\/ask$/, () => ["ask", askView(new URLSearchParams(location.search).get("collection"))]],
  [/^\/chat$/, () => {
    const q = new URLSearchParams(location.search);
    return ["chat", chatView(q.get("collection"), q.get("conversation"))];
  }],
  [/^\/questions\/([0-9a-f]+)$/, (m) => ["usage", traceView(m[1])]],
  [/^\/search$/, () => ["search", searchView(new URLSearchParams(location.search).get("collection"))]],
  [/^\/usage$/, () => ["usage", usageView()]],
];

let generation = 0; // a view that finishes loading after the user moved on must not draw

export function navigate(href) {
  history.pushState(null, "", href);
  render();
}

async function render() {
  const mine = ++generation;
  const match = routes.map(([re, make]) => [location.pathname.match(re), make]).find(([m]) => m);
  if (!match) {
    clear(view, h("h1", {}, "Not found"), h("p", {}, "No page at ", h("code", {}, location.pathname), "."));
    return;
  }
  const [tab, promise] = match[1](match[0]);
  for (const a of document.querySelectorAll("nav a[data-tab]")) a.classList.toggle("active", a.dataset.tab === tab);
  clear(view, h("p", { class: "muted" }, "Loading…"));
  try {
    const node = await promise;
    if (mine === generation) clear(view, node);
  } catch (err) {
    if (mine === generation && err.status !== 401) clear(view, errorBox(err));
  }
}

// ---------------------------------------------------------------- the key

const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
const keyError = document.getElementById("key-error");

function askForKey(message) {
  keyError.hidden = !message;
  keyError.textContent = message || "";
  if (!dialog.open) dialog.showModal();
  keyInput.focus();
}

document.getElementById("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  auth.set(keyInput.value);
  try {
    await api.collections();
  } catch (err) {
    auth.clear();
    return askForKey(err.status === 401 ? "That key was not accepted." : `${err.code}: ${err.message}`);
  }
  keyInput.value = "";
  dialog.close();
  document.getElementById("signout").hidden = false;
  render();
});

// Escape (or closing the dialog any other way) without a key: say what is missing and how to go on,
// instead of leaving the view's "Loading…" with nothing to click.
dialog.addEventListener("close", () => {
  if (auth.get()) return;
  clear(view, h("section", { id: "no-key" }, h("h1", {}, "An API key is needed"),
    h("p", {}, "Every page here reads the server's API, which needs a key."),
    h("p", {}, h("button", { type: "button", id: "enter-key", onclick: () => askForKey(null) }, "Enter a key"))));
});

window.addEventListener("rag:unauthorized", () => {
  auth.clear();
  document.getElementById("signout").hidden = true;
  askForKey(null);
});

document.getElementById("signout").addEventListener("click", () => {
  auth.clear();
  location.reload();
});

// ---------------------------------------------------------------- links

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-nav]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", render);

document.getElementById("signout").hidden = !auth.get();
render();
