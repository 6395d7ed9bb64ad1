"""Trained LoRA weights -> a llama.cpp LoRA adapter GGUF (the only importer of ``gguf``).

The layout is llama.cpp's own (``convert_lora_to_gguf.py``): ``general.type = adapter``,
``adapter.type = lora``, ``adapter.lora.alpha``, and for each adapted weight two float32
tensors ``<base tensor>.lora_a`` (rank x in) and ``<base tensor>.lora_b`` (out x rank).
llama.cpp applies ``B @ A * alpha / rank`` on top of the base weights, quantised or not,
so the base Q4_1 file stays as it is and the fine-tune survives whole (merging into a 4-bit
file kept about 6% of the weight change and lost the fine-tune: never do that).

llama.cpp's converter permutes the rows of Q and K for its rotary layout and transformers
undoes that when it reads a GGUF, so B (whose rows are the output rows) of ``q_proj`` and
``k_proj`` is permuted back here, exactly as ``convert_hf_to_gguf`` does for the weights.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError

Array = npt.NDArray[np.float32]
_MODULE = re.compile(r"model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)")
GGUF_NAMES = {
    "q_proj": "attn_q",
    "k_proj": "attn_k",
    "v_proj": "attn_v",
    "o_proj": "attn_output",
    "gate_proj": "ffn_gate",
    "up_proj": "ffn_up",
    "down_proj": "ffn_down",
}


def permute(rows: Array, n_head: int) -> Array:
    """convert_hf_to_gguf's Q/K row permutation (rotary halves -> interleaved pairs)."""
    out = rows.shape[0]
    permuted: Array = (
        rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )
    return permuted


def tensor_name(module: str) -> str:
    """``model.layers.3.self_attn.q_proj`` -> ``blk.3.attn_q.weight``."""
    match = _MODULE.fullmatch(module)
    if match is None or match.group(3) not in GGUF_NAMES:
        raise AgentError(f"no llama.cpp tensor for the adapted module {module}")
    return f"blk.{match.group(1)}.{GGUF_NAMES[match.group(3)]}.weight"


def write_adapter(
    path: Path,
    lora: dict[str, tuple[Array, Array]],
    *,
    alpha: float,
    n_head: int,
    n_head_kv: int,
    arch: str = "llama",
    name: str = "edge-agent tune",
) -> str:
    """Write the adapter GGUF to ``path``; returns its sha256."""
    import gguf

    if not lora:
        raise AgentError("no LoRA weights to write")
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    writer.add_name(name)
    for module, (a, b) in sorted(lora.items()):
        base = tensor_name(module)
        if module.endswith("q_proj"):
            b = permute(b, n_head)
        elif module.endswith("k_proj"):
            b = permute(b, n_head_kv)
        writer.add_tensor(f"{base}.lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(f"{base}.lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return file_sha256(path)


def zero_like(lora: dict[str, tuple[Array, Array]]) -> dict[str, tuple[Array, Array]]:
    """The same adapters with B = 0: no change to the model at all (peft's starting point)."""
    return {m: (a, np.zeros_like(b)) for m, (a, b) in lora.items()}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_adapter(path: Path) -> tuple[dict[str, tuple[Array, Array]], float]:
    """An adapter GGUF's tensors by base tensor name (A, B as stored) and its alpha."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    alpha_field = reader.get_field(gguf.Keys.Adapter.LORA_ALPHA)
    if alpha_field is None:
        raise AgentError(f"{path.name} is not a LoRA adapter GGUF")
    parts: dict[str, dict[str, Array]] = {}
    for t in reader.tensors:
        base, _, kind = t.name.rpartition(".")
        parts.setdefault(base, {})[kind] = np.array(t.data, dtype=np.float32)
    lora = {base: (p["lora_a"], p["lora_b"]) for base, p in parts.items()}
    return lora, float(alpha_field.contents())


def write_merged(base: Path, adapter: Path, dst: Path) -> None:
    """The base GGUF with the adapter merged into its weights (adapted tensors as F32, the
    rest and every metadata field copied as they are); quantize it afterwards (Q8_0 keeps
    the fine-tune, Q4_x does not)."""
    import gguf

    lora, alpha = read_adapter(adapter)
    reader = gguf.GGUFReader(str(base))
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    writer = gguf.GGUFWriter(str(dst), str(arch.contents()) if arch else "llama")
    for f in reader.fields.values():
        if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
            continue
        sub = f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(f.name, f.contents(), f.types[0], sub_type=sub)
    tensors = []
    for t in reader.tensors:
        if t.name in lora:
            a, b = lora.pop(t.name)
            w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            data = np.ascontiguousarray(w + (b @ a) * (alpha / a.shape[0]))
            writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes)
        else:
            data = t.data
            writer.add_tensor_info(t.name, data.shape, data.dtype, data.nbytes, t.tensor_type)
        tensors.append(data)
    if lora:
        raise AgentError(f"the base model has no tensor {next(iter(lora))}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for data in tensors:
        writer.write_tensor_data(data)
    writer.close()
