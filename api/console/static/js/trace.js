// One question's trace: what it cost, what was searched, which passages were chosen and why, the
// exact prompt and raw output of every model call, and a replay that shows what changed.

import { api } from "./api.js";
import { answerWithMarkers, citationList, openCitation } from "./citations.js";
import { clear, errorBox, fmt, h, link } from "./dom.js";
import { costLine, describe, incompleteLine, stoppedBy } from "./words.js";

export async function traceView(qid) {
  const [t, result, collections] = await Promise.all([api.trace(qid), api.question(qid), api.collections()]);
  // A question of a deleted collection can still be read, but not re-run: nothing to search.
  const gone = !collections.some((c) => c.name === t.collection);
  const panel = h("aside", { class: "passage", id: "passage", hidden: true });
  const open = (c) => openCitation(panel, t.collection, c);
  const replayOut = h("div", { id: "replay" });
  const replayButton = h("button", { type: "button", id: "replay-button", onclick: async () => {
    replayButton.disabled = true;
    clear(replayOut, h("p", { class: "muted" }, "Replaying with the recorded budget and options…"));
    try { clear(replayOut, diffView(await api.replay(qid))); } catch (err) { clear(replayOut, errorBox(err)); }
    replayButton.disabled = false;
  } }, "Replay and compare");

  return h("section", { class: "trace" },
    h("p", { class: "crumbs" }, link(`/collections/${encodeURIComponent(t.collection)}`, t.collection), " / question ", h("code", {}, qid)),
    h("h1", { id: "question-text" }, t.question),
    h("div", { class: "split" },
      h("div", {},
        h("div", { class: "answer", id: "answer" }, result.answer ? answerWithMarkers(result.answer, result.citations, open) : h("em", {}, result.error ? "failed" : "no answer")),
        result.error ? errorBox(result.error) : null,
        citationList(result.citations, open)),
      costCard(t, result)),
    panel,
    feedbackBox(qid, t.feedback || []),
    gone ? h("p", { class: "muted", id: "replay-gone" }, `No replay: the collection “${t.collection}” was deleted.`)
      : h("p", {}, replayButton),
    replayOut,
    h("h2", {}, "Timeline"),
    timeline(t),
    h("h2", {}, "Model calls"),
    callsTable(t),
    h("details", { class: "settings" }, h("summary", {}, "Budget, options and models as recorded"),
      h("pre", {}, JSON.stringify({ budget: t.budget, options: t.options, models: t.models }, null, 2))));
}

// Ratings of the answer (any key that may read the collection may add its own; a second one replaces it).
function feedbackBox(qid, given) {
  const list = h("ul", { class: "feedback-list", id: "feedback-list" });
  const show = (items) => clear(list, items.length
    ? items.map((f) => h("li", { dataset: { rating: f.rating } },
      h("strong", {}, f.rating === "up" ? "Helpful" : "Not helpful"), f.comment ? ` — ${f.comment}` : "",
      h("span", { class: "muted" }, ` · ${fmt.when(f.created_at)}`)))
    : h("li", { class: "muted" }, "No ratings yet."));
  show(given);
  const comment = h("input", { type: "text", id: "feedback-comment", maxlength: 2000, placeholder: "Why? (optional)" });
  const status = h("span", { id: "feedback-status", class: "muted" });
  const rate = (rating) => async () => {
    try {
      await api.feedback(qid, { rating, comment: comment.value });
      show((await api.trace(qid)).feedback || []);
      clear(status, "Saved.");
    } catch (err) { clear(status, errorBox(err)); }
  };
  return h("section", { class: "card feedback", id: "feedback" }, h("h3", {}, "Feedback"), list,
    h("p", { class: "row" },
      h("button", { type: "button", id: "rate-up", onclick: rate("up") }, "Helpful"),
      h("button", { type: "button", id: "rate-down", onclick: rate("down") }, "Not helpful"), comment, status));
}

function costCard(t, r) {
  const u = r.usage || {};
  const stopped = t.status === "interrupted" ? "the server answering it stopped before it ended (interrupted)"
    : stoppedBy(r.stopped_by) || (r.abstained ? "abstained" : r.error ? "error" : "answered within budget");
  return h("dl", { class: "card cost", id: "cost-card" },
    h("dt", {}, "Status"), h("dd", {}, t.status),
    h("dt", {}, "Model calls"), h("dd", {}, `${fmt.int(u.model_calls)} of ${t.budget.max_model_calls}`),
    h("dt", {}, "Prompt tokens"), h("dd", {}, `${fmt.int(u.prompt_tokens)} of ${fmt.int(t.budget.max_prompt_tokens)}`),
    h("dt", {}, "Completion tokens"), h("dd", {}, fmt.int(u.completion_tokens)),
    h("dt", {}, "Seconds"), h("dd", {}, fmt.seconds(u.wall_seconds ?? u.seconds)),
    h("dt", {}, "What stopped it"), h("dd", { id: "stopped-by" }, stopped),
    ...(r.complete === false ? [h("dt", {}, "Answer"), h("dd", { class: "incomplete", id: "incomplete" }, incompleteLine(r))] : []),
    h("dt", {}, "Models"), h("dd", {}, `${t.models.generator} (${t.models.generator_runtime || "?"}, ${t.models.generator_mode || "?"}) · ${t.models.embedder}`),
    h("dt", {}, "Cost line"), h("dd", {}, costLine(u)));
}

