"""``--workers K``: several worker processes on one machine, each on its own GPUs (or CPU
threads)."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from errorentropy.errors import UserError
from errorentropy.sweep.claims import WORKER_ENV

if TYPE_CHECKING:
    pass


def worker_devices(
    k: int, device: str, device_map: str | None, visible: list[str] | None = None
) -> list[str | None]:
    """What ``CUDA_VISIBLE_DEVICES`` each of ``k`` workers gets (None: left as it is).

    On a machine with GPUs (``visible``, default: ``$CUDA_VISIBLE_DEVICES`` or every GPU torch
    sees) each worker gets its own GPU; with ``device_map`` (a model over several GPUs), its own
    block of GPUs; with more workers than GPUs they share them in turn. On the CPU: None.
    """
    if k < 1:
        raise UserError(f"--workers must be at least 1, got {k}")
    if device.startswith("cpu"):
        return [None] * k
    if visible is None:
        visible = _visible_gpus()
    if not visible:
        return [None] * k
    if device.startswith("cuda:") and k > 1:
        raise UserError(
            f'--workers gives each worker its own GPU; set [run] device = "auto" or "cuda", '
            f"not {device!r}"
        )
    if k > len(visible):
        return [visible[i % len(visible)] for i in range(k)]
    per = len(visible) // k if device_map else 1
    return [",".join(visible[i * per : (i + 1) * per]) for i in range(k)]


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def run_workers(command: list[str], devices: list[str | None]) -> list[int]:
    """Start one worker process per entry of ``devices`` (``command``: an ``errorentropy sweep``
    without ``--workers``), each labelled ``w0``, ``w1``, ... and pinned to its GPUs; on the CPU
    each gets ``cores / K`` threads unless ``OMP_NUM_THREADS`` is set. Returns their exit
    statuses once all have ended (an interrupt stops them all)."""
    threads = max(1, (os.cpu_count() or 1) // max(1, len(devices)))
    processes = []
    try:
        for i, device in enumerate(devices):
            env = {**os.environ, WORKER_ENV: f"w{i}" + (f" gpu {device}" if device else "")}
            if device is not None:
                env["CUDA_VISIBLE_DEVICES"] = device
            else:
                env.setdefault("OMP_NUM_THREADS", str(threads))
            processes.append(subprocess.Popen(command, env=env))
        return [p.wait() for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            p.wait()
