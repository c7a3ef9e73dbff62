"""Every generator runtime by name (`RAG_GENERATOR_RUNTIME`), with what the rest of the service asks of it.

A runtime is one module with its generator class (an `rag.ask.ports.LLM` whose `runtime` is the name
here, built from settings by its `from_settings`) plus one entry below. Classes are imported only when
a runtime is loaded, so asking about a runtime never imports torch, llama.cpp or an HTTP client.
"""

from __future__ import annotations

import importlib
import importlib.util
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
    GeneratorRuntime("openvino", "rag.models.openvino_runtime:OpenVinoGenerator", in_process=True, concurrent=False,
                     folder="openvino"),
    GeneratorRuntime("openai", "rag.models.openai_runtime:OpenAIGenerator", in_process=False, concurrent=True,
                     folder=None),
)}

AUTO = "auto"
# What `auto` runs on each CPU class, from `rag bench models` on 2 cores with the 1.5B (README, "Which runtime
# on which CPU"): OpenVINO's int8 weights prefill at least as fast as torch's bf16 and decode 1.7x (AMX)
# to 3.8x (AVX512-VNNI without AMX) faster in a third of the memory; on AVX2-only CPUs torch has no fast bf16
# and OpenVINO was not measured, while llama.cpp's wheel is built for exactly AVX2.
AUTO_BY_CPU = {"amx": "openvino", "avx512-vnni": "openvino", "avx2": "llamacpp", "other": "transformers"}


def auto_runtime(cpuinfo: str | None = None) -> str:
    """The runtime `auto` picks on this CPU (or the one `cpuinfo` describes); transformers when the pick's
    engine is not installed."""
    from rag.models.cpu import read_cpu

    name = AUTO_BY_CPU[read_cpu(cpuinfo).cpu_class]
    engine = {"openvino": "openvino_genai", "llamacpp": "xllamacpp"}.get(name)
    if engine is not None and importlib.util.find_spec(engine) is None:
        return "transformers"
    return name


def configured(settings: "Settings") -> GeneratorRuntime:
    """The runtime `settings` ask for; `auto` runs a packaged GGUF generator on `auto_runtime()`'s pick (but
    not on openvino where the registry says its int8 weights lost accuracy) and anything else (a local
    folder, a hub id) on transformers, the one runtime that loads any HF folder."""
    if settings.generator_runtime != AUTO:
        return get(settings.generator_runtime)
    from rag.models.registry import get_spec

    spec = get_spec(settings.generator)
    if spec is None or spec.recipe != "gguf":
        return RUNTIMES["transformers"]
    pick = auto_runtime()
    if pick == "openvino" and not spec.auto_openvino:  # its int8 weights measured less accurate
        pick = "transformers"
    return RUNTIMES[pick]


def get(name: str) -> GeneratorRuntime:
    """The runtime named `name` (`auto` is a setting, not a runtime: see `configured`)."""
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"generator runtime must be one of {tuple(RUNTIMES)}, got {name!r}") from None


def of(generator: Any) -> GeneratorRuntime | None:
    """The runtime of a loaded generator (or its class); None for one not registered here (a test's fake)."""
    return RUNTIMES.get(getattr(generator, "runtime", None))