function timeline(t) {
  const events = t.events || [];
  const selection = [...events].reverse().find((e) => e.type === "selection");
  const packing = [...events].reverse().find((e) => e.type === "packing");
  const lastFused = [...events].reverse().find((e) => e.type === "fused");
  // Best rank of each chunk over the queries so far, and its best hybrid fused score (dense + BM25 by
  // RRF, the Search page's scale); the pool's own score (RRF over the queries' lists) is another scale.
  const ranks = { dense: new Map(), bm25: new Map(), fused: new Map() };
  return h("ol", { class: "timeline", id: "timeline" }, events.map((e) => {
    if (e.type === "candidates") {
      for (const kind of ["dense", "bm25"]) {
        for (const c of e[kind] || []) {
          const had = ranks[kind].get(c.chunk_id);
          if (!had || c.rank < had.rank) ranks[kind].set(c.chunk_id, c);
        }
      }
      for (const c of e.fused || []) ranks.fused.set(c.chunk_id, Math.max(ranks.fused.get(c.chunk_id) ?? 0, c.score));
    }
    return h("li", { class: `ev ev-${e.type}`, dataset: { type: e.type } },
      h("span", { class: "t" }, fmt.ms(e.t_ms)), h("span", { class: "type" }, e.type.replace(/_/g, " ")),
      h("span", { class: "what" }, describe(e)),
      detail(e, { ranks, selection: e === lastFused ? selection : null, packing: e === lastFused ? packing : null }));
  }));
}

function detail(e, ctx) {
  switch (e.type) {
    case "fused": return candidateTable(e, ctx);
    case "packing": return packingTable(e);
    case "context": return h("details", {}, h("summary", {}, "Passages"),
      (e.passages || []).map((p) => h("div", { class: "chunk" },
        h("div", { class: "chunk-head" }, `[${p.n}] ${p.filename}${p.page ? `, page ${p.page}` : ""} · chunks ${p.chunk_ids.join(", ")}`
          + (p.neighbour_ids && p.neighbour_ids.length ? ` (neighbours ${p.neighbour_ids.join(", ")})` : "") + ` · ${p.tokens} tokens`),
        h("p", {}, p.text))));
    case "model_call": return callDetail(e);
    case "decision": return e.signals ? h("details", {}, h("summary", {}, "Signals"), h("pre", {}, JSON.stringify(e.signals, null, 1))) : null;
    default: return null;
  }
}

function candidateTable(e, { ranks, selection, packing }) {
  const notSelected = new Map(((selection && selection.not_selected) || []).map((n) => [n.chunk_id, n.reason]));
  const selected = new Set((selection && selection.selected) || []);
  const dropped = new Map();
  for (const d of (packing && packing.dropped) || []) for (const id of d.chunk_ids || []) dropped.set(id, d.reason);
  const verdict = (id) => {
    if (!selection) return "";
    if (dropped.has(id)) return h("span", { class: "dropped" }, `selected, dropped in packing: ${dropped.get(id)}`);
    if (selected.has(id)) return h("span", { class: "selected" }, "selected");
    return h("span", { class: "dropped" }, notSelected.get(id) || `not selected (beyond the ${selected.size} taken)`);
  };
  const cell = (m, id) => { const c = m.get(id); return c ? `${c.rank} · ${fmt.score(c.score)}` : "—"; };
  return h("div", { class: "scroll" }, h("table", { class: "grid candidates" },
    h("thead", {}, h("tr", {}, ["Pool rank", "Chunk", "Source", "Dense rank · score", "BM25 rank · score"].map((x) => h("th", {}, x)),
      h("th", { title: "dense + BM25 fused by RRF, as on the Search page (best over the queries)" }, "Fused score"),
      h("th", { title: "RRF over the fused lists of every query: what orders this table" }, "Pool score"), h("th", {}, "Decision"))),
    h("tbody", {}, (e.candidates || []).map((c) => h("tr", { dataset: { chunk: c.chunk_id } },
      h("td", { class: "num" }, c.rank), h("td", { class: "num" }, `#${c.chunk_id}`),
      h("td", {}, `${c.filename}${c.page ? `, p. ${c.page}` : ""}`),
      h("td", { class: "num" }, cell(ranks.dense, c.chunk_id)), h("td", { class: "num" }, cell(ranks.bm25, c.chunk_id)),
      h("td", { class: "num fused" }, fmt.score(ranks.fused.get(c.chunk_id), 4)),
      h("td", { class: "num pool" }, fmt.score(c.score, 4)), h("td", {}, verdict(c.chunk_id)))))));
}

