"""Data-parallel LoRA training on one node: one process per GPU (NCCL), or gloo processes on CPU.

The tune task's entry point is a Python function (a KFP component calling ``run_job``), so there is no
``torchrun`` in front of it: :func:`train_parallel` is the launcher. It starts ``world_size`` worker
processes (``torch.multiprocessing`` with the ``forkserver`` method: the server imports torch,
transformers and peft once, and every worker is forked from it, not from this process, so no CUDA
state or thread pool is inherited), each of which joins a process group over a file store, wraps the
objective in ``DistributedDataParallel`` and runs the same :class:`~tuneloop.providers.oss_lora.trainer.Run`
loop as one process, on its share of each global micro-batch (see trainer.py).

While they train, this process relays rank 0's log lines to ``log``, turns ``stop`` (a cancel, the
deadline) into a stop every rank sees at the same step (a checkpoint is written, then
:class:`~tuneloop.providers.oss_lora.trainer.TrainingStopped` is raised here), and re-raises a
worker's exception as itself (a refused resume is a ``CheckpointMismatch`` here too). A worker that
dies takes the others down (no rank waits forever in a collective).

World size (:func:`resolve_world_size`): the ``world_size`` setting, where 0 means one process per GPU
this task sees. On Vertex AI a task gets exactly the ``accelerator_count`` GPUs of the pipeline, so the
pipeline parameter decides it; on a machine without a GPU it is 1 (one process, the plain loop) unless
``world_size`` asks for gloo processes. When the container runtime lists the GPUs it granted the task
(``NVIDIA_VISIBLE_DEVICES=0,1,...`` or GPU UUIDs, and ``CUDA_VISIBLE_DEVICES`` does not pick a subset)
and torch sees fewer, the run is refused instead of silently training on fewer GPUs (or on the CPU):
the image's CUDA build does not fit the driver.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloop.examples import Example
from tuneloop.providers.oss_lora.config import LoraConfig

START_METHOD = "forkserver"
# What the fork server imports once for all workers (most of a worker's start-up time).
PRELOAD = ("torch", "torch.distributed", "transformers", "peft", "tuneloop.providers.oss_lora.trainer")
STOP_GRACE_S = 60.0  # how long an interrupted launcher waits for the ranks to checkpoint and exit


class WorldSizeError(ValueError):
    """``world_size`` asks for more GPU processes than the task has GPUs."""


def visible_gpus() -> int:
    """GPUs this process may use (``CUDA_VISIBLE_DEVICES`` respected; counted without creating a context)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def granted_gpus(environ: Any = None) -> int | None:
    """How many GPUs the container runtime granted this task, when it lists them
    (``NVIDIA_VISIBLE_DEVICES``); None when it does not say (unset, ``all``, ``none``, ``void``)."""
    value = (os.environ if environ is None else environ).get("NVIDIA_VISIBLE_DEVICES", "").strip()
    if value.lower() in ("", "all", "none", "void"):
        return None
    return len([d for d in value.split(",") if d.strip()])


def resolve_world_size(config: LoraConfig) -> int:
    """How many training processes: ``world_size``, or one per visible GPU when it is 0 (1 without GPUs).

    Raises:
        WorldSizeError: more GPU processes asked than GPUs visible, or the task was granted GPUs torch
            cannot see; naming the numbers and the fix.
    """
    gpus = 0 if config.device == "cpu" else visible_gpus()
    # CUDA_VISIBLE_DEVICES set: someone chose a subset of the granted GPUs on purpose
    granted = None if config.device == "cpu" or "CUDA_VISIBLE_DEVICES" in os.environ else granted_gpus()
    if granted is not None and gpus < granted:
        raise WorldSizeError(
            f"this task was granted {granted} GPU(s) (NVIDIA_VISIBLE_DEVICES="
            f"{os.environ.get('NVIDIA_VISIBLE_DEVICES')}) but torch sees {gpus}: the image's CUDA build does "
            "not fit the node's driver; use the tuneloop trainer-gpu image, or set device='cpu' to train on "
            "the CPU on purpose"
        )
    if config.world_size == 0:
        return max(1, gpus)
    if gpus and config.world_size > gpus:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise WorldSizeError(
            f"world_size: {config.world_size} training processes asked, but this task sees {gpus} GPU(s)"
            + (f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else "")
            + f"; set world_size to 0 (one process per GPU) or to at most {gpus}, or raise the pipeline's "
            f"accelerator_count to {config.world_size}"
        )
    return config.world_size


