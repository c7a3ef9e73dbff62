"""What this CPU can compute fast: the one reader of `/proc/cpuinfo` for choosing arithmetic and runtimes.

Speed on a CPU depends on its matrix instructions far more than on its clock: AMX (Intel Sapphire Rapids
and later) multiplies bf16 and int8 tiles; AVX512-BF16/VNNI (AMD Zen 4, Intel Cascade/Ice Lake) multiply
bf16 and int8 vectors; an AVX2-only CPU has neither. Every speed figure in this project names its class.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CpuClass = Literal["amx", "avx512-vnni", "avx2", "other"]


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        """bfloat16 products in hardware (AVX512-BF16 or AMX); without them torch emulates bf16 slower than fp32."""
        return bool(self.flags & {"avx512_bf16", "amx_bf16"})

    @property
    def cpu_class(self) -> CpuClass:
        if "amx_bf16" in self.flags or "amx_int8" in self.flags:
            return "amx"
        if "avx512_vnni" in self.flags or "avx512vnni" in self.flags:
            return "avx512-vnni"
        if "avx2" in self.flags:
            return "avx2"
        return "other"


def read_cpu(cpuinfo: str | None = None) -> Cpu:
    """This machine's CPU (or the one `cpuinfo`, a /proc/cpuinfo text, describes); no flags off Linux."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    flags: set[str] = set()
    model = ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
        elif key.strip() == "model name" and not model:
            model = value.strip()
    return Cpu(model or platform.processor(), frozenset(flags))
