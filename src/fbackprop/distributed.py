"""Joining JAX's distributed runtime: one process per host (or per GPU), every process one
controller of the same program (``jax.distributed``; collectives over gloo on the CPU, NCCL on GPUs).

``initialize()`` is the first call of a multi-process script. Under ``python -m fbackprop.launch``
it reads the launcher's variables; elsewhere it calls ``jax.distributed.initialize()``, which finds
the cluster from the scheduler's environment (SLURM, Open MPI, Kubernetes and others).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from .launch import ENV_COORDINATOR, ENV_ID, ENV_PROCESSES

#: Variables whose presence says a scheduler started this process as one of several (SLURM, Open MPI,
#: MPICH's PMI, JAX's own, a TPU pod): then ``jax.distributed.initialize()`` reads the cluster from them.
CLUSTER_VARIABLES = (
    "SLURM_JOB_ID",
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "JAX_COORDINATOR_ADDRESS",
    "TPU_WORKER_HOSTNAMES",
)


def initialize() -> tuple[int, int]:
    """Join the distributed runtime (idempotent), with gloo collectives on the CPU.

    Under ``python -m fbackprop.launch`` it joins the launcher's coordinator; under a scheduler (one of
    ``CLUSTER_VARIABLES`` set) it calls ``jax.distributed.initialize()``; otherwise it is one process
    and joins nothing. Call it before any other JAX call (JAX's rule for the distributed runtime).

    Returns:
        ``(process_index, process_count)``.

    Examples:
        >>> fb.distributed.initialize()  # one process, no launcher or scheduler: nothing to join
        (0, 1)
    """
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    if ENV_COORDINATOR in os.environ:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=os.environ[ENV_COORDINATOR],
            num_processes=int(os.environ[ENV_PROCESSES]),
            process_id=int(os.environ[ENV_ID]),
        )
    elif any(v in os.environ for v in CLUSTER_VARIABLES):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def global_batch(*arrays):
    """This process's rows of each array, joined with every other process's into one global batch.

    Each returned array's rows are split over every device of every process (a ``"batch"`` axis over
    ``jax.devices()``): process 0's rows first, then process 1's, and so on. Passed to ``fb.train``,
    ``fb.levenberg_marquardt`` or a curvature product, the batch mean, its gradient and its curvature
    are those of all rows; XLA sums the per-device partial sums across processes (an all-reduce).
    With one process it is ``fb.sharding.shard_batch``.

    Args:
        *arrays: this process's rows, e.g. ``x_local`` and ``y_local``, each with the same number of
            rows; every process passes as many, a multiple of its number of devices.

    Returns:
        A tuple of global ``jax.Array``s, one per argument, of ``process_count()`` times as many rows.

    Raises:
        ValueError: when the arrays' row counts differ, or differ between processes, or do not split
            evenly over this process's devices.

    Examples:
        >>> x, y = fb.distributed.global_batch(np.ones((4, 2)), np.zeros((4, 1)))  # one process
        >>> x.shape, y.shape
        ((4, 2), (4, 1))
    """
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    arrays = [np.asarray(a) for a in arrays]
    rows = {a.shape[0] if a.ndim else None for a in arrays}
    if len(rows) != 1 or None in rows:
        got = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(f"global_batch: the arrays must share their number of rows; got shapes {got}")
    n_local, n_dev = rows.pop(), jax.local_device_count()
    counts = np.asarray(multihost_utils.process_allgather(np.int64(n_local))).reshape(-1)
    if len(set(counts.tolist())) != 1 or n_local % n_dev:
        per = ", ".join(f"process {i}: {int(c)}" for i, c in enumerate(counts))
        raise ValueError(
            f"global_batch: every process must pass the same number of rows, a multiple of its {n_dev} "
            f"device(s); got {per} (drop or repeat rows to even them)"
        )
    sharding = NamedSharding(Mesh(np.array(jax.devices()), ("batch",)), PartitionSpec("batch"))
    return tuple(jax.make_array_from_process_local_data(sharding, a) for a in arrays)
