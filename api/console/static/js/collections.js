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

  // One line per file: its bar, its state and a Cancel button while its job runs.
  function uploadItem(filename) {
    const bar = h("progress", { max: 1, value: 0 });
    const state = h("span", { class: "state" }, "uploading");
    const stop = h("button", { type: "button", class: "quiet cancel", hidden: true, onclick: async () => {
      stop.disabled = true;
      try { await api.cancelJob(item.dataset.job); } catch (err) { state.replaceChildren(errorBox(err)); }
    } }, "Cancel");
    const item = h("li", { class: "upload", dataset: { filename } },
      h("span", { class: "name" }, filename), bar, h("span", {}, state, " ", stop));
    uploads.prepend(item);
    return { item, bar, state, stop };
  }

  // A job that did not store its document: the bar full and red, the error's code and message.
  function showFailed(u, status, error) {
    u.item.dataset.status = status;
    u.item.classList.add("failed");
    u.bar.value = 1;
    u.stop.hidden = true;
    clear(u.state, error ? errorBox(error) : status);
  }

  async function track(u, jobId) {
    u.item.dataset.job = jobId;
    u.stop.hidden = false;
    const final = await follow(jobId, (j) => {
      const p = j.progress || {};
      u.bar.value = 0.2 + 0.8 * (p.fraction || 0);
      u.state.textContent = j.status === "running" ? `${p.stage || "running"}${p.chunks ? ` · ${p.chunks} chunks` : ""}` : j.status;
    });
    if (final.status !== "done") return showFailed(u, final.status, final.error);
    u.item.dataset.status = final.status;
    u.stop.hidden = true;
    u.bar.value = 1;
    u.state.textContent = final.progress && final.progress.duplicate ? "done (already in the collection)" : "done";
    await refresh();
  }

  async function uploadOne(file) {
    const u = uploadItem(file.name);
    try {
      const job = await api.upload(name, file, (f) => { u.bar.value = f * 0.2; });
      await track(u, job.id);
    } catch (err) {
      showFailed(u, "refused", err);
    }
  }

  // After a reload: the jobs that failed or still run (a done one is a document in the table below).
  async function recentJobs() {
    const jobs = await api.jobs(name, { limit: 50 });
    for (const j of jobs.reverse()) {  // oldest first: each is put on top
      if (j.status === "done") continue;
      const u = uploadItem(j.filename);
      u.item.dataset.job = j.id;
      if (["queued", "running"].includes(j.status)) track(u, j.id).catch((err) => showFailed(u, "failed", err));
      else showFailed(u, j.status, j.error);
    }
  }

  await Promise.all([refresh(), recentJobs()]);
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
