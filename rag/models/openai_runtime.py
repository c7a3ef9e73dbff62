"""The answering model behind an OpenAI-compatible server (`RAG_GENERATOR_RUNTIME=openai`): vLLM,
llama.cpp's server, Ollama, TGI.

`OpenAIGenerator` has the interface of the in-process generators (`rag.ask.ports.LLM`), so the asking
loop runs unchanged; what differs is where tokens are computed and counted.

* Generation: `POST {RAG_GENERATOR_URL}/chat/completions` through the official `openai` client, always
  streamed with `stream_options.include_usage`, greedy (temperature 0, top_p 1, seed 0). The server
  applies its own chat template to the messages.
* Stop strings are matched here, as in `LlamaCppGenerator` (llama.cpp drops held-back text when a
  stream ends by length); a hit closes the stream, and closing it makes the server cancel the request.
* Accounting: `usage.prompt_tokens`/`completion_tokens` as the server reports them. A stream we end
  early (a stop string, the deadline) or one that breaks gets no `usage`: the prompt count is then our
  own exact count and the completion count is the number of content chunks received (llama.cpp and
  vLLM stream one token per chunk).
* Prompt tokens before a call (the packing loop needs exact counts): in this order of preference,
  1. `local`: the tokenizer of `RAG_GENERATOR` when it names a prepared registry model or a local
     folder with a tokenizer: no round trip per count (packing counts every passage). At connect,
     when the server can tokenize, a probe prompt is counted both ways; if they differ the server's
     count wins (the local tokenizer belongs to another model than the one served);
  2. `llamacpp-server`: llama.cpp's `POST /apply-template` (the prompt its chat endpoint builds) and
     `POST /tokenize`;
  3. `vllm-server`: vLLM's `POST /tokenize` with `messages` (and `/detokenize` to render);
  otherwise connecting fails (`tokenizer_unavailable`): Ollama and TGI have no such endpoint here, so
  `RAG_GENERATOR` must then name the served model's prepared registry entry or tokenizer folder.
  `status()["count_tokens"]` says which one is used, `status()["count_tokens_check"]` how it was checked.
* Failure: no byte from the server for `RAG_GENERATOR_TIMEOUT_S` seconds, a refused or broken
  connection, or a 5xx raise `GeneratorUnavailable` (`generator_unavailable`, 503). It carries the
  call as far as it went (`partial`), so the loop records it as a failed call with its tokens so far.
  The client never retries: a question fails fast rather than hanging on a dead server.

Thread-safety: calls run concurrently (the server batches them); the count caches are thread-safe.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError
from rag.models.generator import Generator, StoppedBy, _find_stop, _safe_length

log = logging.getLogger(__name__)

PROBE = [{"role": "system", "content": "Answer briefly."},
         {"role": "user", "content": "Token check: 東京 1,234 naïve <b>x</b>\n\nWhat is it?"}]


class GeneratorUnavailable(ModelError):
    """The generator server is unreachable, went away mid-call or answered 5xx."""

    code = "generator_unavailable"
    status = 503

    def __init__(self, message: str, *, partial: "ServerCompletion | None" = None):
        super().__init__(message)
        self.partial = partial


@dataclass(frozen=True)
class ServerCompletion:
    """`rag.models.generator.Completion` plus the server that computed it."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int
    wall_ms: float
    prefill_ms: float
    model_id: str
    stopped_by: StoppedBy
    runtime: str = "openai"
    server: str = ""


