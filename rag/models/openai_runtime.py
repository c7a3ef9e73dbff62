"""The answering model behind an OpenAI-compatible server (`RAG_GENERATOR_RUNTIME=openai`): vLLM,
llama.cpp's server, Ollama, TGI.

`OpenAIGenerator` has the interface of the in-process generators (`rag.ask.ports.LLM`), so the asking
loop runs unchanged; what differs is where tokens are computed and counted.

* Generation: `POST {RAG_GENERATOR_URL}/chat/completions` through the official `openai` client, always
  streamed with `stream_options.include_usage`, greedy (temperature 0, top_p 1, seed 0). The server
  applies its own chat template to the messages.
* Stop strings are matched here by the same `rag.models.completion.TextStream` as the in-process
  runtimes (llama.cpp drops held-back text when a stream ends by length); a hit closes the stream, and
  closing it makes the server cancel the request.
* Accounting: `usage.prompt_tokens`/`completion_tokens` as the server reports them. A stream we end
  early (a stop string, the deadline) or one that breaks gets no `usage`: the prompt count is then our
  own exact count and the completion count is the number of content chunks received (llama.cpp and
  vLLM stream one token per chunk).
* Prompt tokens before a call (the packing loop needs exact counts): in this order of preference,
  1. `local`: the tokenizer of `RAG_GENERATOR` (`rag.models.chat_tokens.ChatTokenizer`) when it names a prepared registry model or a local
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
  connection, or a 5xx raise `GeneratorUnavailable` (`generator_unavailable`, 503; a
  `rag.ask.ports.GenerationInterrupted`). It carries the call as far as it went (`partial`), so the
  loop records it as a failed call with its tokens so far.
  The client never retries: a question fails fast rather than hanging on a dead server.

Thread-safety: calls run concurrently (the server batches them); the count caches are thread-safe.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from rag.ask.ports import GenerationInterrupted
from rag.errors import ModelError
from rag.models.chat_tokens import ChatTokenizer, Tokens
from rag.models.completion import BaseGenerator, Completion, TextStream, check_fit

log = logging.getLogger(__name__)

PROBE = [{"role": "system", "content": "Answer briefly."},
         {"role": "user", "content": "Token check: 東京 1,234 naïve <b>x</b>\n\nWhat is it?"}]


class GeneratorUnavailable(ModelError, GenerationInterrupted):
    """The generator server is unreachable, went away mid-call or answered 5xx."""

    code = "generator_unavailable"
    status = 503

    def __init__(self, message: str, *, partial: Completion | None = None):
        super().__init__(message)
        self.partial = partial


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


def generator_tokenizer_folder(settings) -> Path | None:
    """A local folder with the tokenizer of `RAG_GENERATOR` (never prepared for this runtime: the weights
    are not needed), or None."""
    from rag.models import cache
    from rag.models.registry import get_spec

    spec = get_spec(settings.generator)
    if spec is not None:
        for variant in cache.variants(spec):  # any prepared folder of it holds the tokenizer
            if cache.is_prepared(spec, settings.models_dir, variant):
                return cache.prepared_path(spec, settings.models_dir, variant)
        return None
    path = Path(settings.generator).expanduser()
    return path if (path / "tokenizer_config.json").is_file() else None


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


class OpenAIGenerator(BaseGenerator):
    """A model served over the OpenAI chat API. Build with `OpenAIGenerator.connect(...)`."""

    runtime = "openai"
    mode = "server"

    def __init__(self, client, http: httpx.Client, *, base_url: str, model: str, tokens: Tokens,
                 tokens_check: str, context_length: int | None, timeout_s: float):
        self.client = client  # openai.OpenAI
        self.http = http
        self.server = public_url(base_url)
        self.model = model
        self.model_id = model
        self.tokens = tokens
        self.tokens_check = tokens_check
        self.context_length = context_length
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings, where: None = None) -> tuple["OpenAIGenerator", dict]:
        """Connected to `RAG_GENERATOR_URL`, counting with the local tokenizer of `RAG_GENERATOR` if there is
        one (`generator_tokenizer_folder`), and its status details."""
        folder = generator_tokenizer_folder(settings)
        gen = cls.connect(settings.generator_url, api_key=settings.generator_api_key, model=settings.generator_model,
                          timeout_s=settings.generator_timeout_s, tokenizer_folder=folder)
        return gen, {**gen.status(), "mode_setting": None, "tokenizer_folder": str(folder) if folder else None,
                     "max_concurrent_questions": settings.max_concurrent_questions}

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
        local = ChatTokenizer.load(tokenizer_folder) if tokenizer_folder is not None else None
        tokens, check = choose_tokens(local, server_tokens(http, root, model))
        return cls(client, http, base_url=url, model=model, tokens=tokens, tokens_check=check,
                   context_length=_context_length(http, root, data, model), timeout_s=timeout_s)

    def close(self) -> None:
        self.client.close()
        self.http.close()

    def status(self) -> dict:
        return {"runtime": self.runtime, "mode": self.mode, "server": self.server, "model": self.model,
                "context_length": self.context_length, "count_tokens": self.tokens.source,
                "count_tokens_check": self.tokens_check}

    # ---------------------------------------------------------------- generation

    def _complete(self, messages: list[dict], max_new_tokens: int, stream: TextStream) -> Completion:
        """Concurrent calls allowed (the server batches them)."""
        n_prompt = self.prompt_tokens(messages)
        check_fit(n_prompt, max_new_tokens, self.context_length, whose="served model's")
        call = _Call(stream, n_prompt)
        if call.text.ends_before_start(max_new_tokens):
            return call.completion(self, started=False)
        return self._stream(messages, max_new_tokens, call)

    def _stream(self, messages: list[dict], max_new_tokens: int, call: "_Call") -> Completion:
        import openai

        started = False
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=int(max_new_tokens), temperature=0.0, top_p=1.0,
                seed=0, stream=True, stream_options={"include_usage": True},
                timeout=self._timeout(call.text.deadline))
            started = True
            with stream:
                for chunk in stream:
                    if call.on_chunk(chunk):
                        break
        except openai.APITimeoutError as exc:
            if call.text.past_deadline():
                return call.completion(self, started=True)
            raise self._unavailable(f"no answer for {self.timeout_s:g} s", call, started) from exc
        except openai.APIConnectionError as exc:
            raise self._unavailable("the connection failed or broke", call, started) from exc
        except openai.APIStatusError as exc:
            if exc.status_code >= 500:
                raise self._unavailable(f"HTTP {exc.status_code}", call, started) from exc
            raise ModelError(f"the generator server refused the call: HTTP {exc.status_code}: {exc.message}",
                             code="generation_failed", status=502) from exc
        except openai.APIError as exc:  # an error event inside the stream
            raise ModelError(f"the generator server failed the call: {exc.message}", code="generation_failed",
                             status=502) from exc
        call.text.flush()
        return call.completion(self, started=True)

    def _timeout(self, deadline: float | None):
        """Wait for the next byte at most `timeout_s`, and not much past the call's deadline."""
        import openai

        read = self.timeout_s
        if deadline is not None:
            read = max(0.05, min(read, deadline - time.monotonic() + 0.25))
        return openai.Timeout(read, connect=min(self.timeout_s, 10.0))

    def _unavailable(self, why: str, call: "_Call", started: bool) -> GeneratorUnavailable:
        return GeneratorUnavailable(f"the generator server {self.server} is unavailable: {why}",
                                    partial=call.completion(self, started=started))


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


