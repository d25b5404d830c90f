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

Errors are relative per leaf as in ``fb.compare``: ``max |a - b| / max(max |a|, max |b|, 1e-3 *
the piece's largest entry)``; a piece passes when it is finite and ``<= rtol``. ``None`` stands for
an exact zero (``forward_r`` of a layer without parameters at a fixed input).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .options import as_float, as_int
from .spectra import check_key

#: The passes without which nothing can be checked (a ``TypeError`` names the one missing).
REQUIRED = {
    "init": "init(key, in_shape, dtype) -> (theta, out_shape)",
    "forward": "forward(theta, x) -> (y, cache)",
    "backward": "backward(theta, cache, g) -> (g_in, dtheta)",
}
#: The other passes of the protocol: a row fails, saying which method to add, when one is missing.
PASSES = {
    "forward_r": "forward_r(theta, v, cache, r_x) -> (r_y, r_cache)",
    "backward_r": "backward_r(theta, v, cache, r_cache, g, r_g) -> (r_g_in, r_dtheta)",
    "backward2": "backward2(theta, cache, H, g, exact) -> A",
}
#: The readouts of a layer with parameters: a row says "not checked" when one is missing (only the
#: quantities that need it refuse the layer).
READOUTS = {
    "per_example_grads": "per_example_grads(theta, cache, g) -> dtheta_n",
    "hessian_diag": "hessian_diag(theta, cache, H, g, exact) -> diag",
    "per_example_hessian_diag": "per_example_hessian_diag(theta, cache, H, g, exact) -> diag_n",
    "hessian_block": "hessian_block(theta, cache, H, g, exact) -> (P_l, P_l)",
}


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


class _Missing(Exception):
    """A method the piece needs is missing: ``ok`` is False for a pass, None for a readout."""

    def __init__(self, note: str, ok: bool | None):
        super().__init__(note)
        self.ok = ok


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


def _rel_err(hand, ref) -> tuple[float, str]:
    """The largest per-leaf relative error of ``hand`` against ``ref`` (``None`` = zeros), and a note
    when the two do not match in structure or shape."""
    if hand is None and ref is not None:
        hand = jax.tree.map(jnp.zeros_like, ref)
    lh, th = jax.tree.flatten(hand)
    lr, tr = jax.tree.flatten(ref)
    if th != tr:
        return math.nan, f"returned the structure {th}, expected {tr}"
    for a, b in zip(lh, lr):
        if jnp.shape(a) != jnp.shape(b):
            return math.nan, f"returned shape {tuple(jnp.shape(a))}, expected {tuple(jnp.shape(b))}"
    lh = [np.asarray(a, np.float64) for a in lh]
    lr = [np.asarray(b, np.float64) for b in lr]
    big = max([float(np.abs(a).max(initial=0.0)) for a in lh + lr] + [0.0])
    err = 0.0
    for a, b in zip(lh, lr):
        scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), 1e-3 * big, np.finfo(float).tiny)
        err = max(err, float(np.abs(a - b).max(initial=0.0) / scale))
    if not all(np.isfinite(a).all() for a in lh):
        return math.nan, "returned non-finite values"
    return err, ""


def _normal_like(rng: np.random.Generator, tree):
    """Standard normal float64 arrays shaped like ``tree``'s leaves (``None`` stays ``None``)."""
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(jnp.shape(a))), tree)


class _Draws(NamedTuple):
    """The random point and directions (concrete arrays: the compiled program's arguments)."""

    theta: Any
    x: jax.Array
    v: Any
    r_x: jax.Array
    r_g: jax.Array
    c: jax.Array  # (N, n_out)
    M: jax.Array  # (N, n_out, n_out), symmetric
    w: jax.Array  # (N, n_out)
    G: jax.Array  # (2, N, *out_shape): two seeds for jacobian_gram


