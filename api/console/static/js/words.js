// Trace events and costs in words: one line a person can read without knowing the JSON.

import { fmt } from "./dom.js";

const q = (s) => `“${s}”`;

function ids(list) {
  return (list || []).map((i) => `#${i}`).join(", ") || "none";
}

// Budget and stop names as the loop records them, in words (the raw name stays in a tooltip where shown).
const STOPS = {
  timeout_s: "the time limit",
  max_model_calls: "the model-call budget",
  max_prompt_tokens: "the prompt-token budget",
  max_rounds: "the round limit",
  max_answer_tokens: "the answer's token limit",
  max_new_tokens: "the call's token limit",
  eos: "the model's end of answer",
  stop: "a stop sequence",
};

export function stoppedBy(name) {
  return name ? STOPS[name] || String(name).replace(/_/g, " ") : "";
}

export function describe(e) {
  switch (e.type) {
    case "start":
      return `Question in ${e.language}; the collection is in ${(e.collection_languages || []).join(", ") || "no language yet"}; `
        + `key terms: ${((e.key_terms && e.key_terms.terms) || []).join(", ") || "none"}`;
    case "query":
      return `Round ${e.round}: search ${q(e.query)} (${e.origin}, ${e.language}, top ${e.k})`;
    case "candidates":
      return `${(e.dense || []).length} dense and ${(e.bm25 || []).length} BM25 hits for ${q(e.query)}`
        + (e.lexical_skipped ? ` (BM25 skipped: ${e.lexical_skipped})` : "");
    case "fused":
      return `Fused ${(e.candidates || []).length} candidates from ${e.queries} ${e.queries === 1 ? "query" : "queries"}`
        + ((e.duplicates || []).length ? `; ${(e.duplicates || []).length} duplicates removed` : "");
    case "decision":
      return `${e.step}: ${e.verdict || e.decision || ""}${e.reason ? ` — ${e.reason}` : ""}`;
    case "rewrite":
      return `Rewrite (${e.mode}): chose ${(e.chosen || []).map(q).join(", ") || "nothing"}`
        + ((e.skipped || []).length ? `; skipped ${(e.skipped || []).map((s) => `${q(s.query)} (${s.reason})`).join(", ")}` : "");
    case "query_skipped":
      return `Skipped query ${q(e.query)}: ${e.reason}`;
    case "selection":
      return `Selected ${ids(e.selected)}; not selected: `
        + ((e.not_selected || []).map((n) => `#${n.chunk_id} (${n.reason})`).join("; ") || "none");
    case "expansion":
      return `${e.added ? "Added" : "Did not add"} the ${e.side} neighbour #${e.chunk_id} of passage #${e.passage_of}: ${e.reason}`
        + (e.added ? ` (${fmt.int(e.total_tokens)} passage tokens)` : e.note ? ` — ${e.note}` : "");
    case "packing":
      return `Packed ${(e.kept || []).length} passages (${fmt.int(e.prompt_tokens)} prompt tokens of a ${fmt.int(e.window)}-token window)`
        + ((e.dropped || []).length ? `; dropped ${(e.dropped || []).length}` : "");
    case "context":
      return `Context: ${(e.passages || []).length} passages given to the answering call`;
    case "model_call_started":
      return `Model call #${e.n} (${e.purpose}) started, at most ${e.max_new_tokens} new tokens`;
    case "model_call":
      return `Model call #${e.n} (${e.purpose}): ${fmt.int(e.prompt_tokens)} prompt + ${fmt.int(e.completion_tokens)} completion tokens `
        + `in ${fmt.ms(e.wall_ms)}${e.stopped_by ? `, stopped by ${stoppedBy(e.stopped_by)}` : ""}${e.error ? ` — failed: ${e.error}` : ""}`;
    case "postprocess": {
      const removed = ["removed_markers", "removed_links", "removed_instructions", "removed_captions"]
        .map((k) => [k.replace("removed_", ""), (e[k] || []).length]).filter(([, n]) => n);
      return removed.length ? `Cleaned the answer: removed ${removed.map(([k, n]) => `${n} ${k}`).join(", ")}` : "Answer checked: nothing to clean";
    }
    case "attribution": {
      const s = e.sentences || [];
      return `Support: ${s.filter((x) => x.supported).length} of ${s.length} sentences found in the passages`
        + (s.some((x) => x.dropped) ? `; ${s.filter((x) => x.dropped).length} unsupported dropped` : "");
    }
    case "budget":
      return `${stoppedBy(e.budget).replace(/^the /, "").replace(/^./, (c) => c.toUpperCase())} (${e.budget === "timeout_s" ? `${e.limit} s` : e.limit}) reached: ${e.reason}`;
    case "answer":
      return e.abstained ? "Abstained: the documents do not say" : "Answer written";
    case "citations":
      return `${(e.citations || []).length} citations`;
    case "done":
      return `Done after ${e.rounds} ${e.rounds === 1 ? "round" : "rounds"}: ${costLine(e.usage)}`
        + (e.stopped_by ? `; stopped by ${stoppedBy(e.stopped_by)}` : "");
    case "error":
      return `Failed: ${e.code || ""} ${e.message || ""}`;
    default:
      return e.reason || "";
  }
}

