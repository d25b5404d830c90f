"""Compare two gradients (any matching pytrees): per-leaf errors, a verdict, a readable table.

Errors are measured per leaf ``a`` (the one under test) against ``b`` (the reference):

- ``max_abs = max |a - b|``
- ``max_rel = max |a - b| / scale``, ``scale = max(max |b|, max |a|, 1e-3 * tree scale)``: the
  largest error relative to the leaf's scale. Element-wise ratios would blow up on entries that are
  zero up to rounding (a saturated sigmoid's weights), so the scale is the leaf's largest entry;
  and a whole leaf can be zero up to rounding (the bias gradients of a symmetric problem), so the
  scale never drops below 1e-3 of the largest entry of the whole tree (``tree scale``).
- ``cosine = <a, b> / (|a| |b|)`` (1.0 when both are zero).

Tolerances per dtype (``tolerance``), for ``max_rel`` of two exact methods (hand-written vs
autodiff; forward vs reverse mode): float64 1e-10 (measured ~1e-15), float32 1e-4 (measured
~1e-6: summation order differs in long reductions), bfloat16/float16 5e-2. Finite differences
are approximate: ``FD_TOLERANCE`` (float64 1e-6, float32 5e-2). ``compare(a, b,
method="finite_difference")`` judges with the latter; ``rtol=`` sets any tolerance; the report
remembers which one it uses and its table says so.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .validate import as_float, check_choice

TOLERANCE = {"float64": 1e-10, "float32": 1e-4, "bfloat16": 5e-2, "float16": 5e-2}
FD_TOLERANCE = {"float64": 1e-6, "float32": 5e-2, "bfloat16": 0.5, "float16": 0.5}
#: How each gradient method is judged: as exact (``TOLERANCE``) or finite differences (``FD_TOLERANCE``).
METHODS = {
    "exact": False,
    "backprop": False,
    "autodiff": False,
    "forward_mode": False,
    "finite_difference": True,
    "numerical_grad": True,
}


def tolerance(dtype: Any, finite_differences: bool = False) -> float:
    """The largest ``max_rel`` accepted between two gradients computed in ``dtype``.

    Args:
        dtype: a floating dtype or its name (``jnp.float32``, ``"float64"``).
        finite_differences: the tolerance for a finite-difference gradient against an exact one
            (``FD_TOLERANCE``) instead of two exact methods (``TOLERANCE``). Default False.

    Returns:
        The tolerance, a float.

    Raises:
        ValueError: for a dtype without a tolerance (an integer dtype, say), listing those known.

    Examples:
        >>> fb.tolerance(jnp.float64) < fb.tolerance(jnp.float32)
        True
    """
    table = FD_TOLERANCE if finite_differences else TOLERANCE
    try:
        name = jnp.dtype(dtype).name
    except TypeError:
        name = None
    if name not in table:
        raise ValueError(f"tolerance: dtype must be one of the floating dtypes {list(table)}; got {dtype!r}")
    return table[name]


class LeafError(NamedTuple):
    """The errors of one leaf: ``max_abs``, ``max_rel`` (against the leaf's scale) and ``cosine``."""

    name: str
    shape: tuple
    max_abs: float
    max_rel: float
    cosine: float


class GradReport(NamedTuple):
    """Per-leaf errors of ``a`` against ``b``; ``str()`` is a table ending with the verdict.

    Attributes:
        leaves: one ``LeafError`` per leaf, in tree order.
        dtype: the dtype the gradients were computed in (``a``'s).
        method: how ``a`` was computed, ``"exact"`` or ``"finite_difference"``: it picks the default
            tolerance.
        rtol: the tolerance set by the caller, or ``None`` for ``tolerance(dtype, method)``.
    """

    leaves: tuple[LeafError, ...]
    dtype: str
    method: str = "exact"
    rtol: float | None = None

    @property
    def max_abs(self) -> float:
        """The largest absolute error over all leaves."""
        return max(l.max_abs for l in self.leaves)

    @property
    def max_rel(self) -> float:
        """The largest relative error over all leaves (what ``ok`` judges)."""
        return max(l.max_rel for l in self.leaves)

    @property
    def min_cosine(self) -> float:
        """The smallest per-leaf cosine."""
        return min(l.cosine for l in self.leaves)

    @property
    def tolerance(self) -> float:
        """The tolerance ``ok()`` uses by default: ``rtol``, or the dtype's for ``method``."""
        if self.rtol is not None:
            return self.rtol
        return tolerance(self.dtype, finite_differences=METHODS[self.method])

    def ok(self, tol: float | None = None) -> bool:
        """Whether ``max_rel <= tol`` and nothing is non-finite.

        Args:
            tol: the tolerance; default the report's own (``self.tolerance``).

        Returns:
            The verdict, a bool.
        """
        tol = self.tolerance if tol is None else tol
        return bool(np.isfinite(self.max_rel) and self.max_rel <= tol)

    def __str__(self) -> str:
        rows = [("leaf", "shape", "max abs err", "max rel err", "cosine")]
        rows += [
            (
                l.name,
                "x".join(map(str, l.shape)) or "scalar",
                f"{l.max_abs:.2e}",
                f"{l.max_rel:.2e}",
                f"{l.cosine:.12f}",
            )
            for l in self.leaves
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        verdict = "ok" if self.ok() else "MISMATCH"
        source = "rtol" if self.rtol is not None else f"{self.method} method, {self.dtype}"
        lines.append(f"max rel err {self.max_rel:.2e} (tolerance {self.tolerance:.0e}, {source}: {verdict})")
        return "\n".join(lines)


def _leaf_name(path, names=None) -> str:
    """``(SequenceKey(0), DictKey('W'))`` -> ``"layer 1 W"``; with a network's ``layer_names()``,
    ``"layer 1 Conv2D W"`` (nested: ``"layer 4 Residual > 1 Conv2D W"``); other trees get ``keystr``."""
    if names is not None and path and hasattr(path[-1], "key"):
        node = names
        for key in path[:-1]:
            if not (hasattr(key, "idx") and isinstance(node, tuple) and key.idx < len(node)):
                break
            node = node[key.idx]
        else:
            if isinstance(node, str):
                return f"{node} {path[-1].key}"
    if len(path) == 2 and hasattr(path[0], "idx") and hasattr(path[1], "key"):
        return f"layer {path[0].idx + 1} {path[1].key}"
    return jax.tree_util.keystr(path) or "value"


def _scale(x) -> float:
    return float(np.abs(np.asarray(x, np.float64)).max(initial=0.0))


def _leaf_error(name, a, b, floor: float) -> LeafError:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = np.abs(a64 - b64)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = max(_scale(b64), _scale(a64), floor, np.finfo(np.float64).tiny)
    na, nb = np.linalg.norm(a64), np.linalg.norm(b64)
    cosine = (
        1.0 if na == 0 and nb == 0 else float(np.vdot(a64, b64) / max(na * nb, np.finfo(np.float64).tiny))
    )
    return LeafError(name, tuple(np.shape(a)), max_abs, max_abs / scale, cosine)


def compare(
    a: Any, b: Any, method: str = "exact", *, rtol: float | None = None, net: Any = None
) -> GradReport:
    """Errors of the pytree ``a`` against the reference ``b`` (same structure and shapes).

    Args:
        a: the gradient under test (any pytree of arrays).
        b: the reference, with ``a``'s structure and leaf shapes.
        method: how ``a`` was computed, which sets the default tolerance: ``"exact"`` (default;
            also ``"backprop"``, ``"autodiff"``, ``"forward_mode"``) or ``"finite_difference"``
            (also ``"numerical_grad"``).
        rtol: a tolerance on ``max_rel`` that overrides the method's (``None``: the method's).
        net: the network the gradients are of, to name each leaf by its layer's position and kind
            (``"layer 3 Conv2D W"``); ``None`` (default): ``"layer l W"`` by entry of params.

    Returns:
        A ``GradReport``; ``report.ok()`` is the verdict under its tolerance, ``print(report)``
        the table.

    Raises:
        ValueError: for trees of different structure or shapes, an unknown ``method`` or a negative ``rtol``.

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> fd = fb.numerical_grad(net, "squared_error")(params, x, y)
        >>> bp = fb.backprop(net, "squared_error")(params, x, y)
        >>> bool(fb.compare(fd, bp, method="finite_difference").ok())
        True
    """
    check_choice(method, "method", list(METHODS))
    rtol = None if rtol is None else as_float(rtol, "rtol", minimum=0.0)
    if net is not None and not callable(getattr(net, "layer_names", None)):
        raise TypeError(f"compare: net must be an fbackprop Network (from fb.serial or fb.mlp); got {net!r}")
    names = None if net is None else net.layer_names()
    la, ta = jax.tree_util.tree_flatten_with_path(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    if ta != tb:
        raise ValueError(f"compare: the two trees differ in structure:\n  {ta}\n  {tb}")
    for (path, x), y in zip(la, lb):
        for leaf in (x, y):
            if not (hasattr(leaf, "shape") or isinstance(leaf, (int, float, complex))):
                raise TypeError(
                    f"compare: leaf {_leaf_name(path, names)} is a {type(leaf).__name__}, not an array: "
                    "compare takes two gradients (pytrees of arrays)"
                )
        if jnp.shape(x) != jnp.shape(y):
            raise ValueError(
                f"compare: leaf {_leaf_name(path, names)} has shapes {jnp.shape(x)} and {jnp.shape(y)}"
            )
    floor = 1e-3 * max([_scale(x) for _, x in la] + [_scale(y) for y in lb] + [0.0])
    leaves = tuple(_leaf_error(_leaf_name(p, names), x, y, floor) for (p, x), y in zip(la, lb))
    dtype = jnp.result_type(*[x for _, x in la]).name if la else "float64"
    return GradReport(leaves, dtype, method, rtol)
