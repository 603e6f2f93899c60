"""GPU task settings: Vertex accelerator names and counts, CPU and memory in the forms KFP accepts.

A GPU task's ``accelerator_type``, ``accelerator_count``, ``cpu_limit`` and ``memory_limit`` are
pipeline parameters by default (one template, any machine shape per run) or constants compiled into
the template (``tuneloop compile --gpu NVIDIA_L4:1 --cpu 8 --memory 32G``). Either way they are
checked here: by the run's first task for parameters, by ``compile`` for constants, so a typo fails
in seconds with the parameter, the value and a close match, not after the other tasks ran.

Vertex builds the machine from these limits (an L4 count picks a ``g2-standard`` shape, an A100 an
``a2`` one, ...); a count the accelerator is not sold in fails here, listing the counts that exist.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

# The pipeline parameters these settings come from (every GPU pipeline declares all four).
PARAMETERS = ("accelerator_type", "accelerator_count", "cpu_limit", "memory_limit")

# Vertex AI accelerator types (google.cloud.aiplatform.v1 AcceleratorType) -> the counts one machine
# takes (the a2/a3/a4/g2/g4/n1 machine shapes at the time of writing). tests/unit/test_gpu.py checks
# that every name here is one the installed aiplatform client knows.
ACCELERATORS: Mapping[str, tuple[int, ...]] = {
    "NVIDIA_L4": (1, 2, 4, 8),
    "NVIDIA_TESLA_T4": (1, 2, 4),
    "NVIDIA_TESLA_V100": (1, 2, 4, 8),
    "NVIDIA_TESLA_P4": (1, 2, 4),
    "NVIDIA_TESLA_P100": (1, 2, 4),
    "NVIDIA_TESLA_A100": (1, 2, 4, 8, 16),
    "NVIDIA_A100_80GB": (1, 2, 4, 8),
    "NVIDIA_H100_80GB": (1, 2, 4, 8),
    "NVIDIA_H100_MEGA_80GB": (8,),
    "NVIDIA_H200_141GB": (8,),
    "NVIDIA_B200": (8,),
    "NVIDIA_GB200": (4,),
    "NVIDIA_RTX_PRO_6000": (1, 2, 4, 8),
    "TPU_V2": (8,),
    "TPU_V3": (8,),
    "TPU_V4_POD": (4,),
    "TPU_V5_LITEPOD": (1, 4, 8),
}
RETIRED = {"NVIDIA_TESLA_K80": "reached end of support on Google Cloud (2024)"}

# What KFP's set_cpu_limit / set_memory_limit accept (kfp.dsl.pipeline_task), nothing wider.
CPU_FORMAT = re.compile(r"^([0-9]*[.])?[0-9]+m?$")
MEMORY_FORMAT = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_MEMORY_UNITS = {
    "E": 10**18, "Ei": 2**60, "P": 10**15, "Pi": 2**50, "T": 10**12, "Ti": 2**40,
    "G": 10**9, "Gi": 2**30, "M": 10**6, "Mi": 2**20, "K": 10**3, "Ki": 2**10, "": 1,
}


class GpuSettingsError(ValueError):
    """A GPU setting is invalid; the message names the parameter, the value and the fix."""


@dataclass(frozen=True)
class GpuSettings:
    """A checked set of GPU task settings (the four values in the forms KFP and Vertex take).

    Attributes:
        accelerator_type: Vertex accelerator, e.g. ``NVIDIA_L4``.
        accelerator_count: How many on the task's machine.
        cpu_limit: vCPUs, e.g. ``"8"`` or ``"500m"``.
        memory_limit: Memory, e.g. ``"32G"`` or ``"30Gi"``.
    """

    accelerator_type: str
    accelerator_count: int
    cpu_limit: str
    memory_limit: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def cpu(self) -> float:
        """vCPUs as KFP's legacy ``cpuLimit`` field holds them."""
        return cpu_to_float(self.cpu_limit)

    @property
    def memory_gb(self) -> float:
        """Memory in GB (10^9 bytes) as KFP's legacy ``memoryLimit`` field holds it."""
        return memory_to_gb(self.memory_limit)


def _near(value: str, names: list[str]) -> str | None:
    v = value.strip().upper().replace("-", "_").replace(" ", "_")
    if v in names:
        return v
    contains = [n for n in names if v and (n.endswith("_" + v) or ("_" + v + "_") in n or v in n)]
    if contains:
        return contains[0]
    hit = difflib.get_close_matches(v, names, n=1, cutoff=0.6)
    return hit[0] if hit else None


def check_accelerator_type(value: Any, where: str = "accelerator_type") -> str:
    """A Vertex accelerator name (exactly as Vertex spells it).

    Raises:
        GpuSettingsError: an unknown or retired name, with the closest valid one.
    """
    if not isinstance(value, str) or not value.strip():
        raise GpuSettingsError(f"{where}={value!r}: give a Vertex accelerator such as NVIDIA_L4; one of {list(ACCELERATORS)}")
    if value in ACCELERATORS:
        return value
    if value.strip().upper() in RETIRED:
        raise GpuSettingsError(
            f"{where}={value!r} {RETIRED[value.strip().upper()]}; use NVIDIA_L4 or NVIDIA_TESLA_T4 instead"
        )
    near = _near(value, list(ACCELERATORS))
    hint = f"did you mean {near!r}? " if near else ""
    raise GpuSettingsError(
        f"{where}={value!r} is not a Vertex accelerator type; {hint}valid names are {list(ACCELERATORS)}"
    )


