"""Device and precision policy: which device a run uses, in which precision and memory
layout, and how that machine is described in a run's provenance.

One place for these rules: `config.validate` checks a device name here, `train` and
`bench` pick the device, autocast and layout here, and every run directory records
`describe_device` and `machine` from here.
"""
from __future__ import annotations

import platform
from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
DEVICE_CHOICES = "one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"  # what `device` allows
# CPU features that decide convolution speed and bf16 support (/proc/cpuinfo's flags).
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def select_device(device: str) -> torch.device:
    """'auto' picks CUDA, then Apple's MPS, then the CPU; other names are taken as given."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_problem(device: str) -> str | None:
    """Why the device name `device` cannot be used on this machine (what is allowed
    instead), or None."""
    base = device.split(":")[0]
    if base not in DEVICES or (":" in device and base != "cuda"):
        return DEVICE_CHOICES
    if base == "cuda":
        if not torch.cuda.is_available():
            return "a device this machine has: no CUDA GPU is visible here; use 'auto' or 'cpu'"
        if ":" in device:
            idx = device.split(":")[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                return f"cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
    if base == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return "a device this machine has: MPS (Apple GPU) is not available here; use 'auto' or 'cpu'"
    return None


def cpu_prefers_bf16() -> bool:
    """Whether bf16 autocast trains faster than fp32 on this CPU, by its instruction-set
    flags: yes with native bf16 dot products (`avx512_bf16`) and no AMX tiles, no
    otherwise. Where each kind was measured, and by how much: results/README.md, "Which
    precision a CPU gets"; an unmeasured kind stays in fp32, which is never wrong."""
    flags = set(_cpuinfo().get("flags", "").split())
    return "avx512_bf16" in flags and "amx_bf16" not in flags


def autocast_for(device: torch.device, precision: str):
    """(autocast context, grad scaler) for `device` and the `precision` parameter.

    "auto" picks the faster precision on the machine at hand: on CUDA, bf16 where the GPU
    supports it, else fp16 with a scaler that keeps small gradients from underflowing; on
    a CPU, bf16 where `cpu_prefers_bf16` says so, else fp32; fp32 everywhere else (MPS).
    "fp32", "bf16" and "fp16" ask for one precision. The scaler is a pass-through
    (disabled) everywhere but fp16.
    """
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if precision == "auto" and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    elif precision == "auto" and device.type == "cpu" and cpu_prefers_bf16():
        dtype = torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if dtype is None:
        return nullcontext(), scaler
    return torch.autocast(device.type, dtype=dtype), scaler


def precision_name(device: torch.device, precision: str) -> str:
    """The compute precision `autocast_for` picks: bfloat16, float16 or float32."""
    autocast, _ = autocast_for(device, precision)
    return str(getattr(autocast, "fast_dtype", "float32")).replace("torch.", "")


def uses_channels_last(device: torch.device) -> bool:
    """channels_last (NHWC) memory layout: faster for convolutions on CUDA and on the CPU
    (oneDNN), measured by lab_utils.bench; MPS keeps the default."""
    return device.type in ("cuda", "cpu")


@lru_cache(maxsize=1)  # /proc/cpuinfo does not change while a process runs
def _cpuinfo() -> dict[str, str]:
    info = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _cpu_name(info: dict[str, str]) -> str:
    return info.get("model name") or platform.processor() or platform.machine()


def describe_device(device: torch.device) -> str:
    """A human-readable name of `device` for provenance (GPU model, or CPU and threads)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"CPU ({_cpu_name(_cpuinfo())}, {torch.get_num_threads()} threads)"
    return device.type


def machine(device: torch.device) -> dict[str, str]:
    """What a run records about the machine beside its numbers: the device's name, the
    CPU's model and speed-relevant flags, and the torch version (CUDA's too, on a GPU)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    note = {"device": describe_device(device), "torch": torch.__version__,
            "cpu": _cpu_name(info),
            "cpu_flags": " ".join(f for f in CPU_FLAGS if f in flags) or "unknown"}
    if device.type == "cuda":
        note["cuda"] = str(torch.version.cuda)
    return note