def public_url(url: str) -> str:
    """The base URL as recorded in the ledger and shown in /health: no user, password or query."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def server_root(url: str) -> str:
    """llama.cpp and vLLM serve /tokenize beside /v1, not under it."""
    base = url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


# ---------------------------------------------------------------- token counting


def _post_json(http: httpx.Client, url: str, body: dict) -> dict:
    """A tokenizer call; a server that cannot be reached is `generator_unavailable`, like a generation."""
    try:
        r = http.post(url, json=body)
    except httpx.TransportError as exc:
        raise GeneratorUnavailable(f"the generator server {public_url(url)} is unavailable: {exc}") from exc
    r.raise_for_status()
    return r.json()


class Tokens(Protocol):
    source: str

    def count_tokens(self, text: str) -> int: ...

    def render(self, messages: list[dict]) -> str: ...

    def prompt_tokens(self, messages: list[dict]) -> int: ...


class LocalTokens:
    """The chat template and tokenizer of a local folder: the same helpers as the in-process runtimes."""

    source = "local"

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def load(cls, folder: Path) -> "LocalTokens":
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:
            raise ModelError(f"cannot load the tokenizer of {folder}: {exc}", code="model_load_failed") from exc
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(f"{folder}: the tokenizer has no chat template")
        return cls(tokenizer)

    _encode = Generator._encode
    count_tokens = Generator.count_tokens
    render = Generator.render
    prompt_tokens = Generator.prompt_tokens


class LlamaServerTokens:
    """llama.cpp's own template and tokenizer, over HTTP (special tokens in text parsed, none added)."""

    source = "llamacpp-server"

    def __init__(self, http: httpx.Client, root: str):
        self.http = http
        self.root = root
        self.count_tokens = lru_cache(maxsize=8192)(self._count)

    def _post(self, path: str, body: dict) -> dict:
        return _post_json(self.http, self.root + path, body)

    def _count(self, text: str) -> int:
        return len(self._post("/tokenize", {"content": text, "add_special": False, "parse_special": True})["tokens"])

    def render(self, messages: list[dict]) -> str:
        return self._post("/apply-template", {"messages": messages})["prompt"]

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.count_tokens(self.render(messages))


class VllmTokens:
    """vLLM's `/tokenize` (messages with the generation prompt, or text without special tokens)."""

    source = "vllm-server"

    def __init__(self, http: httpx.Client, root: str, model: str):
        self.http = http
        self.root = root
        self.model = model
        self.count_tokens = lru_cache(maxsize=8192)(self._count)

    def _post(self, path: str, body: dict) -> dict:
        return _post_json(self.http, self.root + path, {"model": self.model, **body})

    def _count(self, text: str) -> int:
        return int(self._post("/tokenize", {"prompt": text, "add_special_tokens": False})["count"])

    def _ids(self, messages: list[dict]) -> list[int]:
        return self._post("/tokenize", {"messages": messages, "add_generation_prompt": True})["tokens"]

    def render(self, messages: list[dict]) -> str:
        return self._post("/detokenize", {"tokens": self._ids(messages)})["prompt"]

    def prompt_tokens(self, messages: list[dict]) -> int:
        return len(self._ids(messages))


def server_tokens(http: httpx.Client, root: str, model: str) -> Tokens | None:
    """The server's tokenizer, if it offers one we know (llama.cpp first, then vLLM)."""
    for tokens in (LlamaServerTokens(http, root), VllmTokens(http, root, model)):
        try:
            tokens.prompt_tokens(PROBE)
            return tokens
        except (httpx.HTTPError, KeyError, TypeError, ValueError):
            continue
    return None


def choose_tokens(local: Tokens | None, remote: Tokens | None) -> tuple[Tokens, str]:
    """(the counter to use, how it was checked): see the module docstring."""
    if local is not None and remote is not None:
        mine, theirs = local.prompt_tokens(PROBE), remote.prompt_tokens(PROBE)
        if mine == theirs:
            return local, f"equal to {remote.source} on a probe prompt ({mine} tokens)"
        log.warning("the local tokenizer counts %d tokens, the server %d: counting on the server", mine, theirs)
        return remote, f"local tokenizer disagreed ({mine} vs {theirs} tokens): using {remote.source}"
    if local is not None:
        return local, "not checked: the server has no tokenize endpoint"
    if remote is not None:
        return remote, "the server's own tokenizer"
    raise ModelError("the generator server has no tokenize endpoint and RAG_GENERATOR names no local tokenizer: "
                     "set RAG_GENERATOR to the served model's registry name or tokenizer folder",
                     code="tokenizer_unavailable")


# ---------------------------------------------------------------- the generator


