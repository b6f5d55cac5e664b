"""Device mesh, multi-host start-up and shardings for data-parallel, FSDP and context-parallel training.

The mesh has three axes: ``data`` (pure data parallelism), ``fsdp`` (data parallelism whose
parameters and optimizer state are also split, ZeRO-3 style) and ``context`` (each sequence split
into equal parts, one per device; see ``bioxlstm_jax.nn.XLSTMBackbone``). Batches are split over
``data`` and ``fsdp`` along their rows and over ``context`` along their second (sequence) dimension;
parameters are replicated over ``data`` and ``context`` and, when ``fsdp > 1``, split over ``fsdp``
along their largest divisible dimension (a shape rule instead of per-module logical names, so every
model in ``bioxlstm_jax.nn`` is covered without annotations). Trace the model under
``jax.set_mesh(mesh)`` so that it sees the context axis.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bioxlstm_jax.nn.backbone import CONTEXT_AXIS

__all__ = ["initialize_distributed", "make_mesh", "batch_sharding", "param_shardings", "replicated", "global_batch"]

BATCH_AXES = ("data", "fsdp")


def initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None) -> bool:
    """Starts ``jax.distributed`` when this is one process of several; returns whether it did.

    Arguments win over the environment (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
    ``JAX_PROCESS_ID``); under SLURM with more than one task JAX detects everything itself. One
    process and no coordinator: nothing to do. On CPU the collectives go through gloo.
    """
    env = os.environ
    coordinator_address = coordinator_address or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    under_slurm = int(env.get("SLURM_NTASKS", "1")) > 1
    if coordinator_address is None and not under_slurm:
        if (num_processes or 1) > 1:
            raise ValueError(f"num_processes={num_processes} needs a coordinator address (host:port)")
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id)
    return True


def make_mesh(data: int = -1, fsdp: int = 1, context: int = 1, devices=None) -> Mesh:
    """A ``(data, fsdp, context)`` mesh over ``devices`` (default: every device of every process).

    ``data=-1`` takes what ``fsdp`` and ``context`` leave. The product must equal the number of
    devices. ``context`` is the innermost axis, and each group of ``context`` devices must belong to
    one process (the data pipeline gives each process whole sequences).
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    for name, size in (("fsdp", fsdp), ("context", context)):
        if size < 1 or n % size:
            raise ValueError(f"mesh: {name}={size} must divide the {n} devices")
    if data == -1:
        data = n // (fsdp * context)
    if data * fsdp * context != n:
        raise ValueError(f"mesh: data={data} x fsdp={fsdp} x context={context} != {n} devices")
    mesh = jax.make_mesh((data, fsdp, context), ("data", "fsdp", CONTEXT_AXIS), axis_types=(AxisType.Auto,) * 3,
                         devices=devices)
    groups = mesh.devices.reshape(-1, context)
    split = [g for g in groups if len({d.process_index for d in g}) > 1]
    if split:
        raise ValueError(f"mesh: context={context} puts the devices {[d.id for d in split[0]]} of several "
                         "processes in one context group; use a context size that divides the devices per process")
    return mesh


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
    """A batch array's sharding: rows over the ``data`` and ``fsdp`` axes, the second (sequence)
    dimension over ``context``."""
    spec = [None] * ndim
    spec[0] = BATCH_AXES
    if ndim > 1 and mesh.shape.get(CONTEXT_AXIS, 1) > 1:
        spec[1] = CONTEXT_AXIS
    return NamedSharding(mesh, P(*spec))


def param_shardings(params, mesh: Mesh, min_size: int = 2**14):
    """Shardings for a parameter (or optimizer-state) tree of arrays or ``ShapeDtypeStruct``.

    With ``fsdp == 1`` everything is replicated. Otherwise each leaf with at least ``min_size``
    elements is split over ``fsdp`` along its largest dimension divisible by the fsdp size; smaller
    leaves (biases, norms, scalars) stay replicated.
    """
    size = mesh.shape["fsdp"]

    def rule(x):
        shape = np.shape(x)
        if size == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
            return replicated(mesh)
        dims = sorted(range(len(shape)), key=lambda d: -shape[d])
        for d in dims:
            if shape[d] % size == 0:
                spec = [None] * len(shape)
                spec[d] = "fsdp"
                return NamedSharding(mesh, P(*spec))
        return replicated(mesh)

    return jax.tree.map(rule, params)


def global_batch(local_batch: dict, mesh: Mesh) -> dict:
    """Assembles each process's part of the batch (numpy, leading dim = local batch) into global arrays."""
    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)

    return jax.tree.map(put, local_batch)