function packingTable(e) {
  return h("div", { class: "scroll" }, h("table", { class: "grid packing" },
    h("thead", {}, h("tr", {}, ["", "Passage", "Chunks", "Tokens", "Score", "Why"].map((x) => h("th", {}, x)))),
    h("tbody", {},
      (e.kept || []).map((p) => h("tr", { class: "kept" }, h("td", {}, "kept"), h("td", {}, `[${p.n}]`), h("td", {}, p.chunk_ids.join(", ")),
        h("td", { class: "num" }, fmt.int(p.tokens)), h("td", { class: "num" }, fmt.score(p.score, 4)), h("td", {}, p.truncated ? "truncated to fit" : ""))),
      (e.dropped || []).map((p) => h("tr", { class: "dropped" }, h("td", {}, "dropped"), h("td", {}, ""), h("td", {}, (p.chunk_ids || []).join(", ")),
        h("td", { class: "num" }, fmt.int(p.tokens)), h("td", { class: "num" }, fmt.score(p.score, 4)), h("td", {}, p.reason))))),
    (e.notes || []).length ? h("p", { class: "muted" }, e.notes.join("; ")) : null);
}

function callDetail(e) {
  const decode = e.prefill_ms != null && e.wall_ms != null ? e.wall_ms - e.prefill_ms : null;
  return h("details", { class: "call", dataset: { call: e.n } },
    h("summary", {}, `Prompt and raw output · prefill ${fmt.ms(e.prefill_ms)} · decode ${fmt.ms(decode)}`),
    h("h4", {}, `Exact prompt (${fmt.int(e.prompt_tokens)} tokens)`), h("pre", { class: "prompt" }, e.prompt || ""),
    h("h4", {}, `Raw output (${fmt.int(e.completion_tokens)} tokens)`), h("pre", { class: "output" }, e.output || ""));
}

function callsTable(t) {
  const started = new Map((t.events || []).filter((e) => e.type === "model_call").map((e) => [e.n, e]));
  if (!(t.calls || []).length) return h("p", { class: "muted" }, "No model call: the question was answered or refused without one.");
  return h("div", { class: "scroll" }, h("table", { class: "grid", id: "calls" },
    h("thead", {}, h("tr", {}, ["#", "Purpose", "Model", "Runtime", "Prompt", "Completion", "Cached", "Prefill", "Decode", "Total", "Stopped by"].map((x) => h("th", {}, x)))),
    h("tbody", {}, t.calls.map((c) => {
      const e = started.get(c.n) || {};
      const decode = e.prefill_ms != null ? c.wall_ms - e.prefill_ms : null;
      return h("tr", {}, h("td", {}, c.n), h("td", {}, c.purpose), h("td", {}, c.model_id), h("td", {}, c.runtime || "—"),
        h("td", { class: "num" }, fmt.int(c.prompt_tokens)), h("td", { class: "num" }, fmt.int(c.completion_tokens)),
        h("td", { class: "num" }, fmt.int(c.cached_prompt_tokens)), h("td", { class: "num" }, fmt.ms(e.prefill_ms)),
        h("td", { class: "num" }, fmt.ms(decode)), h("td", { class: "num" }, fmt.ms(c.wall_ms)), h("td", { title: e.stopped_by || "" }, stoppedBy(e.stopped_by) || (c.error ? "error" : "—")));
    }))));
}

function show(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function diffView(r) {
  const head = r.identical
    ? h("p", { class: "same", id: "replay-verdict" }, "No difference: the replay gave the same answer, citations, queries, candidates, context and cost.")
    : h("p", { class: "changed", id: "replay-verdict" }, `${r.changes.filter((c) => c.changed).length} of ${r.changes.length} aspects changed.`);
  return h("div", { class: "diff" }, head,
    r.note ? h("p", { class: "muted" }, r.note) : null,
    h("table", { class: "grid" },
      h("thead", {}, h("tr", {}, h("th", {}, "Aspect"), h("th", {}, "Recorded"), h("th", {}, "Replay "), h("th", {}, link(`/questions/${r.id}`, "open its trace")))),
      h("tbody", {}, r.changes.map((c) => h("tr", { class: c.changed ? "changed" : "same", dataset: { aspect: c.aspect } },
        h("td", {}, c.aspect), h("td", {}, h("pre", {}, show(c.before))), h("td", { colspan: 2 }, h("pre", {}, show(c.after))))))));
}
