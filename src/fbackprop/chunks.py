"""The source of data larger than memory: ``fb.Chunks``, a re-readable stream of ``(x, y)`` chunks.

What takes such a stream, and how the sums over it are taken, is ``fbackprop.streaming``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .options import as_int
from .validate import check_call

__all__ = ["Chunks"]


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


def _across_processes(tree):
    """The sum over processes of each process's ``tree`` (itself with one process)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(lambda a: jnp.sum(a, axis=0), multihost_utils.process_allgather(tree))
