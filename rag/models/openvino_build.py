"""The openvino prepared folder: the packaged GGUF as an OpenVINO model with int8 weights, built once.

Why this recipe (measured on 2 cores, Qwen2.5-Coder-1.5B, see the README's runtime table):
* OpenVINO GenAI reads a GGUF itself and keeps Q4_K blocks as 4-bit weights in groups of 32 with a
  zero point; its CPU kernels decode that layout at 5.5-5.8 tokens/s here, slower than per-channel int8
  (7.2-7.6) and barely faster than torch's bf16 (4.2), and it repeats the conversion at every load.
* So the GGUF is converted once (`enable_save_ov_model`), each weight's dequantization subgraph is
  evaluated to the float16 values the GGUF encodes, and NNCF compresses them again as int8 with one
  scale and zero point per output channel (`INT8_ASYM`). Int8 per channel of weights that sit on a 4-bit
  grid loses almost nothing (the answers match the transformers runtime's on our checks); 4-bit
  groups of 128 decode faster still but requantize already-quantized weights, which changed answers.
* The HF tokenizer read from the same GGUF is saved beside the model, so prompts are rendered and
  counted exactly as by the other runtimes; OpenVINO's own tokenizer and detokenizer models (written by
  GenAI) are kept because its pipeline needs them to load.

Peak memory while building is about 6.5 GB for the 1.5B (the float16 weights are held once), so the
build runs in a child process (`build_in_child`): the server that prepares its model at first start
does not keep that peak as its own, and running the result needs ~3.4 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rag.errors import ModelError

MODEL_XML = "openvino_model.xml"
WEIGHTS = "int8_asym"  # the weight format recorded in the manifest and reported as the generator's mode


def build_in_child(gguf: Path, out: Path) -> dict:
    """`build_openvino_folder` in a fresh Python process (see the module docstring); its manifest facts."""
    proc = subprocess.run([sys.executable, "-m", "rag.models.openvino_build", str(gguf), str(out)],
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise ModelError(f"converting {Path(gguf).name} to OpenVINO failed (exit code {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-1500:]}", code="model_load_failed")
    return json.loads(lines[-1])


def build_openvino_folder(gguf: Path, out: Path) -> dict:
    """Writes the int8 OpenVINO model of `gguf`, its tokenizers and the HF tokenizer into `out`."""
    from rag.models.gguf_build import gguf_metadata, save_gguf_tokenizer

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".ov-convert-") as scratch:
        link = Path(scratch) / "model.gguf"
        if not _write_readable_gguf(Path(gguf), link):
            os.symlink(Path(gguf).resolve(), link)
        _convert_gguf(link)
        model = _requantize(Path(scratch) / MODEL_XML)
        _save(model, out / MODEL_XML)
        for name in os.listdir(scratch):
            if name.startswith(("openvino_tokenizer", "openvino_detokenizer")):
                shutil.copy(Path(scratch) / name, out / name)
    save_gguf_tokenizer(gguf, out)
    return {"gguf": gguf_metadata(gguf), "openvino": {"weights": WEIGHTS, "build_s": round(time.monotonic() - t0, 1)}}


# Tensor types OpenVINO GenAI's GGUF reader accepts (2026.4); it refuses others (the 0.5B's Q5_0) outright.
READABLE = frozenset({"F32", "F16", "BF16", "Q4_0", "Q4_1", "Q4_K", "Q6_K", "Q8_0"})


def _write_readable_gguf(gguf: Path, out: Path) -> bool:
    """When `gguf` holds tensor types GenAI cannot read, writes a copy to `out` with those tensors
    dequantized to float16 (everything else byte for byte, metadata unchanged) and returns True; the
    int8 recompression below treats them like the others. False: `gguf` is readable as it is."""
    import gguf as gg
    import numpy as np

    reader = gg.GGUFReader(str(gguf))
    if all(t.tensor_type.name in READABLE for t in reader.tensors):
        return False
    arch = reader.fields["general.architecture"].contents()
    writer = gg.GGUFWriter(str(out), arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gg.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for t in reader.tensors:
        if t.tensor_type.name in READABLE:
            writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
        else:
            writer.add_tensor(t.name, gg.quants.dequantize(t.data, t.tensor_type).astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return True


def _convert_gguf(gguf: Path) -> None:
    """OpenVINO GenAI's own GGUF reader builds the model graph and saves it beside the file."""
    import openvino_genai

    try:
        openvino_genai.LLMPipeline(str(gguf), "CPU", enable_save_ov_model=True)
    except Exception as exc:
        raise ModelError(f"OpenVINO cannot convert {gguf.name}: {exc}", code="model_load_failed") from exc
    if not (gguf.parent / MODEL_XML).is_file():
        raise ModelError(f"OpenVINO wrote no {MODEL_XML} for {gguf.name}", code="model_load_failed")


def _requantize(xml: Path):
    """The model with every GGUF-quantized weight replaced by its float16 values, then int8 per channel."""
    import logging

    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # not its per-layer statistics table on every prepare
    core = ov.Core()
    model = core.read_model(str(xml))
    replaced = 0
    for op in model.get_ordered_ops():
        weight_input = _quantized_weight_input(op)
        if weight_input is not None:
            weight_input.replace_source_output(_float16_weight(core, weight_input).output(0))
            replaced += 1
    if replaced == 0:
        raise ModelError(f"{xml.parent.name}: no GGUF-quantized weights found to convert", code="model_load_failed")
    return nncf.compress_weights(model, mode=nncf.CompressWeightsMode.INT8_ASYM)


def _quantized_weight_input(op):
    """The weight input of a MatMul (or the embedding Gather) fed by GenAI's dequantization subgraph
    (Constant u4/u8 -> Convert -> Subtract -> Multiply -> Reshape -> Convert f32), else None."""
    kind = op.get_type_name()
    if kind not in ("MatMul", "Gather"):
        return None
    weight_input = op.input(1 if kind == "MatMul" else 0)
    convert = weight_input.get_source_output().get_node()
    if convert.get_type_name() != "Convert" or convert.get_input_size() != 1:
        return None
    return weight_input if convert.input_value(0).get_node().get_type_name() == "Reshape" else None


def _float16_weight(core, weight_input):
    """Evaluates the dequantization subgraph once and returns its values as float16 -> float32 constants,
    the form NNCF recognises as a compressible weight."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    reshape = weight_input.get_source_output().get_node().input_value(0)
    values = core.compile_model(ov.Model([reshape], [], "weight"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({})[0]
    return ops.convert(ops.constant(np.asarray(values).astype(np.float16)), ov.Type.f32)


def _save(model, path: Path) -> None:
    import openvino as ov

    ov.save_model(model, str(path), compress_to_fp16=False)


if __name__ == "__main__":
    print(json.dumps(build_openvino_folder(Path(sys.argv[1]), Path(sys.argv[2]))))
