// Chat: a collection's conversations, and the selected one's turns. A turn is an ordinary question
// (the same stream, answer, citations and trace as the Ask page, whose pieces it reuses); follow-ups
// go to the same conversation, so the server answers them with the earlier turns as history.

import { api } from "./api.js";
import { navigate } from "./app.js"; // a cycle (app.js routes here) that is safe: used only after both loaded
import { answerNotes, collectionPicker, streamAnswer } from "./ask.js";
import { answerWithMarkers, openCitation } from "./citations.js";
import { clear, errorBox, fmt, h, link } from "./dom.js";
import { label } from "./words.js";

const COPIED_MS = 3000; // how long the copy button says "Copied"
const RUNNING_POLL_MS = 1000; // how often a running turn's question is read again

const chatHref = (collection, cid) =>
  `/chat?collection=${encodeURIComponent(collection)}${cid ? `&conversation=${encodeURIComponent(cid)}` : ""}`;

// Where the reader last was (this tab only): the Chat tab's bare /chat goes back there, so a turn
// left while it ran is found again; /chat?collection=NAME is a new conversation in NAME.
const LAST = "rag.chat";
const remember = (collection, cid) => sessionStorage.setItem(LAST, JSON.stringify({ collection, cid }));

export async function chatView(selected, cid) {
  const last = selected ? null : JSON.parse(sessionStorage.getItem(LAST) || "null");
  if (last) ({ collection: selected, cid } = last);
  const pick = await collectionPicker(selected);
  if (!pick.value) return h("section", {}, h("h1", {}, label("chat")), h("p", { class: "muted" }, label("noConversations")));
  pick.addEventListener("change", () => navigate(chatHref(pick.value)));
  const collection = pick.value;
  const conversation = cid ? await api.conversation(cid).catch((err) => {
    if (err.code === "conversation_not_found" && last) return null; // a remembered one, deleted since
    throw err;
  }) : null;

  const list = h("ul", { id: "conversations", class: "conversations" });
  const turns = h("ol", { id: "turns", class: "turns" });
  const panel = h("aside", { class: "passage", id: "passage", hidden: true });
  const open = (c) => openCitation(panel, collection, c);
  const input = h("textarea", { id: "chat-input", rows: 2, maxlength: 4000, placeholder: label("placeholder") });
  const send = h("button", { type: "submit", id: "send" }, label("send"));
  let current = conversation ? conversation.id : null;
  if (location.pathname === "/chat") history.replaceState(null, "", chatHref(collection, current)); // unless left already
  remember(collection, current);

  async function showList() {
    const items = await api.conversations(collection);
    clear(list, items.length ? items.map((c) => conversationItem(c, c.id === current, async () => {
      if (!confirm(label("confirmDelete", c.title || label("untitled")))) return;
      await api.deleteConversation(c.id);
      if (c.id === current) navigate(chatHref(collection));
      else showList();
    })) : h("li", { class: "muted" }, label("noConversations")));
  }

  async function ask(question) {
    if (!current) { // the first question of a new conversation names it
      current = (await api.createConversation(collection, question.slice(0, 80))).id;
      history.replaceState(null, "", chatHref(collection, current));
      remember(collection, current);
    }
    turns.querySelector(".empty")?.remove();
    const item = turnItem({ question, turn: turns.children.length });
    turns.append(item);
    const steps = h("ol", { class: "steps" });
    const stepsBox = h("details", { class: "turn-steps", open: true }, h("summary", {}, label("steps")), steps);
    item.querySelector(".notes").replaceWith(stepsBox, h("div", { class: "notes" }));
    item.scrollIntoView({ block: "nearest" });
    showList();
    try {
      const final = await streamAnswer((onEvent) => api.askTurn(current, { question }, onEvent), item.querySelector(".answer"), steps);
      stepsBox.open = false;
      finish(item, final, open);
    } catch (err) {
      item.querySelector(".notes").replaceChildren(errorBox(err));
    }
    showList();
  }

  const form = h("form", { id: "chat-form", class: "chat-form", onsubmit: async (e) => {
    e.preventDefault();
    const question = input.value.trim();
    if (!question || input.disabled) return;
    input.disabled = send.disabled = true; // one turn at a time: a follow-up needs the answer before it
    input.value = "";
    try { await ask(question); } finally {
      input.disabled = send.disabled = false;
      input.focus();
    }
  } }, input, send);
  // Enter sends, Shift+Enter makes a new line; Enter that confirms an input method's candidate (Chinese
  // typed with pinyin, say) does neither.
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter" || e.shiftKey || e.isComposing) return;
    e.preventDefault();
    form.requestSubmit();
  });

  for (const turn of conversation ? conversation.turns : []) turns.append(finish(turnItem(turn), turn, open));
  if (!turns.children.length) turns.append(h("li", { class: "empty muted" }, label("empty")));
  await showList();
  const fresh = h("button", { type: "button", id: "new-conversation", onclick: () => navigate(chatHref(collection)) },
    label("newConversation"));
  queueMicrotask(() => input.focus());

  return h("section", { class: "chat" },
    h("h1", {}, label("chat")),
    h("div", { class: "row" }, pick),
    h("div", { class: "chat-layout" },
      h("nav", { class: "card conversations-panel", "aria-label": label("conversations") }, fresh, list),
      h("div", { class: "chat-main" }, turns, panel, form)));
}

