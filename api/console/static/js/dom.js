// Building the page from data without ever parsing data as HTML: document text in traces is
// untrusted (it may carry markup or prompt injections), so every string becomes a text node.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// `text` with [start, end) marked, e.g. a citation's quote inside its chunk.
export function highlighted(text, start, end) {
  if (start == null || end == null || start < 0 || end <= start) return [text];
  return [text.slice(0, start), h("mark", {}, text.slice(start, end)), text.slice(end)];
}

export const fmt = {
  int: (n) => (n == null ? "—" : Number(n).toLocaleString("en-US")),
  score: (x, digits = 3) => (x == null ? "—" : Number(x).toFixed(digits)),
  ms: (x) => (x == null ? "—" : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`),
  seconds: (x) => (x == null ? "—" : `${Number(x).toFixed(2)} s`),
  bytes(n) {
    if (n == null) return "—";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  when: (iso) => (iso ? iso.replace("T", " ").replace(/\.\d+Z$/, " UTC") : "—"),
  minute: (iso) => (iso ? iso.slice(0, 16).replace("T", " ") : "—"), // UTC, to the minute: for dense tables
};

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" },
    h("code", {}, err.code || "error"), " ", err.message || String(err));
}

export function link(href, ...children) {
  return h("a", { href, dataset: { nav: "1" } }, ...children);
}

// What a document's pages are, by its file name: a spreadsheet's sheets, a deck's slides, else pages
// (the parsers make each sheet and each slide a page).
export function pageUnit(filename) {
  const ext = (filename || "").toLowerCase().split(".").pop();
  return ["xlsx", "xlsm"].includes(ext) ? "sheet" : ["pptx", "pptm"].includes(ext) ? "slide" : "page";
}
