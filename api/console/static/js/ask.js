// Ask: the answer streams in while the loop's steps appear; then citations open their passages.

import { api } from "./api.js";
import { answerWithMarkers, citationList, openCitation } from "./citations.js";
import { clear, errorBox, fmt, h, link } from "./dom.js";
import { costLine, describe, incompleteLine, stoppedBy, supportLines } from "./words.js";

// The budget a question may spend; empty fields take the server's defaults (which are also ceilings).
const BUDGET = [
  ["max_model_calls", "Model calls", 1, 1],
  ["max_prompt_tokens", "Prompt tokens", 1, 100],
  ["max_rounds", "Search rounds", 1, 1],
  ["timeout_s", "Seconds", 1, 1],
];

// Runs `start(onEvent)` (a streamed question or conversation turn), showing each step in `steps` and
// the tokens in `answer` as they come; resolves with the final answer object. The answer's
// `data-tokens` is how many characters streamed in (tests compare it with the final text).
export async function streamAnswer(start, answer, steps) {
  let tokens = "";
  answer.classList.add("streaming");
  try {
    return await start((name, data) => {
      if (name === "step") steps.append(h("li", { class: `ev ev-${data.type}` }, h("span", { class: "t" }, fmt.ms(data.t_ms)), " ", describe(data)));
      if (name === "token") { tokens += data.text; answer.textContent = tokens; }
    });
  } finally {
    answer.classList.remove("streaming");
    answer.dataset.tokens = String(tokens.length);
  }
}

// What a reader must know below an answer: incomplete, unsupported sentences, the citations, the cost.
// `ids`: the Ask page's one answer has element ids; a conversation's many turns do not.
export function answerNotes(final, open, { ids = false } = {}) {
  return [
    final.complete === false ? h("p", { class: "incomplete", id: ids ? "incomplete" : null }, incompleteLine(final)) : null,
    ...supportLines(final).map((line) => h("p", { class: "unverified" }, line)),
    citationList(final.citations, open),
    h("p", { class: "cost", id: ids ? "cost" : null }, costLine(final.usage),
      final.stopped_by ? ` · stopped by ${stoppedBy(final.stopped_by)}` : ""),
  ];
}

export async function collectionPicker(selected) {
  const collections = await api.collections();
  const pick = h("select", { name: "collection", id: "collection", required: true },
    collections.map((c) => h("option", { value: c.name, selected: c.name === selected }, `${c.name} (${c.document_count} documents)`)));
  return pick;
}

export async function askView(selected) {
  const [pick, limits] = await Promise.all([collectionPicker(selected), api.budgetLimits()]);
  const question = h("textarea", { id: "question", name: "question", rows: 2, required: true, maxlength: 4000,
    placeholder: "Ask about the documents in this collection… 也可以用中文提问" });
  // Empty: the server's limit, which is also its default (shown, so a reader knows what "default" means).
  const budget = BUDGET.map(([name, label, min, step]) =>
    h("label", {}, label, h("input", { type: "number", name, min, step, class: "budget", max: limits[name],
      placeholder: limits[name] !== undefined ? `${limits[name]} (limit)` : "default",
      title: limits[name] !== undefined ? `This server's limit and default: ${limits[name]}` : null })));
  const go = h("button", { type: "submit", id: "ask" }, "Ask");
  const out = h("div", { id: "result" });
  const form = h("form", { class: "ask", onsubmit: async (e) => {
    e.preventDefault();
    go.disabled = true;
    try { await run(); } finally { go.disabled = false; }
  } }, h("div", { class: "row" }, pick, question, go), h("details", { class: "budget" }, h("summary", {}, "Budget"), budget));

  async function run() {
    const body = { question: question.value };
    const b = Object.fromEntries(budget.map((l) => l.querySelector("input")).filter((i) => i.value).map((i) => [i.name, Number(i.value)]));
    if (Object.keys(b).length) body.budget = b;
    const steps = h("ol", { class: "steps", id: "steps" });
    const answer = h("div", { class: "answer streaming", id: "answer" });
    const tail = h("div");
    const panel = h("aside", { class: "passage", id: "passage", hidden: true });
    clear(out, h("div", { class: "split" }, h("div", {}, h("h2", {}, "Answer"), answer, tail),
      h("div", {}, h("h2", {}, "Steps"), steps)), panel);
    try {
      const final = await streamAnswer((onEvent) => api.ask(pick.value, body, onEvent), answer, steps);
      const open = (c) => openCitation(panel, pick.value, c);
      clear(answer, answerWithMarkers(final.answer, final.citations, open));
      clear(tail, answerNotes(final, open, { ids: true }),
        h("p", {}, link(`/questions/${final.id}`, "Why did it say that? Open the trace →")));
    } catch (err) {
      clear(tail, errorBox(err));
    }
  }

  return h("section", {}, h("h1", {}, "Ask"), form, out);
}