class _Call:
    """What the server streamed for one chat completion; `on_chunk` returns True to end the stream."""

    def __init__(self, text: TextStream, n_prompt: int):
        self.text = text
        self.n_prompt = n_prompt
        self.start = time.monotonic()
        self.first_piece_at: float | None = None
        self.chunks = 0  # content chunks received: the completion count when no usage arrives
        self.usage = None
        self.finished = False  # a finish_reason came: only usage may follow

    def on_chunk(self, chunk) -> bool:
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in chunk.choices or ():
            piece = (choice.delta.content if choice.delta is not None else None) or ""
            if piece:
                self.chunks += 1
                self.first_piece_at = self.first_piece_at or time.monotonic()
                if self.text.append(piece):
                    return True
            if choice.finish_reason:
                self.text.end(choice.finish_reason)
                self.finished = True
        return not self.finished and self.text.past_deadline()

    def completion(self, gen: OpenAIGenerator, *, started: bool) -> Completion:
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
        return Completion(
            text=self.text.output, prompt_tokens=prompt, completion_tokens=completion,
            cached_prompt_tokens=cached, wall_ms=(time.monotonic() - self.start) * 1000.0, prefill_ms=prefill,
            model_id=gen.model, stopped_by=self.text.stopped_by, runtime=gen.runtime, server=gen.server)
