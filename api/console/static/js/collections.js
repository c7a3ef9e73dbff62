// Collections and their documents: create, delete, upload by drag-and-drop with per-file progress.

import { api } from "./api.js";
import { clear, errorBox, fmt, h, link, pageUnit } from "./dom.js";

export async function collectionsView() {
  const rows = h("tbody");
  const root = h("section", {},
    h("h1", {}, "Collections"),
    h("div", { class: "scroll" }, h("table", { class: "grid", id: "collections" },
      h("thead", {}, h("tr", {}, ["Name", "Description", "Documents", "Chunks", "Embedder", "Created", ""].map((t) => h("th", {}, t)))),
      rows)),
    createForm());

  async function refresh() {
    const collections = await api.collections();
    clear(rows, collections.length ? collections.map(row) : h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No collections yet.")));
  }

  function row(c) {
    const del = h("button", { class: "danger quiet", type: "button", onclick: async () => {
      if (!confirm(`Delete collection “${c.name}” with its ${c.document_count} documents?`)) return;
      try { await api.deleteCollection(c.name); await refresh(); } catch (err) { del.replaceWith(errorBox(err)); }
    } }, "Delete");
    return h("tr", { dataset: { collection: c.name } },
      h("td", {}, link(`/collections/${encodeURIComponent(c.name)}`, c.name)),
      h("td", {}, c.description),
      h("td", { class: "num" }, fmt.int(c.document_count)),
      h("td", { class: "num" }, fmt.int(c.chunk_count)),
      h("td", {}, c.embed_model || "—"),
      h("td", {}, fmt.when(c.created_at)),
      h("td", {}, del));
  }

  function createForm() {
    const name = h("input", { name: "name", required: true, placeholder: "name (letters, digits, . - _)", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}" });
    const description = h("input", { name: "description", placeholder: "description (optional)" });
    const status = h("div");
    return h("form", { class: "inline", id: "create-collection", onsubmit: async (e) => {
      e.preventDefault();
      clear(status);
      try {
        await api.createCollection(name.value, description.value);
        name.value = description.value = "";
        await refresh();
      } catch (err) { clear(status, errorBox(err)); }
    } }, h("h2", {}, "New collection"), name, description, h("button", { type: "submit" }, "Create"), status);
  }

  await refresh();
  return root;
}

export async function documentsView(name) {
  const rows = h("tbody");
  const uploads = h("ul", { class: "uploads", id: "uploads" });
  const picker = h("input", { type: "file", multiple: true, id: "file-input", onchange: () => { uploadAll([...picker.files]); picker.value = ""; } });
  const drop = h("div", { class: "drop", id: "drop" },
    h("p", {}, "Drop files here (PDF, Word, Excel, CSV, PowerPoint, EPUB, e-mail, images (OCR), text, Markdown, HTML) or "), h("label", { class: "button" }, "choose files", picker));
  for (const kind of ["dragenter", "dragover"]) drop.addEventListener(kind, (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadAll([...e.dataTransfer.files]); });

  const root = h("section", {},
    h("p", { class: "crumbs" }, link("/", "Collections"), " / "),
    h("h1", {}, name),
    h("p", { class: "actions" },
      link(`/ask?collection=${encodeURIComponent(name)}`, "Ask this collection"), " · ",
      link(`/search?collection=${encodeURIComponent(name)}`, "Search playground")),
    drop, uploads,
    h("h2", {}, "Documents"),
    h("div", { class: "scroll" }, h("table", { class: "grid", id: "documents" },
      h("thead", {}, h("tr", {}, ["File", "Status", "Language", "Pages / sheets / slides", "Chunks", "Size", "Added", ""].map((t) => h("th", {}, t)))),
      rows)));

  async function refresh() {
    const docs = await api.documents(name);
    clear(rows, docs.length ? docs.map(row) : h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No documents yet: drop some above.")));
  }

  function row(d) {
    const del = h("button", { class: "danger quiet", type: "button", onclick: async () => {
      if (!confirm(`Delete “${d.filename}”?`)) return;
      try { await api.deleteDocument(name, d.id); await refresh(); } catch (err) { del.replaceWith(errorBox(err)); }
    } }, "Delete");
    return h("tr", { dataset: { document: d.id } },
      h("td", { title: d.title || "" }, d.filename),
      h("td", {}, h("span", { class: `status ${d.status}` }, d.status)),
      h("td", {}, d.language || "—"),
      h("td", { class: "num" }, d.page_count ? fmt.int(d.page_count) + (pageUnit(d.filename) === "page" ? "" : ` ${pageUnit(d.filename)}s`) : "—"),
      h("td", { class: "num" }, fmt.int(d.chunk_count)),
      h("td", { class: "num" }, fmt.bytes(d.size_bytes)),
      h("td", {}, fmt.when(d.created_at)),
      h("td", {}, del));
  }

  function uploadAll(files) {
    for (const file of files) uploadOne(file);
  }

  async function uploadOne(file) {
    const bar = h("progress", { max: 1, value: 0 });
    const state = h("span", { class: "state" }, "uploading");
    const stop = h("button", { type: "button", class: "quiet cancel", hidden: true, onclick: async () => {
      stop.disabled = true;
      try { await api.cancelJob(item.dataset.job); } catch (err) { state.replaceChildren(errorBox(err)); }
    } }, "Cancel");
    const item = h("li", { class: "upload", dataset: { filename: file.name } },
      h("span", { class: "name" }, file.name), bar, h("span", {}, state, " ", stop));
    uploads.prepend(item);
    try {
      const job = await api.upload(name, file, (f) => { bar.value = f * 0.2; });
      item.dataset.job = job.id;
      stop.hidden = false;
      const final = await follow(job.id, (j) => {
        const p = j.progress || {};
        bar.value = 0.2 + 0.8 * (p.fraction || 0);
        state.textContent = j.status === "running" ? `${p.stage || "running"}${p.chunks ? ` · ${p.chunks} chunks` : ""}` : j.status;
      });
      item.dataset.status = final.status;
      stop.hidden = true;
      if (final.status === "done") {
        bar.value = 1;
        state.textContent = final.progress && final.progress.duplicate ? "done (already in the collection)" : "done";
        await refresh();
      } else {
        item.classList.add("failed");
        clear(state, final.error ? errorBox(final.error) : final.status);
      }
    } catch (err) {
      item.dataset.status = "refused";
      item.classList.add("failed");
      clear(state, errorBox(err));
    }
  }

  await refresh();
  return root;
}

async function follow(jobId, onUpdate) {
  for (;;) {
    const job = await api.job(jobId);
    onUpdate(job);
    if (!["queued", "running"].includes(job.status)) return job;
    await new Promise((r) => setTimeout(r, 400));
  }
}
