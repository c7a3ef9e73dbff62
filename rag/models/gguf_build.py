"""Turn a GGUF generator file into a plain Hugging Face folder that reloads in about a second.

transformers reads a GGUF with `from_pretrained(dir, gguf_file=name)`, dequantizing every tensor
into dense float weights (tens of seconds for a 0.5B model). We do that once and save the dense
model, its tokenizer (chat template included) and its generation config as safetensors.

transformers 5.x attaches a `GgufHfQuantizer` to the loaded model (`model.hf_quantizer`,
`model.is_quantized`, `model.quantization_method`, `config.quantization_config`) and its
`save_pretrained` refuses to serialise a model whose quantizer says `is_serializable() == False`,
which the GGUF one always does. For the architectures our GGUFs use (qwen2, llama) transformers
takes its "legacy" GGUF path, which already unpacks every tensor into an ordinary `nn.Linear`;
the quantizer is pure bookkeeping. We ask for that explicitly with `GgufConfig(dequantize=True)`,
which makes transformers itself call `hf_quantizer.remove_quantization_config(model)` at the end of
loading, and then strip whatever is left (`_strip_gguf_quantizer`) so the result does not depend on
that detail of a given transformers release.

Storage dtype: one folder per dtype the service runs in, decided by measurement (Qwen2.5 0.5B, this
2-core machine):

    folder   load as    disk     from_pretrained   peak RSS after load
    fp32     fp32       2.4 GB   0.2 s (mmap)      0.4 GB (pages fault in on first use)
    fp32     bf16       2.4 GB   0.8-1.2 s         4.0 GB (both copies, briefly)
    bf16     fp32       1.2 GB   1.0-2.0 s         4.0 GB
    bf16     bf16       1.2 GB   0.15 s (mmap)     0.4 GB

A folder loads fastest in its own dtype. fp32 storage keeps the GGUF's dequantized values exactly
(Q4_K/Q5_0/Q6_K/Q8_0 blocks: fp16 scale x small integer, not representable in bfloat16), so the
`fp32` and `int8-dynamic` modes run the very model the GGUF describes; they load the float32 folder.
`bf16` mode (what `auto` picks on CPUs with native bf16, so the usual default) loads a second folder
built with `dtype="bfloat16"` (`rag.models.cache` variant `transformers-bf16`, chosen in
`rag.models.runtimes`): each weight is the float32 value rounded once to bfloat16, exactly what casting
the float32 folder at load gives (a test compares every tensor and the greedy answer), without the
float32 pages and the second copy. Measured for the default 1.5B in bf16 mode (2-core AMD EPYC, 24 GB,
machine busy: load average 4-5; fresh process, `rag.models` loader, 2 threads, file pages cached):

    folder         disk     load        VmHWM after load   after a 16-token answer (VmHWM / VmRSS)
    fp32 (cast)    6.7 GB   11.9-16.5 s   10.1-10.9 GB      10.1-10.9 GB / 4.0 GB
    bf16           3.4 GB   5.4-6.8 s     0.8 GB            3.6 GB / 3.6 GB (weights fault in on first use)

Same answer from both; building the bf16 folder from the GGUF took 165 s at a peak RSS of 5.0 GB.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag import offline as _offline  # noqa: F401  (must run before transformers is imported)
from rag.errors import ModelError

_DTYPES = ("float32", "bfloat16", "float16")


def _strip_gguf_quantizer(model) -> None:
    """Remove every trace of the GGUF quantizer so `save_pretrained` writes a plain dense checkpoint."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # The quantizer's own undo: deletes model.hf_quantizer, config.quantization_config,
        # model.quantization_method and sets model.is_quantized = False.
        quantizer.remove_quantization_config(model)
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            delattr(model, attr)
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is None:
            continue
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        if getattr(config, "_is_quantized", False):
            config._is_quantized = False


