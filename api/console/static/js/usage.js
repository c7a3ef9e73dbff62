// Usage: questions, model calls and tokens per day and per collection; the most expensive questions.

import { api } from "./api.js";
import { fmt, h, link } from "./dom.js";

const COLORS = { questions: "#2f6fb3", calls: "#d9822b", prompt: "#5b8c5a", completion: "#a05195" };

function chart(canvas, config) {
  // Chart.js is vendored (static/vendor) and loaded as a classic script before the modules run.
  return new window.Chart(canvas, {
    ...config,
    options: { animation: false, responsive: true, maintainAspectRatio: false, plugins: { legend: { position: "bottom" } }, ...config.options },
  });
}

function since(days) {
  const d = new Date(Date.now() - (days - 1) * 86400e3);
  return d.toISOString().slice(0, 10);
}

export async function usageView() {
  const days = Number(new URLSearchParams(location.search).get("days") || 30);
  const start = since(days);
  const [perDay, perCollection, costly, recent] = await Promise.all([
    api.usage({ group_by: "day" }),
    api.usage({ group_by: "collection" }),
    api.questions({ order: "tokens", since: start, limit: 10 }),
    api.questions({ limit: 20 }),
  ]);
  const daysShown = perDay.filter((r) => r.day >= start).reverse();
  const totals = daysShown.reduce((t, r) => ({
    questions: t.questions + r.questions, calls: t.calls + r.model_calls,
    prompt: t.prompt + r.prompt_tokens, completion: t.completion + r.completion_tokens,
    up: t.up + (r.feedback_up || 0), down: t.down + (r.feedback_down || 0),
  }), { questions: 0, calls: 0, prompt: 0, completion: 0, up: 0, down: 0 });

  const dayCanvas = h("canvas", { id: "chart-day" });
  const tokenCanvas = h("canvas", { id: "chart-tokens" });
  const collCanvas = h("canvas", { id: "chart-collection" });
  const root = h("section", { class: "usage" },
    h("h1", {}, "Usage"),
    h("p", { class: "actions" }, "Period: ", [7, 30, 90].map((d) => [link(`/usage?days=${d}`, d === days ? h("strong", {}, `${d} days`) : `${d} days`), " "])),
    h("p", { class: "totals", id: "totals" },
      `Last ${days} days: ${fmt.int(totals.questions)} questions · ${fmt.int(totals.calls)} model calls · `
      + `${fmt.int(totals.prompt)} prompt + ${fmt.int(totals.completion)} completion tokens · `
      + `rated ${fmt.int(totals.up)} helpful, ${fmt.int(totals.down)} not helpful`),
    h("div", { class: "split" },
      h("div", { class: "chart" }, h("h3", {}, "Questions and model calls per day"), dayCanvas),
      h("div", { class: "chart" }, h("h3", {}, "Tokens per day"), tokenCanvas)),
    h("div", { class: "chart wide" }, h("h3", {}, "Tokens per collection (all time)"), collCanvas),
    h("h2", {}, `Most expensive questions, last ${days} days`), questionTable(costly, "costly"),
    h("h2", {}, "Recent questions"), questionTable(recent, "recent"));

  // Charts need their canvas in the document to size themselves: draw on the next frame.
  requestAnimationFrame(() => {
    const labels = daysShown.map((r) => r.day);
    chart(dayCanvas, { type: "bar", data: { labels, datasets: [
      { label: "questions", data: daysShown.map((r) => r.questions), backgroundColor: COLORS.questions },
      { label: "model calls", data: daysShown.map((r) => r.model_calls), backgroundColor: COLORS.calls },
    ] } });
    chart(tokenCanvas, { type: "bar", data: { labels, datasets: [
      { label: "prompt tokens", data: daysShown.map((r) => r.prompt_tokens), backgroundColor: COLORS.prompt },
      { label: "completion tokens", data: daysShown.map((r) => r.completion_tokens), backgroundColor: COLORS.completion },
    ] }, options: { scales: { x: { stacked: true }, y: { stacked: true } } } });
    chart(collCanvas, { type: "bar", data: { labels: perCollection.map((r) => r.collection), datasets: [
      { label: "prompt tokens", data: perCollection.map((r) => r.prompt_tokens), backgroundColor: COLORS.prompt },
      { label: "completion tokens", data: perCollection.map((r) => r.completion_tokens), backgroundColor: COLORS.completion },
    ] }, options: { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } } });
  });
  return root;
}

function questionTable(questions, id) {
  if (!questions.length) return h("p", { class: "muted" }, "No questions in this period.");
  return h("div", { class: "scroll" }, h("table", { class: "grid", id: `questions-${id}` },
    h("thead", {}, h("tr", {}, ["Asked (UTC)", "Collection", "Question", "Status"].map((x) => h("th", {}, x)),
      ["Calls", "Tokens", "Seconds"].map((x) => h("th", { class: "num" }, x)), h("th", {}, "Feedback"))),
    h("tbody", {}, questions.map((q) => h("tr", {},
      h("td", { class: "when", title: fmt.when(q.created_at) }, fmt.minute(q.created_at)), h("td", {}, q.collection),
      h("td", {}, link(`/questions/${q.id}`, q.question)),
      h("td", {}, h("span", { class: `status ${q.status}` }, q.abstained ? "abstained" : q.status)),
      h("td", { class: "num" }, fmt.int(q.usage.model_calls)),
      h("td", { class: "num" }, fmt.int(q.usage.prompt_tokens + q.usage.completion_tokens)),
      h("td", { class: "num" }, fmt.seconds(q.usage.seconds)),
      h("td", { class: "feedback" }, feedbackCounts(q.feedback)))))));
}

function feedbackCounts(f) {
  if (!f || (!f.up && !f.down)) return "—";
  return [f.up ? h("span", { class: "up", title: "helpful" }, `+${f.up}`) : null, " ",
    f.down ? h("span", { class: "down", title: "not helpful" }, `−${f.down}`) : null];
}
