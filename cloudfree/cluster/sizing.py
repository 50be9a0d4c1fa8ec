"""Sizing rules, as plain functions: the pod of a flow run on Kubernetes (its result is a
deployment's ``job_variables``, which the Kubernetes work pool's base job template reads), and
the worker count of a Dask worker group for a given demand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cloudfree.cluster.specs import WorkerGroup
from cloudfree.errors import InvalidParameterError

#: Python, Prefect, GDAL's block cache (256 MB) and the Dask client, before any tile (GiB).
BASE_MEMORY_GIB = 1.5
#: Working copies of a tile cube in memory at once: the uint16 cube, its clear mask and the
#: float32 stack the median reduces.
CUBE_COPIES = 3
#: Memory a GPU pod needs beside the model on the device (GiB): batches, pinned buffers.
GPU_HOST_MEMORY_GIB = 16


@dataclass(frozen=True)
class PodSize:
    """Requests of one flow-run pod. ``cpu`` and ``memory`` are Kubernetes quantities."""

    cpu: str
    memory: str
    gpus: int = 0


def tile_cube_bytes(*, tile_size_px: int, n_dates: int, n_bands: int) -> int:
    """Bytes of one tile's uint16 time cube (time, band, y, x)."""
    return n_dates * n_bands * tile_size_px * tile_size_px * 2


def pod_size(
    *,
    tile_size_px: int = 512,
    n_dates: int = 36,
    n_bands: int = 7,
    concurrent_tiles: int = 1,
    gpus: int = 0,
) -> PodSize:
    """The pod a flow run needs.

    Memory holds ``concurrent_tiles`` tile cubes (:data:`CUBE_COPIES` working copies each)
    above :data:`BASE_MEMORY_GIB`, rounded up to whole GiB; a GPU pod gets at least
    :data:`GPU_HOST_MEMORY_GIB`. One core per concurrent tile, at most 8.

    Args:
        tile_size_px: grid tile edge in pixels.
        n_dates: scenes per tile in the window (36 is half a year of Sentinel-2 A+B).
        n_bands: bands read per scene, SCL included.
        concurrent_tiles: tiles processed at once in the pod.
        gpus: NVIDIA GPUs for the pod (training).
    """
    for name, value in (
        ("tile_size_px", tile_size_px),
        ("n_dates", n_dates),
        ("n_bands", n_bands),
        ("concurrent_tiles", concurrent_tiles),
    ):
        if value < 1:
            raise InvalidParameterError(name, value, "must be a positive integer")
    if gpus < 0:
        raise InvalidParameterError("gpus", gpus, "must be 0 or more")
    cube = tile_cube_bytes(tile_size_px=tile_size_px, n_dates=n_dates, n_bands=n_bands)
    memory_gib = math.ceil(BASE_MEMORY_GIB + concurrent_tiles * CUBE_COPIES * cube / 2**30)
    if gpus:
        memory_gib = max(memory_gib, GPU_HOST_MEMORY_GIB)
    cpu = min(8, max(1, concurrent_tiles)) + (3 if gpus else 0)
    return PodSize(cpu=str(cpu), memory=f"{memory_gib}Gi", gpus=gpus)


def job_variables(size: PodSize) -> dict[str, Any]:
    """``job_variables`` for a deployment or a run (``run_deployment(..., job_variables=)``).

    Memory limit equals the request (no overcommit, the OOM killer is predictable); CPU has
    no limit (no throttling). A GPU pod asks for ``nvidia.com/gpu`` as a string and lands on
    tainted GPU nodes.
    """
    variables: dict[str, Any] = {
        "cpu_request": size.cpu,
        "memory_request": size.memory,
        "memory_limit": size.memory,
    }
    if size.gpus:
        variables["gpu_limit"] = str(size.gpus)
        variables["node_selector"] = {"nvidia.com/gpu.present": "true"}
        variables["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    return variables


#: The pod shapes of the deployments in flows/prefect.yaml, which carries their job_variables.
DEPLOYMENT_SIZES: dict[str, dict[str, int]] = {
    # a region: 512 px tiles, half a year of scenes, four tiles at a time
    "regional-mosaic": {"tile_size_px": 512, "n_dates": 36, "concurrent_tiles": 4},
    # one AOI tile, a short window around the event, as fast as possible
    "disaster-response": {"tile_size_px": 1024, "n_dates": 12, "concurrent_tiles": 1},
    # the generator's training loop on one GPU
    "train": {"tile_size_px": 256, "n_dates": 36, "concurrent_tiles": 4, "gpus": 1},
}


def deployment_job_variables(deployment: str) -> dict[str, Any]:
    """The sizing part of a deployment's job_variables in flows/prefect.yaml."""
    try:
        shape = DEPLOYMENT_SIZES[deployment]
    except KeyError:
        raise InvalidParameterError(
            "deployment", deployment, f"use one of {', '.join(DEPLOYMENT_SIZES)}"
        ) from None
    return job_variables(pod_size(**shape))


def desired_workers(demand: int, *, current: int, group: WorkerGroup) -> int:
    """Workers a group should have for ``demand`` tasks: one task per thread, within the
    group's bounds, shrinking by at most one worker per step (as the operator's autoscaler)."""
    target = min(group.maximum, max(group.minimum, math.ceil(demand / group.threads)))
    if target < current:
        target = max(target, current - 1)
    return target
