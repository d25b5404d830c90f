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

import dataclasses
import functools
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .finite import check_finite_named
from .options import as_int
from .validate import check_call, check_like, checked

__all__ = ["Chunks", "chunk_sum"]


def _is_array(a: Any) -> bool:
    return isinstance(a, (np.ndarray, jax.Array, jax.core.Tracer)) or hasattr(a, "__array__")


def _one_shot(source: Any) -> bool:
    """An iterator (``iter(it) is it``): a generator object, ``iter(list)``, a file object."""
    try:
        return iter(source) is source
    except TypeError:
        return False


class _Slices:
    """Row ranges of ``x`` and ``y``, sliced only when read (a memmap stays on disk)."""

    def __init__(self, x, y, bounds):
        self.x, self.y, self.bounds = x, y, bounds

    def __iter__(self):
        return ((self.x[a:b], self.y[a:b]) for a, b in self.bounds)

    def __repr__(self):
        return f"_Slices({len(self.bounds)} chunks of rows {[b - a for a, b in self.bounds]})"


@dataclasses.dataclass(frozen=True, eq=False)
class Chunks:
    """A re-readable stream of ``(x, y)`` chunks: the data of a computation that sums over examples.

    Every pass over the data (each Levenberg-Marquardt iteration reads them again, for the trial
    cost and for ``G`` and ``g``) calls ``iter()`` anew, so the source must start again each time.
    Each chunk is a pair ``(x_c, y_c)`` of ``(N_c, *in_shape)`` inputs and their targets, in any form
    the loss takes (module docstring); chunks may differ in length.

    Attributes:
        source: a callable returning a fresh iterable of pairs (a generator function), or a
            re-iterable (a list or tuple of pairs, or an object whose ``iter()`` is a new iterator each
            time). A one-shot iterator (a generator object, ``iter(list)``) is refused.

    Examples:
        >>> x, y = jnp.ones((10, 2)), jnp.zeros((10, 1))
        >>> data = fb.Chunks(lambda: ((x[i : i + 4], y[i : i + 4]) for i in range(0, 10, 4)))
        >>> [int(xc.shape[0]) for xc, _ in data]
        [4, 4, 2]
    """

    source: Any

    def __post_init__(self):
        s = self.source
        if isinstance(s, Chunks):
            object.__setattr__(self, "source", s.source)
            return
        if _one_shot(s):
            raise TypeError(
                f"the data must be a re-readable source of (x, y) chunks: every pass over the data (each "
                f"Levenberg-Marquardt iteration, each product) reads them again, and a one-shot iterator is "
                f"spent after the first; got {type(s).__name__} {s!r}. Pass the generator function itself "
                f"(fb.Chunks(make_chunks), not fb.Chunks(make_chunks())), a list of (x, y) pairs, or "
                f"fb.Chunks.of(x, y, chunk_size)"
            )
        if _is_array(s) or isinstance(s, (str, bytes, dict)):
            raise TypeError(
                f"the data must be a source of (x, y) chunks (a generator function, a list of pairs); got "
                f"{type(s).__name__}. For arrays use fb.Chunks.of(x, y, chunk_size)"
            )
        if not callable(s):
            try:
                iter(s)
            except TypeError:
                raise TypeError(
                    f"the data must be a callable returning an iterable of (x, y) chunks, or a re-iterable "
                    f"of them (a list of pairs); got {type(s).__name__} {s!r}"
                ) from None

    @classmethod
    def of(cls, x, y, chunk_size: int | None = None, *, sizes=None) -> Chunks:
        """Arrays ``x`` and ``y`` as chunks of rows, sliced lazily (a memmap is read a chunk at a time).

        Args:
            x: inputs ``(N, *in_shape)``: any array with a length and row slicing (a NumPy array, a
                ``np.load(..., mmap_mode="r")`` or ``np.lib.format.open_memmap`` array, a JAX array).
            y: targets with the same N rows.
            chunk_size: rows per chunk, an integer >= 1 (the last chunk holds what is left).
            sizes: instead of ``chunk_size``, the rows of each chunk, integers >= 1 summing to N.

        Returns:
            A ``Chunks`` over the row ranges (nothing is read until it is iterated).

        Raises:
            TypeError, ValueError: for arrays of different lengths, both or neither of ``chunk_size``
                and ``sizes``, a size < 1 or sizes that do not sum to N.

        Examples:
            >>> x, y = np.ones((7, 2)), np.zeros((7, 1))
            >>> [xc.shape for xc, _ in fb.Chunks.of(x, y, 3)]
            [(3, 2), (3, 2), (1, 2)]
            >>> [len(yc) for _, yc in fb.Chunks.of(x, y, sizes=[2, 5])]
            [2, 5]
        """
        for name, a in (("x", x), ("y", y)):
            if not hasattr(a, "shape") or len(a.shape) < 1:
                raise TypeError(
                    f"fb.Chunks.of: {name} must be an array with one example per leading row (a NumPy, JAX "
                    f"or memory-mapped array); got {type(a).__name__}"
                )
        n = int(x.shape[0])
        if int(y.shape[0]) != n:
            raise ValueError(
                f"fb.Chunks.of: x and y must have the same number of rows; got x {tuple(x.shape)} and "
                f"y {tuple(y.shape)}"
            )
        if (chunk_size is None) == (sizes is None):
            raise TypeError(
                "fb.Chunks.of takes one of chunk_size (rows per chunk) or sizes (rows of each chunk)"
            )
        if chunk_size is not None:
            c = as_int(chunk_size, "chunk_size")
            bounds = [(a, min(a + c, n)) for a in range(0, n, c)]
        else:
            sizes = [as_int(s, "sizes[i]") for s in sizes]
            if sum(sizes) != n:
                raise ValueError(
                    f"fb.Chunks.of: sizes must sum to the {n} rows of x; got {sizes} (sum {sum(sizes)})"
                )
            ends = np.cumsum(sizes).tolist()
            bounds = list(zip([0] + ends[:-1], ends))
        return cls(_Slices(x, y, bounds))

    def __iter__(self) -> Iterator:
        """A fresh pass over the chunks (the source read from its start).

        Returns:
            An iterator of the source's items (pairs ``(x_c, y_c)``; ``read`` checks them).
        """
        return iter(self.source() if callable(self.source) else self.source)

    def first(self) -> tuple:
        """The first chunk, as the source gives it (for the input shape of a model given as a callable).

        Returns:
            The pair ``(x_0, y_0)``.

        Raises:
            ValueError: for a source with no chunks.
        """
        for item in self:
            return _pair(item, 0)
        raise _empty()

    def rows(self, model, loss, params) -> int:
        """One checking pass: every chunk checked (shapes, targets, NaN/Inf), the rows counted.

        Args:
            model: a ``Network`` or an ``apply(params, x)`` callable.
            loss: a ``Loss``.
            params: the params.

        Returns:
            N, the number of rows (over every process, with several).

        Raises:
            TypeError, ValueError: naming the first bad chunk; for an empty source.
        """
        n = sum(int(xc.shape[0]) for xc, _ in self.read(model, loss, params))
        return int(_across_processes(np.int64(n)))

    def read(self, model, loss, params, *, finite: bool = True, rows: int | None = None):
        """One pass over the chunks, each checked as in-memory data are (``validate.check_call``).

        Args:
            model: a ``Network`` or an ``apply(params, x)`` callable.
            loss: a ``Loss``.
            params: the params (their dtype is the computation's: each chunk is cast to it).
            finite: also refuse NaN/Inf in each chunk (default ``True``; a later pass may skip it).
            rows: the rows an earlier pass read, or ``None``: a pass that reads another number of rows
                is refused (a source must give the same data every time).

        Returns:
            An iterator of prepared pairs ``(x_c (N_c, *in_shape), y_c (N_c, n_out))``.

        Raises:
            TypeError, ValueError: naming the chunk (``chunk 3 of the data: ...``); for an empty source.
        """
        seen = 0
        for i, item in enumerate(self):
            xc, yc = _pair(item, i)
            try:
                xc, yc = check_call(model, loss, params, xc, yc, finite=finite)
            except (TypeError, ValueError) as err:
                raise type(err)(f"chunk {i} of the data: {err}") from None
            seen += int(xc.shape[0])
            yield xc, yc
        if seen == 0:
            raise _empty()
        if rows is not None and seen != rows:
            raise ValueError(
                f"the data source gave {rows} rows on an earlier pass and {seen} on this one: it must give "
                f"the same chunks every time it is read"
            )


def _pair(item, i: int) -> tuple:
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        got = (
            f"a {type(item).__name__} of length {len(item)}"
            if isinstance(item, (tuple, list))
            else type(item).__name__
        )
        raise TypeError(f"chunk {i} of the data must be a pair (x, y) of inputs and targets; got {got}")
    return tuple(item)


def _empty() -> ValueError:
    return ValueError("the data source gave no chunks: there are no examples to sum over")


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


def _across_processes(tree):
    """The sum over processes of each process's ``tree`` (itself with one process)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: jnp.sum(a, axis=0), multihost_utils.process_allgather(tree))


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
