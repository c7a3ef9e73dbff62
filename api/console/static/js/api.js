// All wire access of the console: the same public /v1 API any client uses, nothing private.
// The API key lives in sessionStorage only (gone when the tab closes) and goes out as a Bearer header.

const KEY = "rag.apiKey";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export const auth = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key.trim()),
  clear: () => sessionStorage.removeItem(KEY),
};

function headers(extra = {}) {
  const key = auth.get();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: keep the status */ }
  const e = body && body.error;
  if (response.status === 401) window.dispatchEvent(new CustomEvent("rag:unauthorized"));
  return new ApiError(response.status, e ? e.code : `http_${response.status}`,
    e ? e.message : response.statusText || `HTTP ${response.status}`, e && e.details);
}

async function call(method, path, { json, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  const init = { method, headers: headers(json !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (json !== undefined) init.body = JSON.stringify(json);
  const response = await fetch(url, init);
  if (!response.ok) throw await errorOf(response);
  return response.status === 204 ? null : response.json();
}

const enc = encodeURIComponent;

// Reads one Server-Sent Events stream from a POST (EventSource can only GET) and calls
// onEvent(name, data) for each event, in order.
async function readSSE(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// POSTs a question body with `stream: true` to `path` and reads its events (see `api.ask`).
async function streamed(path, body, onEvent = () => {}) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!response.ok) throw await errorOf(response);
  let final = null;
  let failure = null;
  await readSSE(response, (name, data) => {
    if (name === "final") final = data;
    if (name === "error") failure = new ApiError(200, data.error.code, data.error.message);
    onEvent(name, data);
  });
  if (failure) throw failure;
  if (!final) throw new ApiError(0, "stream_ended", "the answer stream ended before the final answer");
  return final;
}

export const api = {
  health: () => call("GET", "/health"),

  collections: () => call("GET", "/v1/collections").then((r) => r.collections),
  createCollection: (name, description = "") => call("POST", "/v1/collections", { json: { name, description } }),
  deleteCollection: (name) => call("DELETE", `/v1/collections/${enc(name)}`),

  documents: (c) => call("GET", `/v1/collections/${enc(c)}/documents`).then((r) => r.documents),
  deleteDocument: (c, id) => call("DELETE", `/v1/collections/${enc(c)}/documents/${id}`),
  chunkInContext: (c, chunkId, neighbours = 1) =>
    call("GET", `/v1/collections/${enc(c)}/chunks/${chunkId}`, { query: { neighbours } }),
  job: (id) => call("GET", `/v1/jobs/${enc(id)}`),
  jobs: (c, query = {}) => call("GET", `/v1/collections/${enc(c)}/jobs`, { query }).then((r) => r.jobs),
  cancelJob: (id) => call("DELETE", `/v1/jobs/${enc(id)}`),

  // One file per request, so each file has its own upload progress (XMLHttpRequest reports it; fetch does not).
  upload(c, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", `/v1/collections/${enc(c)}/documents`);
      for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
      xhr.onerror = () => reject(new ApiError(0, "network_error", "the upload did not reach the server"));
      xhr.onload = () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch { /* keep null */ }
        if (xhr.status === 202) return resolve(body.jobs[0]);
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("rag:unauthorized"));
        const e = body && body.error;
        reject(new ApiError(xhr.status, e ? e.code : `http_${xhr.status}`, e ? e.message : xhr.statusText));
      };
      const form = new FormData();
      form.append("files", file, file.name);
      xhr.send(form);
    });
  },

  search: (c, query, k = 10) => call("POST", `/v1/collections/${enc(c)}/search`, { json: { query, k } }),

  // Streams a question: onEvent("question" | "step" | "token" | "final" | "error", data). Resolves
  // with the final answer object; rejects with an ApiError for a refusal or an `error` event.
  ask: (c, body, onEvent) => streamed(`/v1/collections/${enc(c)}/questions`, body, onEvent),

  // Conversations: a turn is asked and streamed exactly like a question (same events, same final object).
  conversations: (c) => call("GET", `/v1/collections/${enc(c)}/conversations`).then((r) => r.conversations),
  createConversation: (c, title = "") => call("POST", `/v1/collections/${enc(c)}/conversations`, { json: { title } }),
  conversation: (id) => call("GET", `/v1/conversations/${enc(id)}`),
  deleteConversation: (id) => call("DELETE", `/v1/conversations/${enc(id)}`),
  askTurn: (id, body, onEvent) => streamed(`/v1/conversations/${enc(id)}/questions`, body, onEvent),

  question: (id) => call("GET", `/v1/questions/${enc(id)}`),
  trace: (id) => call("GET", `/v1/questions/${enc(id)}/trace`),
  replay: (id) => call("POST", `/v1/questions/${enc(id)}/replay`),
  feedback: (id, body) => call("POST", `/v1/questions/${enc(id)}/feedback`, { json: body }),
  questions: (query = {}) => call("GET", "/v1/questions", { query }).then((r) => r.questions),
  usage: (query = {}) => call("GET", "/v1/usage", { query }).then((r) => r.usage),

  // This server's budget ceilings (also the defaults): the OpenAPI document states them as the
  // maximums of a question's `budget` fields. {max_model_calls: 3, ...}; {} when they cannot be read.
  async budgetLimits() {
    try {
      const doc = await (await fetch("/openapi.json")).json();
      const props = doc.components.schemas.BudgetIn.properties;
      return Object.fromEntries(Object.entries(props).map(([name, p]) =>
        [name, ((p.anyOf || [p]).find((x) => x.maximum !== undefined) || {}).maximum]).filter(([, max]) => max !== undefined));
    } catch { return {}; }
  },
};
