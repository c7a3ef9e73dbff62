// Search playground: hybrid retrieval with no model call; each retriever's ranking beside the fused one.

import { api } from "./api.js";
import { collectionPicker } from "./ask.js";
import { clear, errorBox, fmt, h } from "./dom.js";

export async function searchView(selected) {
  const pick = await collectionPicker(selected);
  const query = h("input", { id: "query", name: "query", required: true, maxlength: 4000, placeholder: "search text" });
  const k = h("input", { type: "number", name: "k", min: 1, max: 100, value: 10, class: "budget" });
  const out = h("div", { id: "search-result" });
  const form = h("form", { class: "row", onsubmit: async (e) => {
    e.preventDefault();
    try { clear(out, results(await api.search(pick.value, query.value, Number(k.value)))); } catch (err) { clear(out, errorBox(err)); }
  } }, pick, query, h("label", {}, "k ", k), h("button", { type: "submit", id: "search-button" }, "Search"));
  return h("section", {}, h("h1", {}, "Search playground"),
    h("p", { class: "muted" }, "Retrieval only: no model call, no cost. Dense (embeddings) and BM25 rank separately; reciprocal-rank fusion merges them."), form, out);
}

function results(r) {
  const rows = r.results || [];
  // Each retriever's own top k, as it ranked them before fusion (not the fused top k's ranks, which skip).
  const mini = (title, id, own) => h("div", { class: "card", id }, h("h3", {}, title),
    own.length ? h("ol", {}, own.map((x) => h("li", { value: x.rank, dataset: { chunk: x.chunk_id } }, `#${x.chunk_id} · ${fmt.score(x.score)} · ${x.filename}`)))
      : h("p", { class: "muted" }, "No hits."));
  return h("div", {},
    h("p", { class: "muted" }, `${rows.length} results in ${fmt.ms(r.took_ms)}`,
      r.lexical ? "" : " · BM25 off", r.lexical_skipped ? ` · BM25 skipped: ${r.lexical_skipped}` : ""),
    h("div", { class: "split three" }, mini("Dense ranking", "dense-ranking", r.dense || []), mini("BM25 ranking", "bm25-ranking", r.bm25 || []),
      h("div", { class: "card" }, h("h3", {}, "Fused"), h("ol", {}, rows.map((x) => h("li", {}, `#${x.chunk_id} · ${fmt.score(x.scores.fused, 4)}`))))),
    h("div", { class: "scroll" }, h("table", { class: "grid", id: "search-table" },
      h("thead", {}, h("tr", {}, ["Fused", "Chunk", "Source", "Dense rank · score", "BM25 rank · score", "Fused score", "Text"].map((x) => h("th", {}, x)))),
      h("tbody", {}, rows.map((x) => h("tr", { dataset: { chunk: x.chunk_id } },
        h("td", { class: "num" }, x.rank), h("td", { class: "num" }, `#${x.chunk_id}`),
        h("td", {}, `${x.filename}${x.page ? `, p. ${x.page}` : ""}${x.section_path.length ? ` · ${x.section_path.join(" › ")}` : ""}`),
        h("td", { class: "num" }, x.scores.dense_rank ? `${x.scores.dense_rank} · ${fmt.score(x.scores.dense)}` : "—"),
        h("td", { class: "num" }, x.scores.bm25_rank ? `${x.scores.bm25_rank} · ${fmt.score(x.scores.bm25)}` : "—"),
        h("td", { class: "num" }, fmt.score(x.scores.fused, 4)),
        h("td", { class: "text" }, x.text.length > 400 ? `${x.text.slice(0, 400)}…` : x.text)))))));
}