class OpenAIGenerator:
    """A model served over the OpenAI chat API. Build with `OpenAIGenerator.connect(...)`."""

    runtime = "openai"
    mode = "server"

    def __init__(self, client, http: httpx.Client, *, base_url: str, model: str, tokens: Tokens,
                 tokens_check: str, context_length: int | None, timeout_s: float):
        self.client = client  # openai.OpenAI
        self.http = http
        self.base_url = public_url(base_url)
        self.model = model
        self.model_id = model
        self.tokens = tokens
        self.tokens_check = tokens_check
        self.context_length = context_length
        self.timeout_s = timeout_s

    @classmethod
    def connect(cls, url: str, *, api_key: str = "", model: str = "", timeout_s: float = 120.0,
                tokenizer_folder: Path | None = None) -> "OpenAIGenerator":
        """Reach the server (its model list), pick the model and the token counter; raises
        `GeneratorUnavailable` when the server does not answer."""
        import openai

        if not url:
            raise ModelError("RAG_GENERATOR_RUNTIME=openai needs RAG_GENERATOR_URL", code="model_not_found")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
        client = openai.OpenAI(base_url=url.rstrip("/"), api_key=api_key or "none", max_retries=0,
                               timeout=openai.Timeout(timeout_s, connect=min(timeout_s, 10.0)))
        try:
            listed = http.get(url.rstrip("/") + "/models")
            listed.raise_for_status()
            data = listed.json().get("data") or []
        except (httpx.HTTPError, ValueError) as exc:
            raise GeneratorUnavailable(f"the generator server {public_url(url)} does not answer: {exc}") from exc
        if not model:
            if not data:
                raise ModelError(f"{public_url(url)} lists no model; set RAG_GENERATOR_MODEL", code="model_not_found")
            model = str(data[0]["id"])
        root = server_root(url)
        local = LocalTokens.load(tokenizer_folder) if tokenizer_folder is not None else None
        tokens, check = choose_tokens(local, server_tokens(http, root, model))
        return cls(client, http, base_url=url, model=model, tokens=tokens, tokens_check=check,
                   context_length=_context_length(http, root, data, model), timeout_s=timeout_s)

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def status(self) -> dict:
        return {"runtime": self.runtime, "mode": self.mode, "server": self.base_url, "model": self.model,
                "context_length": self.context_length, "count_tokens": self.tokens.source,
                "count_tokens_check": self.tokens_check}

    # ---------------------------------------------------------------- tokens

    def count_tokens(self, text: str) -> int:
        return self.tokens.count_tokens(text)

    def render(self, messages: list[dict]) -> str:
        return self.tokens.render(messages)

    def prompt_tokens(self, messages: list[dict]) -> int:
        return self.tokens.prompt_tokens(messages)

    # ---------------------------------------------------------------- generation

    def generate(
        self,
        messages: list[dict],
        *,
        max_new_tokens: int,
        stop: list[str] | None = None,
        on_token: Callable[[str], None] | None = None,
        deadline: float | None = None,
    ) -> ServerCompletion:
        """Greedy completion of `messages`; same contract as `Generator.generate`, concurrent calls allowed."""
        n_prompt = self.prompt_tokens(messages)
        if self.context_length and n_prompt + max(max_new_tokens, 0) > self.context_length:
            raise ModelError(
                f"prompt ({n_prompt} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the served model's "
                f"context length ({self.context_length})", code="context_overflow", status=400)
        st = _Stream([s for s in (stop or []) if s], on_token, deadline, n_prompt)
        if max_new_tokens <= 0:
            return st.completion(self, started=False)
        if deadline is not None and time.monotonic() >= deadline:
            st.stopped_by = "deadline"
            return st.completion(self, started=False)
        return self._stream(messages, max_new_tokens, st)

    def _stream(self, messages: list[dict], max_new_tokens: int, st: "_Stream") -> ServerCompletion:
        import openai

        started = False
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=int(max_new_tokens), temperature=0.0, top_p=1.0,
                seed=0, stream=True, stream_options={"include_usage": True}, timeout=self._timeout(st.deadline))
            started = True
            with stream:
                for chunk in stream:
                    if st.on_chunk(chunk):
                        break
        except openai.APITimeoutError as exc:
            if st.deadline is not None and time.monotonic() >= st.deadline:
                st.stopped_by = "deadline"
                return st.completion(self, started=True)
            raise self._unavailable(f"no answer for {self.timeout_s:g} s", st, started) from exc
        except openai.APIConnectionError as exc:
            raise self._unavailable("the connection failed or broke", st, started) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise self._unavailable(f"HTTP {exc.status_code}", st, started) from exc
            raise ModelError(f"the generator server refused the call: HTTP {exc.status_code}: {exc.message}",
                             code="generation_failed", status=502) from exc
        except openai.APIError as exc:  # an error event inside the stream
            raise ModelError(f"the generator server failed the call: {exc.message}", code="generation_failed",
                             status=502) from exc
        st.flush()
        return st.completion(self, started=True)

    def _timeout(self, deadline: float | None):
        """Wait for the next byte at most `timeout_s`, and not much past the call's deadline."""
        import openai

        read = self.timeout_s
        if deadline is not None:
            read = max(0.05, min(read, deadline - time.monotonic() + 0.25))
        return openai.Timeout(read, connect=min(self.timeout_s, 10.0))

    def _unavailable(self, why: str, st: "_Stream", started: bool) -> GeneratorUnavailable:
        return GeneratorUnavailable(f"the generator server {self.base_url} is unavailable: {why}",
                                    partial=st.completion(self, started=started))


