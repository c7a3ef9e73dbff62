// An answer with clickable citation markers, and a citation opened in its chunk and neighbours
// with the quoted words highlighted.

import { api } from "./api.js";
import { clear, errorBox, h, highlighted, pageUnit } from "./dom.js";

const MIN_PIECE = 12; // shortest piece of a quote worth marking at a chunk's edge

// Where `quote` sits in `text`: the whole quote, or the part of it that starts or ends this chunk
// (a quote may run across two chunks).
export function quoteSpan(text, quote) {
  if (!quote) return null;
  const at = text.indexOf(quote);
  if (at >= 0) return [at, at + quote.length];
  for (let n = quote.length - 1; n >= MIN_PIECE; n--) {
    if (text.endsWith(quote.slice(0, n))) return [text.length - n, text.length];
    if (text.startsWith(quote.slice(quote.length - n))) return [0, n];
  }
  return quote.includes(text.trim()) && text.trim() ? [0, text.length] : null;
}

// The answer text with each [n] turned into a button that opens citation n.
export function answerWithMarkers(answer, citations, open) {
  const byN = new Map((citations || []).map((c) => [c.n, c]));
  const parts = [];
  let last = 0;
  for (const m of answer.matchAll(/\[(\d+)\]/g)) {
    const c = byN.get(Number(m[1]));
    if (!c) continue;
    parts.push(answer.slice(last, m.index),
      h("button", { type: "button", class: "marker", title: `${c.filename}${c.page ? `, ${pageUnit(c.filename)} ${c.page}` : ""}`, onclick: () => open(c) }, `[${c.n}]`));
    last = m.index + m[0].length;
  }
  parts.push(answer.slice(last));
  return parts;
}

export function citationList(citations, open) {
  return h("ol", { class: "citations" }, (citations || []).map((c) =>
    h("li", { value: c.n },
      h("button", { type: "button", class: "link citation", dataset: { n: c.n }, onclick: () => open(c) },
        `${c.filename}${c.page ? `, ${pageUnit(c.filename)} ${c.page}` : ""}`),
      h("blockquote", {}, c.quote || ""))));
}

// Opens citation `c` of a question in `collection` into `panel`.
export async function openCitation(panel, collection, c) {
  clear(panel, h("p", { class: "muted" }, "Loading the passage…"));
  panel.hidden = false;
  panel.scrollIntoView({ block: "nearest" }); // it opens below the answer: often off screen
  try {
    const shown = await Promise.all((c.chunk_ids || []).map((id) => api.chunkInContext(collection, id, 1)));
    const seen = new Set();
    const blocks = [];
    for (const ctx of shown) {
      for (const chunk of [...ctx.before, ctx.chunk, ...ctx.after]) {
        if (seen.has(chunk.id)) continue;
        seen.add(chunk.id);
        const cited = (c.chunk_ids || []).includes(chunk.id);
        blocks.push(h("div", { class: cited ? "chunk cited" : "chunk neighbour", dataset: { chunk: chunk.id } },
          h("div", { class: "chunk-head" }, `chunk #${chunk.id}${chunk.page ? ` · ${pageUnit(c.filename)} ${chunk.page}` : ""}`
            + `${chunk.section_path && chunk.section_path.length ? ` · ${chunk.section_path.join(" › ")}` : ""}`
            + (cited ? " · cited" : " · neighbour")),
          h("p", {}, cited ? highlighted(chunk.text, ...(quoteSpan(chunk.text, c.quote) || [])) : chunk.text)));
      }
    }
    blocks.sort((a, b) => Number(a.dataset.chunk) - Number(b.dataset.chunk));
    const doc = shown[0] && shown[0].document;
    clear(panel,
      h("div", { class: "panel-head" },
        h("strong", {}, `[${c.n}] ${c.filename}`), c.page ? ` · ${pageUnit(c.filename)} ${c.page}` : "", doc && doc.title ? ` · ${doc.title}` : "",
        h("button", { type: "button", class: "quiet close", onclick: () => { panel.hidden = true; } }, "Close")),
      blocks);
    panel.scrollIntoView({ block: "nearest" }); // now at its full height
  } catch (err) {
    clear(panel, errorBox(err));
  }
}
