"""GPU task settings: Vertex's accelerator names and counts, CPU and memory in the forms KFP takes."""

from __future__ import annotations

import pytest

from tuneloop.gpu import (
    ACCELERATORS,
    RETIRED,
    GpuSettingsError,
    check_gpu_settings,
    cpu_to_float,
    memory_to_gb,
    parse_gpu_option,
)


def test_every_accelerator_name_is_one_vertex_knows():
    from google.cloud.aiplatform_v1.types import AcceleratorType

    known = {a.name for a in AcceleratorType} - {"ACCELERATOR_TYPE_UNSPECIFIED"}
    assert set(ACCELERATORS) <= known
    assert known - set(ACCELERATORS) <= set(RETIRED)  # nothing Vertex sells is missing


def test_good_settings_come_back_canonical():
    s = check_gpu_settings("NVIDIA_H100_80GB", 8.0, 96, "1360Gi")  # KFP hands numbers over as floats
    assert (s.accelerator_type, s.accelerator_count, s.cpu_limit, s.memory_limit) == (
        "NVIDIA_H100_80GB", 8, "96", "1360Gi")
    assert check_gpu_settings("NVIDIA_L4", "2", "500m", "16G").cpu == 0.5


@pytest.mark.parametrize(
    "kwargs, parameter, hint",
    [
        ({"accelerator_type": "NVIDIA_L4 "}, "accelerator_type", "did you mean 'NVIDIA_L4'"),
        ({"accelerator_type": "nvidia-l4"}, "accelerator_type", "did you mean 'NVIDIA_L4'"),
        ({"accelerator_type": "A100"}, "accelerator_type", "did you mean 'NVIDIA_TESLA_A100'"),
        ({"accelerator_type": "H200"}, "accelerator_type", "did you mean 'NVIDIA_H200_141GB'"),
        ({"accelerator_type": "TPU_V9"}, "accelerator_type", "valid names are"),
        ({"accelerator_type": ""}, "accelerator_type", "NVIDIA_L4"),
        ({"accelerator_type": "NVIDIA_TESLA_K80"}, "accelerator_type", "end of support"),
        ({"accelerator_count": 0}, "accelerator_count", ">= 1"),
        ({"accelerator_count": 1.5}, "accelerator_count", "whole number"),
        ({"accelerator_count": True}, "accelerator_count", "whole number"),
        ({"accelerator_count": 3}, "accelerator_count", "use one of [1, 2, 4, 8] (closest: 2)"),
        ({"accelerator_type": "NVIDIA_H200_141GB", "accelerator_count": 1}, "accelerator_count", "[8]"),
        ({"cpu_limit": "8 vCPU"}, "cpu_limit", "write '8'"),
        ({"cpu_limit": "-1"}, "cpu_limit", "millicores"),
        ({"cpu_limit": "0"}, "cpu_limit", "more than 0"),
        ({"memory_limit": "32GB"}, "memory_limit", "write '32G'"),
        ({"memory_limit": "32gi"}, "memory_limit", "write '32Gi'"),
        ({"memory_limit": "32 G"}, "memory_limit", "write '32G'"),
        ({"memory_limit": "0.5T"}, "memory_limit", "write '500G'"),
        ({"memory_limit": "lots"}, "memory_limit", "e.g. '32G'"),
        ({"memory_limit": "0"}, "memory_limit", "more than 0"),
    ],
)
def test_bad_settings_name_the_parameter_the_value_and_the_fix(kwargs, parameter, hint):
    with pytest.raises(GpuSettingsError) as info:
        check_gpu_settings(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{parameter}=") and hint in message, message


def test_the_gpu_option_takes_type_and_count():
    assert parse_gpu_option("NVIDIA_A100_80GB:4") == ("NVIDIA_A100_80GB", 4)
    assert parse_gpu_option("NVIDIA_L4") == ("NVIDIA_L4", 1)
    with pytest.raises(GpuSettingsError, match="--gpu count=5"):
        parse_gpu_option("NVIDIA_L4:5")


@pytest.mark.parametrize("memory", ["32G", "30Gi", "512Mi", "1T", "2Ti", "64000000000", "800K", "1Pi"])
def test_memory_and_cpu_numbers_equal_what_kfp_writes(memory):
    from kfp.compiler import compiler_utils

    assert memory_to_gb(memory) == pytest.approx(compiler_utils._memory_to_float(memory))
    for cpu in ("8", "0.5", "250m"):
        assert cpu_to_float(cpu) == compiler_utils._cpu_to_float(cpu)


def test_the_pipelines_defaults_pass_the_check():
    from tuneloop.pipelines.gpu import DEFAULT_ACCELERATOR, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT

    s = check_gpu_settings(DEFAULT_ACCELERATOR, 1, DEFAULT_CPU_LIMIT, DEFAULT_MEMORY_LIMIT)
    assert s.to_dict() == {"accelerator_type": "NVIDIA_L4", "accelerator_count": 1, "cpu_limit": "8",
                           "memory_limit": "32G"}