def _draw(layer, input_shape, key, batch: int) -> _Draws:
    """``theta`` from ``layer.init`` plus 0.25 standard normal noise (so constant initialisations are
    checked at a generic point); the rest from a NumPy generator seeded by ``key`` (no random-number
    program to compile)."""
    k_theta, k_rest = jax.random.split(key)
    init = layer.init(k_theta, input_shape, jnp.float64)
    if not (isinstance(init, tuple) and len(init) == 2):
        raise TypeError(
            f"check_layer: {layer!r}.init must return (theta, out_shape), the parameters (None without "
            f"any) and one example's output shape; got {type(init).__name__}"
        )
    theta, out_shape = init[0], tuple(init[1])
    rng = np.random.default_rng(np.asarray(jax.random.key_data(k_rest)).ravel().tolist())
    if layer.has_params:
        theta = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), theta)
        theta = jax.tree.map(lambda a, e: a + 0.25 * e, theta, _normal_like(rng, theta))
    x = jnp.asarray(rng.standard_normal((batch, *input_shape)))
    expected = (batch, *tuple(out_shape))
    y_shape = jnp.shape(jax.eval_shape(lambda t, x: layer.forward(t, x)[0], theta, x))
    if y_shape != expected:
        raise ValueError(
            f"check_layer: {layer!r}.forward returned y of shape {y_shape} for x of shape {x.shape}, "
            f"but init said the output shape is {tuple(out_shape)} (expected {expected})"
        )
    n_out = math.prod(out_shape)
    M = rng.standard_normal((batch, n_out, n_out)) / math.sqrt(n_out)
    return _Draws(
        theta=theta,
        x=x,
        v=_normal_like(rng, theta) if layer.has_params else None,
        r_x=jnp.asarray(rng.standard_normal(x.shape)),
        r_g=jnp.asarray(rng.standard_normal(expected)),
        c=jnp.asarray(rng.standard_normal((batch, n_out))),
        M=jnp.asarray(0.5 * (M + np.swapaxes(M, 1, 2))),
        w=jnp.asarray(rng.standard_normal((batch, n_out))),
        G=jnp.asarray(rng.standard_normal((2, *expected))),
    )


class _Problem(NamedTuple):
    """The point, directions and scalar function every piece is checked at (inside the program)."""

    theta: Any
    x: jax.Array
    cache: Any
    v: Any
    r_x: jax.Array
    r_g: jax.Array
    g: jax.Array
    H: jax.Array  # (N, n_out, n_out)
    phi_each: Any  # y -> (N,)
    G: jax.Array


def _problem(layer, d: _Draws) -> _Problem:
    """``y, cache = forward(theta, x)``, ``phi``, ``g = dphi/dy`` and ``H_n = d2phi/dy_n^2`` by autodiff."""
    batch = d.x.shape[0]
    y, cache = layer.forward(d.theta, d.x)

    def phi_one(yn, cn, Mn, wn):
        return cn @ yn + 0.5 * yn @ Mn @ yn + jnp.sum(wn * yn**3) / 6.0

    def phi_each(y):
        return jax.vmap(phi_one)(y.reshape(batch, -1), d.c, d.M, d.w)

    g = jax.grad(lambda y: jnp.sum(phi_each(y)))(y)
    H = jax.vmap(jax.hessian(phi_one))(y.reshape(batch, -1), d.c, d.M, d.w)
    return _Problem(d.theta, d.x, cache, d.v, d.r_x, d.r_g, g, H, phi_each, d.G)


def _need(layer, name: str):
    """``layer.name``, or ``_Missing`` saying what to add."""
    method = getattr(layer, name, None)
    if callable(method):
        return method
    if name in PASSES:
        raise _Missing(f"add {PASSES[name]}", False)
    raise _Missing(f"add {READOUTS[name]}", None)


def _diag_blocks(full: jax.Array, batch: int) -> jax.Array:
    """``(N, a, N, b) -> (N, a, b)``: the per-example blocks of a batch Jacobian or Hessian."""
    idx = jnp.arange(batch)
    return full[idx, :, idx, :]


