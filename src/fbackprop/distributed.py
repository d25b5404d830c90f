"""Joining JAX's distributed runtime: one process per host (or per GPU), every process one
controller of the same program (``jax.distributed``; collectives over gloo on the CPU, NCCL on GPUs).

``initialize()`` is the first call of a multi-process script. Under ``python -m fbackprop.launch``
it reads the launcher's variables; elsewhere it calls ``jax.distributed.initialize()``, which finds
the cluster from the scheduler's environment (SLURM, Open MPI, Kubernetes and others).
"""

from __future__ import annotations

import os

import jax

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
