"""The ``Loss`` type and what every loss shares: the target and ``yhat`` checks, the public wrappers.

**Targets.** A loss's ``prepare(y, n_out)`` turns every accepted target form (its module lists
them) into the ``(N, n_out)`` float rows its functions compute with, and refuses the rest with a
``ValueError``/``TypeError`` naming what was expected and what came.

Every public callable (``loss(yhat, y)``, ``value``, ``grad``, ``hessian``, ``hvp``,
``hessian_sqrt``) prepares its targets so, exactly as ``fb.backprop`` does, and checks that ``yhat``
is a floating ``(N, n_out)`` array with as many rows as ``y``; the targets are cast to ``yhat``'s
dtype. Preparing is idempotent: prepared targets pass through unchanged, and the shape and dtype
checks are static, so the internal callers (which pass prepared targets, under ``jit``) pay nothing.

**Target values under ``jit``.** Range and probability checks read the target *values*, so they run
only when the targets are concrete arrays (outside ``jit``); what each loss does with traced targets
is in its module (``cross_entropy`` clamps-and-flags integer labels).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..finite import host_values, raise_nonfinite


class Loss(NamedTuple):
    """Per-example loss ``l(yhat, y)`` with hand-written derivatives in ``yhat``; ``C`` is the mean.

    Attributes:
        name: the loss's name (``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"``).
        value: ``(yhat, y) -> (N,)``, the per-example losses ``l_n``.
        grad: ``(yhat, y) -> (N, n_out)``, ``dl_n/dyhat_n``.
        hessian: ``(yhat, y) -> (N, n_out, n_out)``, ``d^2 l_n/dyhat_n^2``.
        hvp: ``(yhat, y, v) -> (N, n_out)``, ``(d^2 l_n/dyhat_n^2) v_n``.
        prepare: ``(y, n_out) -> (N, n_out)``, the accepted target forms as float rows.
        sample: ``(key, yhat) -> (N, n_out)``, targets drawn from the model's predictive distribution.
        hessian_sqrt: ``(yhat, y) -> (N, n_out, n_out)``, ``S_n`` with ``H_n = S_n S_n^T``; optional
            (default ``None``), so a loss written with the seven fields above still constructs. The
            three built-in losses define it; ``fb.ggn_diag(..., factored=True)`` and
            ``fb.kfac_factors(kind="exact")`` need it.

    Every callable taking ``(yhat, y)`` prepares ``y`` with ``prepare`` (each loss's module lists the
    accepted forms) and raises ``ValueError``/``TypeError`` for targets it refuses, for a ``yhat``
    that is not a floating ``(N, n_out)`` array, or for ``y`` with another number of rows.
    """

    name: str
    value: Callable[[jax.Array, jax.Array], jax.Array]
    grad: Callable[[jax.Array, jax.Array], jax.Array]
    hessian: Callable[[jax.Array, jax.Array], jax.Array]
    hvp: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    prepare: Callable[[jax.Array, int], jax.Array]
    sample: Callable[[jax.Array, jax.Array], jax.Array]
    hessian_sqrt: Callable[[jax.Array, jax.Array], jax.Array] | None = None

    def __call__(self, yhat: jax.Array, y: jax.Array) -> jax.Array:
        """The batch-mean cost ``C = (1/N) sum_n l(yhat_n, y_n)``.

        Args:
            yhat: ``(N, n_out)`` network output (logits for the classification losses).
            y: targets in any form ``prepare`` accepts (the loss's module docstring).

        Returns:
            A scalar of ``yhat``'s dtype.
        """
        return jnp.mean(self.value(yhat, y))


# --- shared checks ------------------------------------------------------------------------------
def _as_array(y: Any, name: str, what: str = "y"):
    """``y`` as an array (NumPy arrays stay NumPy, so that their values stay readable under a trace)."""
    if not isinstance(y, (jax.Array, np.ndarray)):
        try:
            y = np.asarray(y)  # lists of numbers: concrete NumPy values
        except Exception:  # noqa: BLE001 (e.g. a list holding tracers)
            y = None
        if y is None or y.dtype == object:
            try:
                y = jnp.asarray(y)
            except (TypeError, ValueError) as err:
                raise TypeError(
                    f"{name}: {what} must be an array of numbers; got {type(y).__name__} ({err})"
                ) from None
    dt = y.dtype
    if not (
        jnp.issubdtype(dt, jnp.floating) or jnp.issubdtype(dt, jnp.integer) or jnp.issubdtype(dt, jnp.bool_)
    ):
        raise TypeError(f"{name}: {what} must hold real numbers (float, integer or bool); got dtype {dt}")
    return y


def _float(y):
    """Integer/bool targets as the default float dtype; float targets unchanged."""
    if jnp.issubdtype(y.dtype, jnp.floating):
        return jnp.asarray(y)
    return jnp.asarray(y, jax.dtypes.canonicalize_dtype(jnp.float64))


def _shape_error(name: str, y, n_out: int, forms: str):
    return ValueError(
        f"{name}: y has shape {tuple(y.shape)} but the network output is (N, {n_out}); expected {forms}"
    )


def _column_targets(y, n_out: int, name: str):
    """Real targets ``(N, n_out)``, or ``(N,)`` taken as a column when ``n_out == 1`` (shapes only)."""
    y = _as_array(y, name)
    if y.ndim == 1 and n_out == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != n_out:
        forms = f"y of shape (N, {n_out})" + (" or (N,)" if n_out == 1 else "")
        raise _shape_error(name, y, n_out, forms)
    return y


def _first_bad_row(bad: np.ndarray) -> int:
    return int(np.argwhere(bad)[0][0])


def _check_finite_values(y, name: str):
    """Concrete targets must be finite: read with NumPy (no program to compile), and on failure the
    package's one message for NaN/Inf, naming the index."""
    arr = host_values(y)
    if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
        raise_nonfinite({f"{name}: y": arr})


def _output(yhat: Any, name: str, fn: str):
    """``yhat`` must be a floating ``(N, n_out)`` array: the network output, one example per row."""
    yhat = _as_array(yhat, f"{name}.{fn}", "yhat")
    if not jnp.issubdtype(yhat.dtype, jnp.floating):
        raise TypeError(
            f"{name}.{fn}: yhat (the network output) must be floating point; got dtype {yhat.dtype}"
        )
    if yhat.ndim != 2:
        hint = "; for a single-output network pass yhat[:, None]" if yhat.ndim == 1 else ""
        raise ValueError(
            f"{name}.{fn}: yhat must have shape (N, n_out) (one example per row); "
            f"got shape {tuple(yhat.shape)}{hint}"
        )
    return jnp.asarray(yhat)


def _pair(loss_name: str, prepare, fn: str, yhat, y):
    """``yhat`` checked, ``y`` prepared for its width, cast to its dtype, with as many rows."""
    yhat = _output(yhat, loss_name, fn)
    y = prepare(y, yhat.shape[1])
    if y.shape[0] != yhat.shape[0]:
        raise ValueError(
            f"{loss_name}.{fn}: y has {y.shape[0]} rows but yhat has {yhat.shape[0]}: one target per example "
            "is expected"
        )
    return yhat, y.astype(yhat.dtype)


def _public(loss_name: str, prepare, fn: str, core, tangent: bool = False):
    """The public ``(yhat, y[, v])`` callable: targets prepared and checked, then ``core``."""
    if tangent:

        def public(yhat, y, v):
            yhat, y = _pair(loss_name, prepare, fn, yhat, y)
            v = _as_array(v, f"{loss_name}.{fn}", "v")
            if v.shape != yhat.shape:
                raise ValueError(
                    f"{loss_name}.{fn}: v must have yhat's shape {tuple(yhat.shape)}; got {tuple(v.shape)}"
                )
            return core(yhat, y, jnp.asarray(v, yhat.dtype))
    else:

        def public(yhat, y):
            return core(*_pair(loss_name, prepare, fn, yhat, y))

    functools.update_wrapper(public, core)
    public.__name__ = public.__qualname__ = f"{loss_name}.{fn}"
    return public


def _make(name, value, grad, hessian, hvp, hessian_sqrt, prepare, sample) -> Loss:
    for fn, what in ((prepare, "prepare"), (sample, "sample")):
        fn.__name__ = fn.__qualname__ = f"{name}.{what}"
    return Loss(
        name,
        value=_public(name, prepare, "value", value),
        grad=_public(name, prepare, "grad", grad),
        hessian=_public(name, prepare, "hessian", hessian),
        hvp=_public(name, prepare, "hvp", hvp, tangent=True),
        prepare=prepare,
        sample=sample,
        hessian_sqrt=_public(name, prepare, "hessian_sqrt", hessian_sqrt),
    )