def _pieces(layer, p: _Problem):
    """``(name, () -> (hand, reference))`` for each piece that applies to ``layer``."""
    batch = p.x.shape[0]
    n_in = math.prod(p.x.shape[1:])

    def f(theta, x):
        return layer.forward(theta, x)[0]

    def b(theta, x, g):
        return layer.backward(theta, layer.forward(theta, x)[1], g)

    def fixed(r_x):
        return r_x is None

    def forward_r(r_x):
        def compute():
            hand = _need(layer, "forward_r")(p.theta, p.v, p.cache, r_x)[0]
            ref = jax.jvp(f, (p.theta, p.x), (p.v, jnp.zeros_like(p.x) if fixed(r_x) else r_x))[1]
            return hand, ref

        return compute

    def backward_r(r_x):
        def compute():
            _need(layer, "backward_r")
            r_cache = _need(layer, "forward_r")(p.theta, p.v, p.cache, r_x)[1]
            hand = layer.backward_r(p.theta, p.v, p.cache, r_cache, p.g, p.r_g)
            tangent_x = jnp.zeros_like(p.x) if fixed(r_x) else r_x
            ref = jax.jvp(b, (p.theta, p.x, p.g), (p.v, tangent_x, p.r_g))[1]
            return hand, ref

        return compute

    def backward2(exact):
        def compute():
            hand = _need(layer, "backward2")(p.theta, p.cache, p.H, p.g, exact)
            if exact:
                full = jax.hessian(lambda x: jnp.sum(p.phi_each(f(p.theta, x))))(p.x)
                return hand, _diag_blocks(full.reshape(batch, n_in, batch, n_in), batch)
            J = _diag_blocks(jax.jacfwd(lambda x: f(p.theta, x))(p.x).reshape(batch, -1, batch, n_in), batch)
            return hand, jnp.einsum("noi,nop,npj->nij", J, p.H, J)

        return compute

    pieces = []
    if callable(getattr(layer, "reference", None)):
        pieces.append(("forward vs reference", lambda: (f(p.theta, p.x), layer.reference(p.theta, p.x))))
    pieces.append(
        (
            "backward (input)",
            lambda: (
                layer.backward(p.theta, p.cache, p.g)[0],
                jax.vjp(lambda x: f(p.theta, x), p.x)[1](p.g)[0],
            ),
        )
    )
    if layer.has_params:
        pieces.append(
            (
                "backward (params)",
                lambda: (
                    layer.backward(p.theta, p.cache, p.g)[1],
                    jax.vjp(lambda t: f(t, p.x), p.theta)[1](p.g)[0],
                ),
            )
        )
    pieces += [
        ("forward_r", forward_r(p.r_x)),
        ("forward_r (fixed input)", forward_r(None)),
        ("backward_r", backward_r(p.r_x)),
        ("backward_r (fixed input)", backward_r(None)),
        ("backward2", backward2(True)),
        ("backward2 (GGN)", backward2(False)),
    ]
    if layer.has_params:
        pieces += _readout_pieces(layer, p, f)
    return pieces