@dataclass
class Dist:
    """This process's place in the run: rank, world size, and a gloo group for CPU-side control values
    (stop flags, loss and eval sums, RNG states), so they never wait on the GPU stream."""

    rank: int
    world_size: int
    backend: str
    control: Any = None  # a gloo process group (None: the default group, already gloo)

    def any(self, flag: bool) -> bool:
        import torch
        import torch.distributed as td

        t = torch.tensor([1.0 if flag else 0.0])
        td.all_reduce(t, op=td.ReduceOp.MAX, group=self.control)
        return bool(t.item())

    def sum(self, values: Sequence[float]) -> list[float]:
        import torch
        import torch.distributed as td

        t = torch.tensor(list(values), dtype=torch.float64)
        td.all_reduce(t, group=self.control)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        import torch.distributed as td

        out: list[Any] = [None] * self.world_size
        td.all_gather_object(out, obj, group=self.control)
        return out

    def barrier(self) -> None:
        import torch.distributed as td

        td.barrier(group=self.control)


def data_parallel(model, objective: Callable[[Any], Any]):
    """``objective(batch) -> (nll, weights)`` as a DDP module over ``model``'s trainable parameters.

    The trainer computes its loss from the decoder and the LM head separately (logits only where there
    is a loss), so DDP wraps that objective, not the model's ``forward``. Gradients of the trainable
    (LoRA) tensors are averaged across ranks during backward; the frozen base has none.

    Every rank loaded the same base from disk and seeded the same LoRA init (or loaded the same
    checkpoint), so only the trainable tensors are broadcast from rank 0 (a guard, a few MB), not the whole
    base as DDP's own start-up sync would (16 GB for an 8B model in bf16).
    """
    import inspect

    import torch
    import torch.distributed as td
    from torch.nn.parallel import DistributedDataParallel

    class Objective(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # registers the parameters DDP synchronises

        def forward(self, batch):
            return objective(batch)

    options = inspect.signature(DistributedDataParallel.__init__).parameters
    kw: dict[str, Any] = {}
    if "init_sync" in options:
        kw["init_sync"] = False
    # buffers (rotary tables) are the same on every rank: no sync before each forward
    kw["forward_sync_buffers" if "forward_sync_buffers" in options else "broadcast_buffers"] = False
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                td.broadcast(p.data, src=0)
    # device_ids=None: the module lives on one device already and the batch is moved by the trainer.
    return DistributedDataParallel(Objective(), device_ids=None, **kw)


# -- the worker --------------------------------------------------------------------------------------


def _picklable(exc: BaseException) -> bytes:
    """``exc`` pickled (its own type, so the launcher re-raises it as itself), or a RuntimeError naming it."""
    try:
        blob = pickle.dumps(exc)
        pickle.loads(blob)
        return blob
    except Exception:  # noqa: BLE001 - any exception type can fail to pickle; fall back to its text
        return pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}"))


def _worker(rank: int, world_size: int, store_path: str, job: dict[str, Any], events, halt) -> None:
    """One rank: join the group, train its share, report to the launcher through ``events``."""
    import torch
    import torch.distributed as td

    from tuneloop.providers.oss_lora.trainer import Run, TrainingStopped

    cuda = job["cuda"]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one node: gloo talks over loopback
    if cuda:
        torch.cuda.set_device(rank)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    backend = "nccl" if cuda else "gloo"
    td.init_process_group(backend, store=td.FileStore(store_path, world_size), rank=rank, world_size=world_size)
    dist = Dist(rank, world_size, backend, td.new_group(backend="gloo") if cuda else None)

    def log(line: str) -> None:
        if rank == 0:
            events.put(("log", line))

    try:
        run = Run(job["config"], job["train"], job["validation"], base_model=job["base_model"],
                  run_dir=job["run_dir"], labels=job["labels"], data_hash=job["data_hash"], log=log, stop=halt,
                  dist=dist)
        result = run.train(stop_after=job["stop_after"])
    except TrainingStopped as exc:  # every rank stops at the same step, after rank 0 wrote the checkpoint
        if rank == 0:
            events.put(("stopped", rank, str(exc)))
        td.destroy_process_group()
        return
    except BaseException as exc:
        events.put(("error", rank, _picklable(exc), traceback.format_exc()))
        raise  # a non-zero exit: the launcher stops the other ranks
    if rank == 0:
        events.put(("result", result))
    td.destroy_process_group()


# -- the launcher ------------------------------------------------------------------------------------