def check_accelerator_count(value: Any, accelerator_type: str, where: str = "accelerator_count") -> int:
    """A count the accelerator is sold in (whole floats such as KFP's ``1.0`` are accepted).

    Raises:
        GpuSettingsError: not a whole number >= 1, or a count no machine of that accelerator has.
    """
    count: int | None = None
    if isinstance(value, bool):
        count = None
    elif isinstance(value, int):
        count = value
    elif isinstance(value, float) and value.is_integer():
        count = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        count = int(value.strip())
    if count is None or count < 1:
        raise GpuSettingsError(f"{where}={value!r} must be a whole number >= 1 (accelerators on the task's machine)")
    allowed = ACCELERATORS[accelerator_type]
    if count not in allowed:
        below = [c for c in allowed if c <= count]
        near = below[-1] if below else allowed[0]
        raise GpuSettingsError(
            f"{where}={count}: Vertex has no machine with {count} x {accelerator_type}; "
            f"use one of {list(allowed)} (closest: {near})"
        )
    return count


def check_cpu_limit(value: Any, where: str = "cpu_limit") -> str:
    """vCPUs as KFP takes them: ``"8"``, ``"0.5"`` or ``"500m"`` (a number is turned into that string).

    Raises:
        GpuSettingsError: another form (``"8 cores"``, ``"8vCPU"``, ``-1``...), or not > 0.
    """
    text = _number_text(value)
    if text is None or not CPU_FORMAT.match(text):
        stripped = re.sub(r"(?i)\s*(v?cpus?|cores?)$", "", str(value).strip())
        hint = f"; write {stripped!r}" if stripped != str(value).strip() and CPU_FORMAT.match(stripped) else ""
        raise GpuSettingsError(
            f"{where}={value!r} is not a CPU quantity KFP accepts (a number of vCPUs such as '8' or '0.5', "
            f"or millicores such as '500m'){hint}"
        )
    if cpu_to_float(text) <= 0:
        raise GpuSettingsError(f"{where}={value!r} must be more than 0 vCPUs")
    return text


def check_memory_limit(value: Any, where: str = "memory_limit") -> str:
    """Memory as KFP takes it: a whole number with an optional unit ``K M G T P E`` or ``Ki ... Ei``.

    Raises:
        GpuSettingsError: another form (``"32GB"``, ``"32g"``, ``"1.5Gi"``...), with the spelling to use.
    """
    text = _number_text(value)
    if text is not None and MEMORY_FORMAT.match(text):
        if memory_to_gb(text) <= 0:
            raise GpuSettingsError(f"{where}={value!r} must be more than 0 bytes")
        return text
    raw = str(value).strip()
    m = re.fullmatch(r"(?i)([0-9]+(?:\.[0-9]+)?)\s*([kmgtpe])(i?)(b|ib)?", raw)
    fix = ""
    if m:
        number, unit, binary, suffix = m.groups()
        unit = unit.upper()
        binary = "i" if binary or (suffix or "").lower() == "ib" else ""
        if "." in number:
            factor = 1024 if binary else 1000
            smaller = {"K": "", "M": "K", "G": "M", "T": "G", "P": "T", "E": "P"}[unit]
            whole = float(number) * factor
            if whole.is_integer() and smaller:
                fix = f"; KFP takes whole numbers: write '{int(whole)}{smaller}{binary}'"
        else:
            fix = f"; write '{number}{unit}{binary}'"
    raise GpuSettingsError(
        f"{where}={value!r} is not a memory quantity KFP accepts (a whole number with an optional unit "
        f"K, M, G, T, P, E or Ki, Mi, Gi, Ti, Pi, Ei, e.g. '32G' or '30Gi'){fix}"
    )


def check_gpu_settings(
    accelerator_type: Any = "NVIDIA_L4",
    accelerator_count: Any = 1,
    cpu_limit: Any = "8",
    memory_limit: Any = "32G",
) -> GpuSettings:
    """Check the four GPU task settings; returns them in canonical form.

    Call it from the run's first task with the pipeline's parameters (``accelerator_type``,
    ``accelerator_count``, ``cpu_limit``, ``memory_limit``); ``tuneloop compile --gpu`` calls it for
    constants. Errors name the parameter, the value and the fix (a close match where there is one).

    Raises:
        GpuSettingsError: the first invalid setting.
    """
    kind = check_accelerator_type(accelerator_type)
    return GpuSettings(
        accelerator_type=kind,
        accelerator_count=check_accelerator_count(accelerator_count, kind),
        cpu_limit=check_cpu_limit(cpu_limit),
        memory_limit=check_memory_limit(memory_limit),
    )


def parse_gpu_option(value: str) -> tuple[str, int]:
    """``--gpu NVIDIA_L4:2`` -> ``("NVIDIA_L4", 2)``; the count defaults to 1.

    Raises:
        GpuSettingsError: a bad name or count, named as ``--gpu``.
    """
    name, sep, count = str(value).partition(":")
    kind = check_accelerator_type(name.strip(), "--gpu")
    return kind, check_accelerator_count(count.strip() if sep else 1, kind, "--gpu count")


def cpu_to_float(cpu: str) -> float:
    """``"500m"`` -> 0.5, ``"8"`` -> 8.0 (the value KFP writes into the legacy ``cpuLimit``)."""
    return float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)


def memory_to_gb(memory: str) -> float:
    """``"32G"`` -> 32.0, ``"30Gi"`` -> 32.212254720 (GB, the value of KFP's legacy ``memoryLimit``)."""
    m = MEMORY_FORMAT.match(memory)
    if not m:
        raise GpuSettingsError(f"memory {memory!r} is not a KFP memory quantity")
    unit = m.group(1) or ""
    return float(memory[: len(memory) - len(unit)]) * _MEMORY_UNITS[unit] / 10**9


def _number_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        return value.strip()
    return None