def _context_length(http: httpx.Client, root: str, listed: list[dict], model: str) -> int | None:
    """Tokens one request may hold: vLLM's `max_model_len`, or llama.cpp's per-slot `n_ctx` (/props)."""
    for entry in listed:
        if entry.get("id") == model and entry.get("max_model_len"):
            return int(entry["max_model_len"])
    try:
        r = http.get(root + "/props")
        r.raise_for_status()
        n_ctx = r.json().get("default_generation_settings", {}).get("n_ctx")
        return int(n_ctx) if n_ctx else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


class _Stream:
    """The state of one streamed chat completion; `on_chunk` returns True to end the stream."""

    def __init__(self, stops: list[str], on_token, deadline: float | None, n_prompt: int):
        self.stops = stops
        self.on_token = on_token
        self.deadline = deadline
        self.n_prompt = n_prompt
        self.start = time.monotonic()
        self.first_piece_at: float | None = None
        self.text = ""
        self.emitted = 0
        self.pieces: list[str] = []
        self.chunks = 0  # content chunks received: the completion count when no usage arrives
        self.usage = None
        self.model: str | None = None
        self.stopped_by: StoppedBy = "max_tokens"
        self.finished = False  # a finish_reason came: only usage may follow

    def _emit(self, upto: int) -> None:
        if upto > self.emitted:
            piece = self.text[self.emitted:upto]
            self.emitted = upto
            self.pieces.append(piece)
            if self.on_token is not None:
                self.on_token(piece)

    def flush(self) -> None:
        self._emit(len(self.text))

    def on_chunk(self, chunk) -> bool:
        self.model = self.model or getattr(chunk, "model", None)
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            piece = (choice.delta.content if choice.delta is not None else None) or ""
            if piece:
                self.chunks += 1
                self.first_piece_at = self.first_piece_at or time.monotonic()
                self.text += piece
                hit = _find_stop(self.text, self.stops, self.emitted)
                if hit is not None:
                    self.text = self.text[:hit]
                    self._emit(len(self.text))
                    self.stopped_by = "stop"
                    return True
                self._emit(_safe_length(self.text, self.stops))
            if choice.finish_reason:
                self.stopped_by = "max_tokens" if choice.finish_reason == "length" else "eos"
                self.finished = True
        if not self.finished and self.deadline is not None and time.monotonic() >= self.deadline:
            self.stopped_by = "deadline"
            return True
        return False

    def completion(self, gen: OpenAIGenerator, *, started: bool) -> ServerCompletion:
        """The call as far as it went: the server's usage when it sent one, else our counts."""
        if self.usage is not None:
            prompt, completion = int(self.usage.prompt_tokens), int(self.usage.completion_tokens)
            details = getattr(self.usage, "prompt_tokens_details", None)
            cached = int(getattr(details, "cached_tokens", 0) or 0)
            if prompt != self.n_prompt:
                log.warning("%s: the server counted %d prompt tokens, we counted %d", gen.model, prompt, self.n_prompt)
        else:
            prompt, completion, cached = (self.n_prompt if started else 0), self.chunks, 0
        prefill = (self.first_piece_at - self.start) * 1000.0 if self.first_piece_at else 0.0  # time to first token
        return ServerCompletion(
            text="".join(self.pieces), prompt_tokens=prompt, completion_tokens=completion,
            cached_prompt_tokens=cached, wall_ms=(time.monotonic() - self.start) * 1000.0, prefill_ms=prefill,
            model_id=gen.model, stopped_by=self.stopped_by, server=gen.base_url)
