"""Every generator runtime by name (`RAG_GENERATOR_RUNTIME`), with what the rest of the service asks of it.

A runtime is one module with its generator class (an `rag.ask.ports.LLM` whose `runtime` is the name
here, built from settings by its `from_settings`) plus one entry below. Classes are imported only when
a runtime is loaded, so asking about a runtime never imports torch, llama.cpp or an HTTP client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.settings import Settings


@dataclass(frozen=True)
class GeneratorRuntime:
    name: str
    cls: str  # "module:Class"; the class's `from_settings(settings, where)` returns (generator, status details)
    in_process: bool  # computes in this process; False: on a server, whose base URL is the generator's `server`
    concurrent: bool  # serves several calls at once (the server batches them); else calls queue on a lock
    folder: str | None  # the prepared-folder variant it loads (`rag.models.cache`); None: it needs no weights here
    bf16_folder: str | None = None  # the variant it loads instead when the generator runs in `bf16` mode

    def folder_for(self, mode: str) -> str | None:
        """The one place deciding which prepared folder this runtime loads in `RAG_GENERATOR_MODE` `mode`
        (`auto` resolved for this CPU): a folder stored in the dtype it runs in loads without a cast."""
        if self.bf16_folder is None:
            return self.folder
        from rag.models.generator import resolve_mode

        return self.bf16_folder if resolve_mode(mode) == "bf16" else self.folder

    def load(self, settings: "Settings", where: Path | str | None) -> tuple[Any, dict]:
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name).from_settings(settings, where)


RUNTIMES: dict[str, GeneratorRuntime] = {r.name: r for r in (
    GeneratorRuntime("transformers", "rag.models.generator:Generator", in_process=True, concurrent=False,
                     folder="transformers", bf16_folder="transformers-bf16"),
    GeneratorRuntime("llamacpp", "rag.models.llamacpp:LlamaCppGenerator", in_process=True, concurrent=False,
                     folder="llamacpp"),
    GeneratorRuntime("openai", "rag.models.openai_runtime:OpenAIGenerator", in_process=False, concurrent=True,
                     folder=None),
)}


def get(name: str) -> GeneratorRuntime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"generator runtime must be one of {tuple(RUNTIMES)}, got {name!r}") from None


def of(generator: Any) -> GeneratorRuntime | None:
    """The runtime of a loaded generator (or its class); None for one not registered here (a test's fake)."""
    return RUNTIMES.get(getattr(generator, "runtime", None))