def build_gguf_folder(gguf_path: Path, out: Path, dtype: str = "float32") -> None:
    """Load `gguf_path` (dequantizing it), and save model + tokenizer + generation config into `out`.

    `out` must exist and be empty; the caller owns temp-dir + rename and source checksums.
    `dtype` is the storage dtype of the saved weights (float32 keeps the GGUF's dequantized values exactly).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    from transformers.utils.quantization_config import GgufConfig

    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
    gguf_path = Path(gguf_path)
    out = Path(out)
    if not gguf_path.is_file():
        raise ModelError(f"GGUF file not found: {gguf_path}")
    if not out.is_dir() or any(out.iterdir()):
        raise ValueError(f"{out} must be an existing, empty folder")

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        # Load straight into the storage dtype: each tensor is dequantized to float32 and cast once,
        # the same rounding as a cast after loading, without a full float32 copy (1.5B: 6 GB) at peak.
        model = AutoModelForCausalLM.from_pretrained(
            folder,
            gguf_file=name,
            quantization_config=GgufConfig(dequantize=True),
            dtype=getattr(torch, dtype),
        )
    except Exception as exc:  # transformers raises many kinds; surface one the service understands
        raise ModelError(f"cannot read GGUF {gguf_path.name}: {exc}") from exc

    _strip_gguf_quantizer(model)
    if any(type(m).__name__.lower().startswith("gguf") for m in model.modules()):
        raise ModelError(f"{gguf_path.name}: some layers stayed GGUF-packed; cannot save a dense folder")
    if model.dtype != getattr(torch, dtype):
        model = model.to(getattr(torch, dtype))
    model.config.dtype = dtype
    model.config.name_or_path = gguf_path.stem
    model.eval()

    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{gguf_path.name} carries no chat template (tokenizer.chat_template)")

    # Generation config: the model's own (from the GGUF metadata), greedy by default, eos from the tokenizer.
    gen = getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)
    eos = {tid for tid in _as_list(gen.eos_token_id) + _as_list(model.config.eos_token_id) if tid is not None}
    if tokenizer.eos_token_id is not None:
        eos.add(tokenizer.eos_token_id)
    # ChatML models end a turn with <|im_end|>; make it an eos token if the vocabulary has it.
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else None
    if im_end is not None:
        eos.add(im_end)
    gen.eos_token_id = sorted(eos) if len(eos) > 1 else (next(iter(eos)) if eos else None)
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(eos) if eos else None
    gen.do_sample = False
    for attr in ("temperature", "top_p", "top_k"):
        if hasattr(gen, attr):
            setattr(gen, attr, None)
    model.generation_config = gen

    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    gen.save_pretrained(str(out))

    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    if "quantization_config" in config:
        raise ModelError("quantization_config survived the GGUF quantizer strip; refusing a broken folder")
    if not any(out.glob("*.safetensors")):
        raise ModelError(f"save_pretrained wrote no safetensors into {out}")


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


# ---------------------------------------------------------------- the llama.cpp runtime: the GGUF as shipped


def gguf_metadata(gguf_path: Path) -> dict:
    """What the service needs from a GGUF's header: architecture, trained context length, layers, quantization."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(gguf_path))
        fields = reader.fields
    except Exception as exc:
        raise ModelError(f"cannot read GGUF {Path(gguf_path).name}: {exc}") from exc

    def value(key):
        f = fields.get(key)
        if f is None or not f.data:
            return None
        part = f.parts[f.data[0]]
        return bytes(part).decode("utf-8") if f.types and f.types[0].name == "STRING" else part.tolist()[0]

    arch = value("general.architecture")
    if not arch:
        raise ModelError(f"{Path(gguf_path).name}: no general.architecture in the GGUF header")
    meta = {
        "architecture": arch,
        "name": value("general.name"),
        "context_length": value(f"{arch}.context_length"),
        "block_count": value(f"{arch}.block_count"),
        "file_type": value("general.file_type"),
        "has_chat_template": "tokenizer.chat_template" in fields,
        # the transformer blocks' matrices: a prompt token costs 2 FLOPs per one (`rag bench models`' peak fractions)
        "linear_params": sum(int(t.n_elements) for t in reader.tensors
                             if t.name.startswith("blk.") and len(t.shape) == 2),
    }
    if not meta["context_length"]:
        raise ModelError(f"{Path(gguf_path).name}: no {arch}.context_length in the GGUF header")
    return meta


def save_gguf_tokenizer(gguf_path: Path, out: Path) -> None:
    """Save the GGUF's own tokenizer (vocabulary, merges, special tokens, chat template) as HF files in `out`.

    The llama.cpp runtime renders prompts and counts tokens with it, so prompts and token counts are
    computed the same way in both runtimes; tests check its counts equal llama.cpp's own.
    """
    from transformers import AutoTokenizer

    gguf_path = Path(gguf_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as exc:
        raise ModelError(f"cannot read the tokenizer of GGUF {gguf_path.name}: {exc}") from exc
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"{gguf_path.name} carries no chat template (tokenizer.chat_template)")
    tokenizer.save_pretrained(str(out))
