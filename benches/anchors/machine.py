"""The machine a benchmark ran on, recorded with its results: machines of this kind differ
in AVX-512, and measured ratios move with it."""

import platform
from pathlib import Path


def cpu():
    """(CPU model, the SIMD flags that matter here)."""
    model, flags = platform.processor(), []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = [f for f in ("avx2", "avx512f") if f in line.split()]
            break
    return model, flags
