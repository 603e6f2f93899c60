"""The GPU task settings the pipelines share: defaults and the one place they are applied to a task."""

from tuneloop.components.images import GPU_IMAGE

# The observation-classifier system's custom job: one L4 on a g2-standard-8.
DEFAULT_ACCELERATOR = "NVIDIA_L4"
DEFAULT_CPU_LIMIT = "8"
DEFAULT_MEMORY_LIMIT = "32G"


def on_gpu(task, accelerator_type, accelerator_count, cpu_limit, memory_limit):
    """Run ``task`` on the CUDA trainer image with the accelerator and machine size from the parameters.

    Vertex picks the machine type from these limits; ``kfp.local`` ignores them (and says so).
    """
    return (
        task.set_container_image(GPU_IMAGE)
        .set_accelerator_type(accelerator_type)
        .set_accelerator_limit(accelerator_count)
        .set_cpu_limit(cpu_limit)
        .set_memory_limit(memory_limit)
    )
