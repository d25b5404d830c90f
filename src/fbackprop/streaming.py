"""Data larger than memory: the data as a stream of ``(x, y)`` chunks, read again at every pass.

Everything that needs only sums over examples can take its data in chunks and never hold all rows
at once: Levenberg-Marquardt's ``accumulate`` and ``cg`` solvers (``G`` and ``g``, or each product
``G v``, summed chunk by chunk), the curvature products (``fb.hvp``, ``fb.ggn_vp``,
``fb.fisher_vp``), the dense and diagonal curvature (``fb.hessian``, ``fb.ggn``,
``fb.hessian_diag``, ``fb.ggn_diag``, ``fb.hessian_blocks``) and K-FAC's factors
(``fb.kfac_factors``). They take the stream in the ``x`` position with ``y=None``:

    fb.hvp(net, "squared_error")(params, fb.Chunks.of(x, y, 4096), None, v)

``fb.Chunks(source)`` wraps a *re-readable* source: a callable returning a fresh iterable of pairs
(a generator function), or a re-iterable (a list of pairs, or any object whose ``iter()`` starts
again each time). ``fb.Chunks.of(x, y, chunk_size)`` slices arrays lazily, so an array opened with
``np.load(path, mmap_mode="r")`` is read from disk one chunk at a time. A callable or re-iterable
given in the ``x`` position (with ``y=None``) is wrapped for you.

Each chunk is checked as in-memory data are (``x``'s shape against the network, ``y``'s form for
the loss, NaN/Inf), its index named in the message. A batch mean over the stream is the sum of the
per-chunk sums divided by the total N (``sum_c N_c mean_c / N``), equal to the in-memory result to
rounding. The per-chunk function is compiled once per distinct chunk shape: equal chunks and a
shorter last one compile it twice; chunks of many sizes compile it many times.

With several processes (``fb.distributed.initialize()``, ``jax.process_count() > 1``) each process
streams its own chunks and the per-process sums (and row counts) are added across the processes, so
the result is that of the union of all processes' rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .chunks import Chunks, _across_processes, _empty, _is_array  # noqa: F401 (Chunks re-exported: fbackprop.streaming.Chunks)
from .finite import check_finite_named
from .validate import check_like, checked

__all__ = ["Chunks", "chunk_sum"]


def stream_of(x, y, what: str) -> Chunks | None:
    """The stream in the ``x`` position, or ``None`` for in-memory data.

    Args:
        x: what came as ``x``: a ``Chunks``, a callable or re-iterable of ``(x, y)`` pairs (with ``y``
            ``None``), or an array.
        y: what came as ``y``: ``None`` beside a stream.
        what: the caller, for the messages.

    Returns:
        A ``Chunks`` (a callable or re-iterable wrapped), or ``None`` (arrays: the in-memory path).

    Raises:
        TypeError: ``y`` given beside a ``Chunks``; a one-shot iterator in the ``x`` position.
    """
    if isinstance(x, Chunks):
        if y is not None:
            raise TypeError(
                f"{what}: y must be None when x is a stream of chunks (each chunk carries its own "
                f"targets); got y of type {type(y).__name__}"
            )
        return x
    if y is not None or _is_array(x) or not (callable(x) or _iterable(x)):
        return None
    return Chunks(x)


def _iterable(x) -> bool:
    try:
        iter(x)
    except TypeError:
        return False
    return True


_add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))


def chunk_sum(fn: Callable, chunks: Chunks, model, loss, params, *args, finite: bool = True, rows=None):
    """``sum_c fn(*args, x_c, y_c)`` over the chunks, on the host, pytrees added leaf by leaf.

    ``fn`` should be jitted (and made once, not per call): it then compiles once per distinct chunk
    shape. Its calls are dispatched asynchronously, so the next chunk is read while the device sums the
    last one, and at most two chunks are in flight. With several processes the sums and the row
    counts are added across them.

    Args:
        fn: ``(*args, x_c, y_c) -> tree``, a sum over the chunk's examples (not a mean).
        chunks: the stream.
        model: the model (each chunk is checked for it).
        loss: the loss.
        params: the params (the chunks are cast to their dtype).
        *args: ``fn``'s leading arguments (the params, a tangent).
        finite: refuse NaN/Inf in a chunk (default ``True``).
        rows: the total N an earlier pass read (a pass of another length is refused), or ``None``.

    Returns:
        ``(total, N)``: the summed tree and the number of rows (over every process).

    Examples:
        >>> net = fb.mlp([2, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> data = fb.Chunks.of(np.ones((5, 2)), np.zeros((5, 1)), 2)
        >>> count = jax.jit(lambda p, x, y: jnp.sum(x[:, 0]))
        >>> loss = fb.losses.get("squared_error")
        >>> total, n = fb.streaming.chunk_sum(count, data, net, loss, params, params)
        >>> float(total), n
        (5.0, 5)
    """
    total, n = None, 0
    for xc, yc in chunks.read(model, loss, params, finite=finite):
        part = fn(*args, xc, yc)  # dispatched asynchronously: the next chunk is read meanwhile
        done, total = total, part if total is None else _add(total, part)
        if done is not None:  # at most two chunks in flight, so that the device's memory stays bounded
            jax.block_until_ready(done)
        n += int(xc.shape[0])
    if jax.process_count() > 1:
        total, n = _across_processes((total, np.int64(n)))
        n = int(n)
    if rows is not None and n != rows:
        raise ValueError(
            f"the data source gave {rows} rows on an earlier pass and {n} on this one: it must give the "
            f"same chunks every time it is read"
        )
    return total, n


def _scaled(core: Callable) -> Callable:
    """The jitted sum form ``N_c core(params, x_c, y_c, *args)`` of a batch-mean ``core``."""

    def per_chunk(params, *rest):
        *args, x, y = rest
        out = core(params, x, y, *args)
        return jax.tree.map(lambda t: t * x.shape[0], out)

    return jax.jit(per_chunk)


def streamable(model, loss, core: Callable, *, what: str, vectors: int = 0, doc: str | None = None):
    """``validate.checked(model, loss, core)`` that also takes the data as chunks (``x`` a stream,
    ``y=None``).

    ``core`` must be a batch mean over the rows of ``x`` (a curvature product, a diagonal, K-FAC's
    factors): on a stream the result is ``sum_c N_c core(params, x_c, y_c, ...) / N``.

    Args:
        model: a ``Network`` or an ``apply(params, x)`` callable.
        loss: a ``Loss``.
        core: ``(params, x, y, *args) ->`` a batch mean over the rows, traceable.
        what: the public function, for the messages (``"fb.hvp"``).
        vectors: how many of ``args`` are tangents shaped like params.
        doc: the returned function's docstring.

    Returns:
        ``(params, x, y, *args) -> result``: the checked, compiled function, in memory or streamed.
    """
    in_memory = checked(model, loss, core, vectors=vectors, doc=doc)
    per_chunk = _scaled(core)

    def fn(params, x, y, *args):
        chunks = stream_of(x, y, what)
        if chunks is None:
            return in_memory(params, x, y, *args)
        vs = args[:vectors]
        for v in vs:
            check_like(v, params)
        check_finite_named(
            {"params": params, **{f"v{i}" if vectors > 1 else "v": v for i, v in enumerate(vs)}}
        )
        total, n = chunk_sum(per_chunk, chunks, model, loss, params, params, *args)
        return jax.tree.map(lambda t: t / n, total)

    fn.__doc__ = doc if doc is not None else core.__doc__
    return fn


def unstreamable(fn: Callable, what: str, why: str) -> Callable:
    """``fn`` that refuses data given as chunks, saying why it cannot stream them.

    Args:
        fn: ``(params, x, y, *args) -> ...``, an in-memory function.
        what: its public name (``'fb.fisher_vp(kind="mc")'``).
        why: the reason, in words.

    Returns:
        ``fn`` with the refusal in front (same docstring).
    """

    @functools.wraps(fn)
    def refusing(params, x, y, *args, **kwargs):
        if stream_of(x, y, what) is not None:
            raise TypeError(f"{what} cannot take its data as chunks: {why}. Pass the arrays x and y")
        return fn(params, x, y, *args, **kwargs)

    return refusing