function conversationItem(c, active, remove) {
  return h("li", { class: active ? "active" : null, dataset: { conversation: c.id } },
    link(chatHref(c.collection, c.id), c.title || label("untitled")),
    h("span", { class: "muted" }, ` · ${label("turns", c.turns)} · ${fmt.minute(c.created_at)}`),
    h("button", { type: "button", class: "quiet danger delete-conversation", title: label("delete"), onclick: remove }, "×"));
}

// A turn's frame: the question, then the answer (filled while it streams) and what goes below it.
function turnItem(turn) {
  return h("li", { class: "turn", dataset: { turn: turn.turn } },
    h("p", { class: "q" }, turn.question),
    h("div", { class: "answer" }),
    h("div", { class: "notes" }));
}

// Shows a finished turn (a stored one from GET /v1/conversations/{id}, or a streamed one's final object):
// the answer with its citation markers, notes and cost, and the turn's actions.
function finish(item, turn, open) {
  item.dataset.question = turn.id;
  const answer = item.querySelector(".answer");
  const notes = item.querySelector(".notes");
  if (turn.answer == null) {
    clear(answer, h("em", {}, turn.error ? label("failed") : label("running")));
    clear(notes, turn.error ? errorBox(turn.error) : null);
    if (turn.status === "running") awaitTurn(item, turn.id, open);
    return item;
  }
  clear(answer, answerWithMarkers(turn.answer, turn.citations, open));
  const condensed = turn.standalone_question && turn.standalone_question !== turn.question;
  clear(notes, condensed ? h("p", { class: "muted standalone" }, label("asked", turn.standalone_question)) : null,
    answerNotes(turn, open), actions(turn));
  return item;
}

// A turn still running when the conversation was opened (asked before the reader left the page, and
// still answering): its answer is shown once the ledger has it, for as long as the turn is on screen.
async function awaitTurn(item, qid, open) {
  item.classList.add("running");
  for (let n = 0, shown = false; ; n++) {
    await new Promise((resolve) => setTimeout(resolve, RUNNING_POLL_MS));
    if (item.isConnected) shown = true;
    else if (shown || n > 30) return; // the reader moved on (or the view was never drawn)
    let q;
    try { q = await api.question(qid); } catch { return; }
    if (q.status !== "running") {
      item.classList.remove("running");
      finish(item, q, open);
      return;
    }
  }
}

function actions(turn) {
  const status = h("span", { class: "muted rate-status" });
  const given = (turn.feedback || []).at(-1);
  const rate = (rating, text, mark) => {
    const b = h("button", { type: "button", class: `quiet rate rate-${rating}`, title: text, "aria-label": text,
      "aria-pressed": String(given ? given.rating === rating : false), dataset: { rating } }, mark);
    b.addEventListener("click", async () => {
      try {
        await api.feedback(turn.id, { rating });
        for (const other of b.parentNode.querySelectorAll("button.rate")) other.setAttribute("aria-pressed", String(other === b));
        clear(status, label("rated"));
      } catch (err) { clear(status, errorBox(err)); }
    });
    return b;
  };
  const copy = h("button", { type: "button", class: "quiet copy", onclick: async () => {
    try {
      await navigator.clipboard.writeText(turn.answer);
      copy.dataset.state = "copied";
      copy.textContent = label("copied");
    } catch {
      copy.dataset.state = "failed";
      copy.textContent = label("copyFailed");
    }
    setTimeout(() => { delete copy.dataset.state; copy.textContent = label("copy"); }, COPIED_MS);
  } }, label("copy"));
  return h("div", { class: "turn-actions" },
    rate("up", label("helpful"), `▲ ${label("helpful")}`), rate("down", label("notHelpful"), `▼ ${label("notHelpful")}`), copy,
    h("a", { href: `/questions/${turn.id}`, class: "trace-link", dataset: { nav: "1" } }, label("trace")), status);
}