def _readout_pieces(layer, p: _Problem, f):
    """The readouts against ``jax.hessian``/``jax.jacfwd`` in the flattened parameters."""
    batch = p.x.shape[0]
    p0, unravel = ravel_pytree(p.theta)

    def F(q):
        return f(unravel(q), p.x).reshape(batch, -1)  # (N, n_out)

    memo = {}

    def hess():  # per-example Hessians in theta: (N, P, P)
        if "H" not in memo:
            memo["H"] = jax.hessian(lambda q: p.phi_each(F(q)))(p0)
        return memo["H"]

    def jac():  # per-example output Jacobians in theta: (N, n_out, P)
        if "J" not in memo:
            memo["J"] = jax.jacfwd(F)(p0)
        return memo["J"]

    def per_example_grads():
        hand = _need(layer, "per_example_grads")(p.theta, p.cache, p.g)
        return hand, jax.vmap(unravel)(jnp.einsum("no,nop->np", p.g.reshape(batch, -1), jac()))

    def hessian_diag():
        hand = _need(layer, "hessian_diag")(p.theta, p.cache, p.H, p.g, True)
        return hand, unravel(jnp.diagonal(jnp.sum(hess(), axis=0)))

    def per_example_hessian_diag():
        hand = _need(layer, "per_example_hessian_diag")(p.theta, p.cache, p.H, p.g, True)
        return hand, jax.vmap(unravel)(jnp.diagonal(hess(), axis1=1, axis2=2))

    def hessian_block(exact):
        def compute():
            hand = _need(layer, "hessian_block")(p.theta, p.cache, p.H, p.g, exact)
            if exact:
                return hand, jnp.sum(hess(), axis=0)
            return hand, jnp.einsum("noi,nop,npj->ij", jac(), p.H, jac())

        return compute

    def jacobian_gram():
        hand = layer.jacobian_gram(p.theta, p.cache, p.G)
        rows = jnp.einsum("kno,nop->nkp", p.G.reshape(2, batch, -1), jac())
        return hand, jnp.einsum("nkp,mjp->nkmj", rows, rows)

    pieces = [
        ("per_example_grads", per_example_grads),
        ("hessian_diag", hessian_diag),
        ("per_example_hessian_diag", per_example_hessian_diag),
        ("hessian_block", hessian_block(True)),
        ("hessian_block (GGN)", hessian_block(False)),
    ]
    if callable(getattr(layer, "jacobian_gram", None)):
        pieces.append(("jacobian_gram", jacobian_gram))
    return pieces


def _evaluate(layer, input_shape, key, batch: int, rtol: float) -> tuple[Row, ...]:
    """Every piece's ``(hand, reference)`` in one compiled program (traced once: a piece whose method is
    missing or raises while tracing becomes a row saying so), then the rows."""
    order, notes = [], {}

    def run_all(draws):
        p = _problem(layer, draws)
        out = {}
        for name, compute in _pieces(layer, p):
            order.append(name)
            try:
                out[name] = compute()
            except _Missing as e:
                notes[name] = (str(e), e.ok)
            except Exception as e:  # the layer's own error is a finding about that piece, not a crash
                first = (str(e).strip().splitlines() or [""])[0][:200]
                notes[name] = (f"raised {type(e).__name__}: {first}", False)
        return out

    pairs = jax.jit(run_all)(_draw(layer, input_shape, key, batch))
    rows = []
    for name in order:
        if name in notes:
            note, ok = notes[name]
            rows.append(Row(name, math.nan, ok, note))
            continue
        err, note = _rel_err(*pairs[name])
        rows.append(Row(name, err, bool(not note and err <= rtol), note))
    return tuple(rows)


def check_layer(layer, input_shape, key, *, batch: int = 3, rtol: float = 1e-10) -> LayerReport:
    """Check every hand-written piece of ``layer`` against JAX autodiff, in float64.

    The pieces (one row each; module docstring for how each is measured): ``"forward vs reference"``
    (when the layer has ``reference``), ``"backward (input)"``, ``"backward (params)"``, ``"forward_r"``,
    ``"forward_r (fixed input)"``, ``"backward_r"``, ``"backward_r (fixed input)"``, ``"backward2"``,
    ``"backward2 (GGN)"``, and for a layer with parameters ``"per_example_grads"``, ``"hessian_diag"``,
    ``"per_example_hessian_diag"``, ``"hessian_block"``, ``"hessian_block (GGN)"`` and ``"jacobian_gram"``
    (when the layer has it). It runs under ``jax.enable_x64(True)`` whether or not x64 is on globally.
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