// Why an answer is marked incomplete (`complete: false`), by its `incomplete_reason`.
const INCOMPLETE = {
  timeout_s: "cut at the question's deadline: only its whole sentences that the passages support are kept",
  max_answer_tokens: "cut at the answer's token limit: its unfinished last sentence is removed",
};

export function incompleteLine(r) {
  if (!r || r.complete !== false) return "";
  return `Incomplete answer: ${INCOMPLETE[r.incomplete_reason] || "the model call was cut"}`;
}

// What a reader must know beside an answer: not verified (no citation could be checked), or sentences
// of the model's answer removed as unsupported.
export function supportLines(r) {
  const out = [];
  if (r && r.verified === false) {
    const why = (r.support && r.support.why_unverified) || "no check could tie it to the passages";
    out.push(`Not verified: answered without citations (${why}).`);
  }
  if (r && r.dropped_sentences) {
    const n = r.dropped_sentences;
    out.push(`${n} sentence${n === 1 ? "" : "s"} of the model's answer removed: not supported by the passages.`);
  }
  return out;
}

export function costLine(u) {
  if (!u) return "";
  return `${u.model_calls} model ${u.model_calls === 1 ? "call" : "calls"} · ${fmt.int(u.prompt_tokens)} prompt + `
    + `${fmt.int(u.completion_tokens)} completion tokens · ${fmt.seconds(u.wall_seconds ?? u.seconds)}`;
}

// The chat's labels in the reader's language (the browser's first language: Chinese, else English).
const LABELS = {
  en: {
    chat: "Chat", conversations: "Conversations", newConversation: "New conversation", noConversations: "No conversations yet.",
    untitled: "Untitled", turns: (n) => `${n} ${n === 1 ? "turn" : "turns"}`, delete: "Delete",
    confirmDelete: (t) => `Delete the conversation “${t}”? Its questions stay in the ledger.`,
    empty: "Ask a question; follow-ups in this conversation see the earlier turns.",
    placeholder: "Ask, or follow up… (Enter sends, Shift+Enter makes a new line)", send: "Send",
    helpful: "Helpful", notHelpful: "Not helpful", rated: "Thanks: rating saved.",
    copy: "Copy answer", copied: "Copied", copyFailed: "Copy failed", trace: "Trace →", steps: "Steps",
    asked: (q) => `Asked as: ${q}`, running: "Still running: reload to see its answer.", failed: "failed",
  },
  zh: {
    chat: "对话", conversations: "对话列表", newConversation: "新对话", noConversations: "还没有对话。",
    untitled: "未命名", turns: (n) => `${n} 轮`, delete: "删除",
    confirmDelete: (t) => `删除对话“${t}”？其中的问题仍保留在记录中。`,
    empty: "提一个问题；同一对话中的追问会参考之前的问答。",
    placeholder: "提问或追问…（Enter 发送，Shift+Enter 换行）", send: "发送",
    helpful: "有帮助", notHelpful: "没帮助", rated: "谢谢：评价已保存。",
    copy: "复制回答", copied: "已复制", copyFailed: "复制失败", trace: "追踪 →", steps: "步骤",
    asked: (q) => `检索时改写为：${q}`, running: "仍在运行：刷新后可见回答。", failed: "失败",
  },
};

export const language = (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";

export function label(key, ...args) {
  const v = LABELS[language][key] ?? LABELS.en[key];
  return typeof v === "function" ? v(...args) : v;
}
