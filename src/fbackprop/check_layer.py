"""``check_layer``: every hand-written piece of a layer against JAX autodiff, in float64.

One harness for any layer that follows the protocol of ``fb.layers.base`` (a built-in kind or one of
your own). At a random point ``theta, x`` (``x: (batch, *input_shape)`` standard normal) and random
directions ``v, R{x}, R{g}``, with a random scalar function of the output per example

    phi(y) = sum_n [ c_n . y_n + 0.5 y_n^T M_n y_n + (1/6) sum_i w_ni y_ni^3 ]

(``M_n`` symmetric; the cubic term makes ``H`` depend on ``y``), ``g = dphi/dy`` and
``H_n = d2phi/dy_n^2`` (both by autodiff), it compares:

- ``forward`` with the layer's own ``reference(theta, x)``, when it has one;
- ``backward`` with ``jax.vjp`` of ``forward`` (input and parameter parts);
- ``forward_r`` with ``jax.jvp`` of ``forward``, and ``backward_r`` with ``jax.jvp`` of
  ``(theta, x, g) -> backward(theta, forward(theta, x)[1], g)`` (Pearlmutter 1994), each also with
  ``r_x = None`` (an input that does not move);
- ``backward2`` with the per-example blocks of ``jax.hessian`` of ``phi(forward(theta, x))`` in ``x``,
  and with ``exact=False`` against ``J^T H J`` (``J`` by ``jax.jacfwd``);
- for a layer with parameters, each readout with ``jax.grad``/``jax.hessian`` in ``theta``.
- ``kfac_factors`` (a ``{"W", "b"}`` layer) with ``A`` from the rows ``d z_(n, t, 0) / d [W_0 | b_0]``
  of ``jax.jacfwd`` (``[a, 1]``, or a patch with a 1, at example ``n`` and position ``t``) and ``G``
  from two random seeds of output gradients.

Errors are relative per leaf as in ``fb.compare``: ``max |a - b| / max(max |a|, max |b|, 1e-3 *
the piece's largest entry)``; a piece passes when it is finite and ``<= rtol``. ``None`` stands for
an exact zero (``forward_r`` of a layer without parameters at a fixed input).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .layer_checks import Missing, draw, pieces, problem, rel_err
from .layers.base import REQUIRED
from .options import as_float, as_int
from .spectra import check_key


class Row(NamedTuple):
    """One checked piece: its name, its largest relative error, the verdict and a note.

    Attributes:
        piece: e.g. ``"backward (input)"``.
        max_rel_err: the largest relative error against autodiff (``nan`` when not measured).
        ok: True or False; ``None`` when not checked (an optional readout the layer lacks).
        note: why it failed or was not checked (a missing method, an exception, a shape), or ``""``.
    """

    piece: str
    max_rel_err: float
    ok: bool | None
    note: str = ""


class LayerReport(NamedTuple):
    """What ``check_layer`` found; ``str()`` is a table ending with the verdict.

    Attributes:
        layer: the layer's ``repr``.
        input_shape: one example's input shape.
        batch: the number of examples checked.
        rtol: the tolerance on each piece's ``max_rel_err``.
        rows: one ``Row`` per piece, in the order checked.
    """

    layer: str
    input_shape: tuple
    batch: int
    rtol: float
    rows: tuple[Row, ...]

    @property
    def ok(self) -> bool:
        """Whether no piece failed (pieces not checked do not count)."""
        return all(r.ok is not False for r in self.rows)

    @property
    def failed(self) -> tuple[str, ...]:
        """The names of the pieces that failed."""
        return tuple(r.piece for r in self.rows if r.ok is False)

    @property
    def not_checked(self) -> tuple[str, ...]:
        """The names of the optional pieces the layer lacks."""
        return tuple(r.piece for r in self.rows if r.ok is None)

    @property
    def pieces(self) -> tuple[str, ...]:
        """Every piece's name, in the order checked."""
        return tuple(r.piece for r in self.rows)

    def __str__(self) -> str:
        head = f"check_layer: {self.layer} on input {self.input_shape}, batch {self.batch}, float64"
        table = [("piece", "max rel err", "verdict")]
        for r in self.rows:
            err = "-" if math.isnan(r.max_rel_err) else f"{r.max_rel_err:.2e}"
            table.append((r.piece, err, _verdict(r)))
        widths = [max(len(t[i]) for t in table) for i in range(3)]
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(t, widths)).rstrip() for t in table]
        lines.insert(2, "  ".join("-" * w for w in widths[:2] + [len("verdict")]))
        checked = sum(r.ok is not None for r in self.rows)
        verdict = "ok" if self.ok else "failed: " + ", ".join(self.failed)
        lines.append(f"{checked} pieces checked against autodiff (tolerance {self.rtol:.0e}): {verdict}")
        return "\n".join(lines)


def _verdict(r: Row) -> str:
    """``ok``, ``MISMATCH``, ``MISSING: add ...``, ``ERROR: raised ...`` or ``not checked: add ...``."""
    if r.ok is None:
        return f"not checked: {r.note}"
    if r.ok:
        return "ok"
    word = "MISSING" if r.note.startswith("add ") else "ERROR" if r.note.startswith("raised ") else "MISMATCH"
    return f"{word}: {r.note}" if r.note else word


