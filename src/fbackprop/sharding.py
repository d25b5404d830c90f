"""Placement over devices: the batch split over them (``shard_batch``) or the runs (``shard_runs``).

Used by ``fb.train(data_parallel=True)``, ``fb.train_many`` and ``fb.levenberg_marquardt``; on one
device both are the identity.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def shard_batch(x, y):
    """Data parallelism: split the batch over every local device ("sum the deltas").

    Each device runs forward and backward on its rows; the sums over the batch in
    ``dW = delta.T @ a`` and ``db = sum(delta)`` become per-device partial sums that XLA adds
    across devices (an all-reduce). Parameters stay replicated. The same code runs unchanged on
    one device.

    Args:
        x: inputs ``(N, n_in)``.
        y: targets with N rows.

    Returns:
        ``(x, y)`` placed with their rows split over the devices (unchanged on one device).

    Raises:
        ValueError: when N does not divide evenly by the number of devices.
    """
    devices = jax.local_devices()
    if len(devices) == 1 or not getattr(x, "is_fully_addressable", True):  # one device, or global already
        return x, y
    if x.shape[0] % len(devices):
        raise ValueError(
            f"data_parallel: the batch of {x.shape[0]} examples does not split evenly over "
            f"{len(devices)} devices"
        )
    sharding = NamedSharding(Mesh(np.array(devices), ("batch",)), PartitionSpec("batch"))
    return jax.device_put(x, sharding), jax.device_put(y, sharding)


def batch_sharding(x, rows: int):
    """The placement of ``x``'s rows, to give each step's mini-batch of ``rows`` rows, or ``None``.

    A mini-batch drawn from a batch split over several devices is gathered from the devices that hold
    its rows; placed like the batch again, its gradient is computed by every device on its share (an
    all-reduce of the gradient) instead of whole on every device.

    Args:
        x: the inputs, placed by ``shard_batch`` or ``fb.distributed.global_batch`` (or not at all).
        rows: the mini-batch size.

    Returns:
        ``x``'s ``NamedSharding`` when it splits the rows over more than one device and ``rows``
        splits evenly over them; otherwise ``None``.
    """
    sharding = getattr(x, "sharding", None)
    if not isinstance(sharding, NamedSharding) or sharding.num_devices < 2 or not sharding.spec:
        return None
    return sharding if sharding.spec[0] is not None and rows % sharding.num_devices == 0 else None


def shard_runs(tree):
    """Spread the leading (run) axis over every local device when it divides evenly.

    Independent runs need no communication, so each device (each core with
    ``--xla_force_host_platform_device_count``) trains its share.

    Args:
        tree: a pytree whose leaves share a leading run axis K.

    Returns:
        The tree, placed over the devices; unchanged on one device, when K does not divide evenly,
        or under ``jit``.
    """
    devices = jax.local_devices()
    K = jax.tree.leaves(tree)[0].shape[0]
    if (
        len(devices) == 1
        or K % len(devices)
        or any(isinstance(l, jax.core.Tracer) for l in jax.tree.leaves(tree))
    ):
        return tree
    sharding = NamedSharding(Mesh(np.array(devices), ("runs",)), PartitionSpec("runs"))
    return jax.device_put(tree, sharding)
