"""Resolves the model settings (registry name, local folder, or cached hub id) to loaded models."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ModelError
from rag.models import cache
from rag.models.embedder import Embedder
from rag.models.registry import ModelSpec, get_spec
from rag.settings import Settings


@dataclass
class ModelStatus:
    name: str
    kind: str
    path: str
    loaded: bool = False
    load_seconds: float | None = None
    details: dict = field(default_factory=dict)


def resolve(name: str, settings: Settings, *, prepare: bool = True, progress: bool = False,
            runtime: str = "transformers") -> tuple[Path | str, ModelSpec | None]:
    """A registry name becomes its prepared folder for `runtime` (prepared now if allowed); anything else is used as given."""
    spec = get_spec(name)
    if spec is not None:
        if not cache.is_prepared(spec, settings.models_dir, runtime):
            if not prepare:
                hint = f" --runtime {runtime}" if runtime != "transformers" else ""
                raise ModelError(f"{name} is not prepared; run `rag models prepare {name}{hint}`", code="model_not_prepared")
            cache.prepare(spec, settings.models_dir, progress=progress, runtime=runtime)
        folder = cache.prepared_path(spec, settings.models_dir, runtime)
        if settings.verify_models_on_load:
            cache.verify_folder(folder)
        return folder, spec
    path = Path(name).expanduser()
    if path.exists():
        return path, None
    return name, None  # a hub id: transformers will look only in the local cache (offline mode)


def load_embedder(settings: Settings, *, prepare: bool = True, progress: bool = False) -> tuple[Embedder, ModelStatus]:
    """The in-process `Embedder`, or a `RemoteEmbedder` when `RAG_EMBEDDER_URL` is set (its tokenizer
    still comes from the local folder of `RAG_EMBEDDER`)."""
    t0 = time.monotonic()
    where, spec = resolve(settings.embedder, settings, prepare=prepare, progress=progress)
    if settings.embedder_url:
        return _remote_embedder(settings, where, spec, t0)
    try:
        emb = Embedder.load(where, model_id=settings.embedder,
                            query_prefix=spec.query_prefix if spec else settings.embedder_query_prefix,
                            passage_prefix=spec.passage_prefix if spec else settings.embedder_passage_prefix,
                            batch_size=settings.embed_batch_size, precision=settings.embed_precision)
    except OSError as exc:
        raise ModelError(f"cannot load embedder {settings.embedder!r}: {exc}", code="model_load_failed") from exc
    status = ModelStatus(settings.embedder, "embedder", str(where), True, round(time.monotonic() - t0, 2),
                         {"dim": emb.dim, "max_seq_length": emb.max_seq_length, "precision": emb.precision})
    return emb, status


def _remote_embedder(settings: Settings, where, spec: ModelSpec | None, t0: float):
    from rag.models.remote_embedder import RemoteEmbedder

    if not Path(where).is_dir():
        raise ModelError(f"embedder {settings.embedder!r}: RAG_EMBEDDER_URL still needs its local folder for the "
                         "tokenizer (a registry name or a folder)", code="model_not_found")
    emb = RemoteEmbedder.connect(settings.embedder_url, model_id=settings.embedder, folder=Path(where),
                                 api_key=settings.embedder_api_key,
                                 query_prefix=spec.query_prefix if spec else settings.embedder_query_prefix,
                                 passage_prefix=spec.passage_prefix if spec else settings.embedder_passage_prefix,
                                 batch_size=settings.embed_batch_size)
    status = ModelStatus(settings.embedder, "embedder", str(where), True, round(time.monotonic() - t0, 2),
                         {"runtime": "openai", "server": emb.server, "model": emb.model_id, "dim": emb.dim,
                          "max_seq_length": emb.max_seq_length, "count_tokens": "local"})
    return emb, status


def generator_tokenizer_folder(settings: Settings) -> Path | None:
    """A local folder with the tokenizer of `RAG_GENERATOR` for the openai runtime (never prepared for it:
    the weights are not needed), or None."""
    spec = get_spec(settings.generator)
    if spec is not None:
        for runtime in ("llamacpp", "transformers"):
            if cache.is_prepared(spec, settings.models_dir, runtime):
                return cache.prepared_path(spec, settings.models_dir, runtime)
        return None
    path = Path(settings.generator).expanduser()
    return path if (path / "tokenizer_config.json").is_file() else None


def llamacpp_n_ctx(settings: Settings) -> int:
    """llama.cpp's KV cache size: 4,096 tokens (twice the default window), or the window if larger;
    the generator caps it at the model's trained context."""
    from rag.models.llamacpp import DEFAULT_MAX_CTX

    return max(DEFAULT_MAX_CTX, settings.context_window)


def load_generator(settings: Settings, *, prepare: bool = True, progress: bool = False):
    """The generator `settings.generator_runtime` names: `Generator` (transformers), `LlamaCppGenerator` or
    `OpenAIGenerator` (a server)."""
    t0 = time.monotonic()
    runtime = settings.generator_runtime
    if runtime == "openai":
        return _openai_generator(settings, t0)
    where, _ = resolve(settings.generator, settings, prepare=prepare, progress=progress, runtime=runtime)
    if runtime == "llamacpp":
        from rag.models.llamacpp import LlamaCppGenerator

        if not Path(where).exists():
            raise ModelError(f"generator {settings.generator!r}: the llamacpp runtime needs a registry name, a "
                             "prepared llamacpp folder or a .gguf file", code="model_not_found")
        try:
            gen = LlamaCppGenerator.load(Path(where), model_id=settings.generator, threads=settings.threads,
                                         n_ctx=llamacpp_n_ctx(settings))
        except OSError as exc:
            raise ModelError(f"cannot load generator {settings.generator!r}: {exc}", code="model_load_failed") from exc
        details = {"runtime": runtime, "mode": gen.mode, "mode_setting": None, "context_length": gen.context_length,
                   "trained_context_length": gen.trained_context_length, "llamacpp": gen.params}
    else:
        from rag.models.generator import Generator, resolve_mode

        mode = resolve_mode(settings.generator_mode)
        try:
            gen = Generator.load(Path(where), mode=mode, threads=settings.threads, model_id=settings.generator)
        except OSError as exc:
            raise ModelError(f"cannot load generator {settings.generator!r}: {exc}", code="model_load_failed") from exc
        details = {"runtime": runtime, "mode": mode, "mode_setting": settings.generator_mode,
                   "context_length": gen.context_length}
    status = ModelStatus(settings.generator, "generator", str(where), True, round(time.monotonic() - t0, 2), details)
    return gen, status


def _openai_generator(settings: Settings, t0: float):
    from rag.models.openai_runtime import OpenAIGenerator

    folder = generator_tokenizer_folder(settings)
    gen = OpenAIGenerator.connect(settings.generator_url, api_key=settings.generator_api_key,
                                  model=settings.generator_model, timeout_s=settings.generator_timeout_s,
                                  tokenizer_folder=folder)
    details = {**gen.status(), "mode_setting": None, "tokenizer_folder": str(folder) if folder else None,
               "max_concurrent_questions": settings.max_concurrent_questions}
    status = ModelStatus(settings.generator, "generator", gen.base_url, True, round(time.monotonic() - t0, 2), details)
    return gen, status
