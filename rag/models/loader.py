"""Resolves the model settings (registry name, local folder, or cached hub id) to loaded models."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import ModelError
from rag.models import cache, runtimes
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
                raise ModelError(f"{name} is not prepared; run `{cache.prepare_command(spec, runtime)}`",
                                 code="model_not_prepared")
            cache.prepare(spec, settings.models_dir, progress=progress, runtime=runtime)
        folder = cache.prepared_path(spec, settings.models_dir, runtime)
        if settings.verify_models_on_load:
            cache.verify_folder(folder, trust_unchanged=True)
        return folder, spec
    path = Path(name).expanduser()
    if path.exists():
        return path, None
    return name, None  # a hub id: transformers will look only in the local cache (offline mode)


def prepared_already(settings: Settings) -> bool:
    """Whether loading the configured models builds nothing (every registry model's folder is ready)."""
    wanted = [(settings.embedder, "transformers")]
    if settings.load_generator:
        folder = runtimes.configured(settings).folder_for(settings.generator_mode)
        if folder is not None:
            wanted.append((settings.generator, folder))
    return all(spec is None or cache.is_prepared(spec, settings.models_dir, runtime)
               for spec, runtime in ((get_spec(name), runtime) for name, runtime in wanted))


def loads_in_parallel(settings: Settings) -> bool:
    """The generator may load beside the embedder: it uses no torch (transformers' loading patches
    torch globally while it builds a model, so two torch models load one after the other) and neither
    model is built now (two builds at once would add up their memory and interleave their progress)."""
    return (settings.load_generator and runtimes.configured(settings).name != "transformers"
            and prepared_already(settings))


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


def load_generator(settings: Settings, *, prepare: bool = True, progress: bool = False):
    """The generator `settings.generator_runtime` names (`rag.models.runtimes`): the prepared folder it loads in
    `settings.generator_mode` resolved (prepared now if allowed) when the runtime loads weights here, then the
    runtime's class built from it. The status's `path` is that folder."""
    t0 = time.monotonic()
    kind = runtimes.configured(settings)
    where = None
    folder = kind.folder_for(settings.generator_mode)
    if folder is not None:
        where, _ = resolve(settings.generator, settings, prepare=prepare, progress=progress, runtime=folder)
    try:
        gen, details = kind.load(settings, where)
    except OSError as exc:
        raise ModelError(f"cannot load generator {settings.generator!r}: {exc}", code="model_load_failed") from exc
    details = {**details, "runtime_setting": settings.generator_runtime}
    path = str(where) if kind.in_process else gen.server
    status = ModelStatus(settings.generator, "generator", path, True, round(time.monotonic() - t0, 2), details)
    return gen, status