def _drain(events, log: Callable[[str], None], outcome: dict[str, Any]) -> None:
    while True:
        try:
            item = events.get_nowait()
        except queue.Empty:
            return
        kind = item[0]
        if kind == "log":
            log(item[1])
        elif kind == "error":
            outcome.setdefault("errors", []).append(item[1:])
        else:
            outcome[kind] = item[-1]


def _raise_worker_error(outcome: dict[str, Any], world_size: int, cause: BaseException | None) -> None:
    errors = sorted(outcome.get("errors", []), key=lambda e: e[0])
    if errors:
        rank, blob, tb = errors[0]
        exc = pickle.loads(blob)
        raise exc from RuntimeError(f"in training process {rank} of {world_size}:\n{tb}")
    raise RuntimeError(
        f"oss-lora: a training process of {world_size} ended abnormally ({cause}); the run folder keeps the "
        "last checkpoint and a retry continues from it"
    ) from cause


def train_parallel(config: LoraConfig, train: Sequence[Example], validation: Sequence[Example], *,
                   base_model: str, run_dir: str | Path, world_size: int, labels: Sequence[str] = (),
                   data_hash: str | None = None, log: Callable[[str], None] = print, stop=None,
                   stop_after: int | None = None):
    """Train like :func:`tuneloop.providers.oss_lora.trainer.train`, in ``world_size`` processes.

    Same arguments and result (rank 0's :class:`TrainResult`), plus ``world_size`` (see
    :func:`resolve_world_size`) and ``stop_after`` (stop with a checkpoint after that step, for tests).

    Raises:
        TrainingStopped: ``stop`` was set (or ``stop_after`` reached); a checkpoint of that step exists.
        Exception: the first failing rank's own exception (e.g. ``CheckpointMismatch``).
    """
    import torch
    import torch.multiprocessing as tmp
    from torch.multiprocessing.spawn import ProcessException

    from tuneloop.examples import dataset_hash
    from tuneloop.providers.oss_lora.trainer import TrainingStopped

    if world_size < 2:
        raise ValueError(f"world_size: {world_size}; train_parallel needs 2 or more processes (1: trainer.train)")
    cuda = config.device != "cpu" and torch.cuda.is_available()
    if cuda and world_size > visible_gpus():
        raise WorldSizeError(f"world_size: {world_size} GPU processes but {visible_gpus()} GPUs are visible")
    ctx = multiprocessing.get_context(START_METHOD)
    ctx.set_forkserver_preload(list(PRELOAD))
    events, halt = ctx.Queue(), ctx.Event()
    store_dir = tempfile.mkdtemp(prefix="tuneloop-ddp-")
    job = {"config": config, "train": list(train), "validation": list(validation), "base_model": base_model,
           "run_dir": str(run_dir), "labels": tuple(labels), "stop_after": stop_after, "cuda": cuda,
           "data_hash": data_hash or dataset_hash([*train, *validation])}
    log(f"[oss-lora] data-parallel training: {world_size} processes ({'nccl, one per GPU' if cuda else 'gloo, CPU'})")
    procs = tmp.start_processes(_worker, args=(world_size, str(Path(store_dir) / "store"), job, events, halt),
                                nprocs=world_size, join=False, start_method=START_METHOD)
    outcome: dict[str, Any] = {}
    done = False
    try:
        while not done:
            _drain(events, log, outcome)
            if stop is not None and stop.is_set():
                halt.set()
            try:
                done = procs.join(timeout=0.2)
            except ProcessException as exc:  # a rank failed; join() has stopped the others
                done = True
                time.sleep(0.1)
                _drain(events, log, outcome)
                _raise_worker_error(outcome, world_size, exc)
    finally:
        if not done:  # interrupted here (a signal): let the ranks checkpoint and leave, then make them
            halt.set()
            deadline = time.monotonic() + STOP_GRACE_S
            for p in procs.processes:
                p.join(timeout=max(0.0, deadline - time.monotonic()))
            for p in procs.processes:
                if p.is_alive():
                    p.kill()
                    p.join()
        shutil.rmtree(store_dir, ignore_errors=True)
    _drain(events, log, outcome)
    if "errors" in outcome:
        _raise_worker_error(outcome, world_size, None)
    if "stopped" in outcome:
        raise TrainingStopped(outcome["stopped"])
    if "result" not in outcome:
        raise RuntimeError(f"oss-lora: the {world_size} training processes ended without a result from rank 0")
    return outcome["result"]


__all__ = ["Dist", "WorldSizeError", "data_parallel", "granted_gpus", "resolve_world_size", "train_parallel",
           "visible_gpus"]