def _check_layer_arg(layer) -> None:
    """``layer`` must be an instance with ``has_params`` and the required passes."""
    if isinstance(layer, type):
        raise TypeError(
            f"check_layer: layer must be a layer instance such as fb.layers.Dense(3); got the class "
            f"{layer.__name__} itself (call it with its arguments)"
        )
    for name, signature in REQUIRED.items():
        if not callable(getattr(layer, name, None)):
            raise TypeError(
                f"check_layer: layer must follow the layer protocol (fb.layers.base); {layer!r} "
                f"({type(layer).__name__}) has no method {name!r}: add {signature}"
            )
    if not isinstance(getattr(layer, "has_params", None), (bool, np.bool_)):
        raise TypeError(
            f"check_layer: layer must follow the layer protocol (fb.layers.base); {layer!r} "
            f"({type(layer).__name__}) needs a bool class attribute has_params (whether init returns "
            f"parameters); got {getattr(layer, 'has_params', None)!r}"
        )


def _as_shape(input_shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints."""
    if not isinstance(input_shape, (tuple, list)):
        raise TypeError(
            "check_layer: input_shape must be a tuple of positive ints, one example's shape without "
            f"the batch axis, such as (4,) or (8, 8, 1); got {input_shape!r} ({type(input_shape).__name__})"
        )
    return tuple(as_int(d, f"check_layer input_shape[{i}]", minimum=1) for i, d in enumerate(input_shape))


def _evaluate(layer, input_shape, key, batch: int, rtol: float) -> tuple[Row, ...]:
    """Every piece's ``(hand, reference)`` in one compiled program (traced once: a piece whose method is
    missing or raises while tracing becomes a row saying so), then the rows."""
    order, notes = [], {}

    def run_all(draws):
        p = problem(layer, draws)
        out = {}
        for name, compute in pieces(layer, p):
            order.append(name)
            try:
                out[name] = compute()
            except Missing as e:
                notes[name] = (str(e), e.ok)
            except Exception as e:  # the layer's own error is a finding about that piece, not a crash
                first = (str(e).strip().splitlines() or [""])[0][:200]
                notes[name] = (f"raised {type(e).__name__}: {first}", False)
        return out

    pairs = jax.jit(run_all)(draw(layer, input_shape, key, batch))
    rows = []
    for name in order:
        if name in notes:
            note, ok = notes[name]
            rows.append(Row(name, math.nan, ok, note))
            continue
        err, note = rel_err(*pairs[name])
        rows.append(Row(name, err, bool(not note and err <= rtol), note))
    return tuple(rows)


def check_layer(layer, input_shape, key, *, batch: int = 3, rtol: float = 1e-10) -> LayerReport:
    """Check every hand-written piece of ``layer`` against JAX autodiff, in float64.

    The pieces (one row each; module docstring for how each is measured): ``"forward vs reference"``
    (when the layer has ``reference``), ``"backward (input)"``, ``"backward (params)"``, ``"forward_r"``,
    ``"forward_r (fixed input)"``, ``"backward_r"``, ``"backward_r (fixed input)"``, ``"backward2"``,
    ``"backward2 (GGN)"``, and for a layer with parameters ``"per_example_grads"``, ``"hessian_diag"``,
    ``"per_example_hessian_diag"``, ``"hessian_block"``, ``"hessian_block (GGN)"``, ``"jacobian_gram"``
    and ``"kfac_factors"`` (the last two when the layer has them; K-FAC's for ``{"W", "b"}`` layers).
    It runs under ``jax.enable_x64(True)`` whether or not x64 is on globally.
    The parameters are the layer's ``init`` plus ``0.25`` standard normal noise (so that constant
    initialisations, LayerNorm's ones and zeros, are checked at a generic point).

    Args:
        layer: an instance of a layer kind (``fb.layers.Dense(3)``, or your own class following the
            protocol in ``fb.layers.base``).
        input_shape: one example's input shape, without the batch axis, e.g. ``(4,)`` or ``(8, 8, 1)``.
        key: a JAX PRNG key for the parameters, the inputs, the directions and ``phi``.
        batch: the number of examples (default 3).
        rtol: the largest relative error accepted per piece (default ``1e-10``).

    Returns:
        A ``LayerReport``: ``report.ok``, ``report.failed`` (the names of the failing pieces) and
        ``print(report)``, the table. A missing pass (``forward_r``, ``backward_r``, ``backward2``) is a
        failing row naming the method to add; a missing readout is a row "not checked"; a piece that
        raises is a failing row quoting the error.

    Raises:
        TypeError: for a layer without ``has_params``, ``init``, ``forward`` or ``backward`` (naming the
            method to add), a layer class instead of an instance, a non-tuple ``input_shape`` or a bad key.
        ValueError: for a non-positive size in ``input_shape``, ``batch`` or ``rtol``, an input shape the
            layer refuses (its own ``init``'s error), or a ``forward`` whose output shape is not ``init``'s.

    Examples:
        >>> report = fb.check_layer(fb.layers.Dense(3), (4,), jax.random.key(0))
        >>> report.ok, report.failed
        (True, ())
        >>> report.pieces[:3]
        ('backward (input)', 'backward (params)', 'forward_r')
    """
    _check_layer_arg(layer)
    input_shape = _as_shape(input_shape)
    batch = as_int(batch, "check_layer batch", minimum=1)
    rtol = as_float(rtol, "check_layer rtol", minimum=0.0, open_min=True)
    check_key(key, "check_layer key")
    if jnp.shape(key) != (() if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else (2,)):
        raise ValueError(
            f"check_layer key must be one JAX PRNG key such as jax.random.key(0); got an array of keys "
            f"of shape {jnp.shape(key)}"
        )
    with jax.enable_x64(True):
        rows = _evaluate(layer, input_shape, key, batch, rtol)
    return LayerReport(repr(layer), input_shape, batch, rtol, rows)
