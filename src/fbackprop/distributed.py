"""Joining JAX's distributed runtime: one process per host (or per GPU), every process one
controller of the same program (``jax.distributed``; collectives over gloo on the CPU, NCCL on GPUs).

``initialize()`` is the first call of a multi-process script. Under ``python -m fbackprop.launch``
it reads the launcher's variables; under SLURM's ``srun``, Open MPI's ``mpirun`` or on a TPU pod it
calls ``jax.distributed.initialize()``, which finds the cluster in the scheduler's environment. Under
another scheduler, call ``jax.distributed.initialize(...)`` with its arguments first: ``initialize()``
then only reports the process's index and count.
"""

from __future__ import annotations

import os

import jax
import numpy as np

#: The variables ``python -m fbackprop.launch`` sets and ``initialize`` reads.
ENV_COORDINATOR, ENV_PROCESSES, ENV_ID = (
    "FBACKPROP_COORDINATOR",
    "FBACKPROP_NUM_PROCESSES",
    "FBACKPROP_PROCESS_ID",
)

#: Per scheduler, the variable that holds the number of processes it started: above 1, this process is
#: one of several, and ``jax.distributed.initialize()`` reads the cluster from the scheduler's variables.
#: SLURM's is the job step's, which ``srun`` sets (with the ``SLURM_STEP_NODELIST`` JAX reads): a script
#: run in an ``salloc`` shell, or in an ``sbatch`` script without ``srun``, is one process and joins nothing.
CLUSTER_VARIABLES = (
    "SLURM_STEP_NUM_TASKS",  # SLURM (srun)
    "OMPI_COMM_WORLD_SIZE",  # Open MPI (mpirun)
)


def _scheduled() -> bool:
    """Whether a scheduler started this process as one of several (``CLUSTER_VARIABLES``, a TPU pod)."""
    if len(os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",")) > 1:
        return True
    counts = [os.environ.get(name, "1") for name in CLUSTER_VARIABLES]
    several = [c.isdigit() and int(c) > 1 for c in counts]
    return (several[0] and "SLURM_STEP_NODELIST" in os.environ) or several[1]


def initialize() -> tuple[int, int]:
    """Join the distributed runtime (idempotent), with gloo collectives on the CPU.

    Under ``python -m fbackprop.launch`` it joins the launcher's coordinator; under a scheduler that
    started several processes (``srun``, ``mpirun``, a TPU pod: ``CLUSTER_VARIABLES``) it calls
    ``jax.distributed.initialize()``; otherwise it is one process and joins nothing. Call it before
    any other JAX call (JAX's rule for the distributed runtime).

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
    elif _scheduled():
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
