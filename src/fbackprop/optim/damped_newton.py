"""Damped Newton (Levenberg 1944): Levenberg-Marquardt's loop and options with the exact Hessian of
the cost in place of the Gauss-Newton matrix, solved densely (``levenberg_marquardt.py``)."""

from __future__ import annotations

from . import _options as O
from .levenberg_marquardt import LMResult, levenberg_marquardt


def newton(net, params, x, y, **options) -> LMResult:
    """Damped Newton with the exact Hessian (small nets): Levenberg-Marquardt's loop with ``G``
    replaced by ``d2E/dtheta^2`` (dense, autodiff).

    An indefinite ``H + mu D`` fails its Cholesky, so the step is rejected and ``mu`` grows until
    the damped Hessian is positive definite (Levenberg 1944's damping of Newton's method).

    Args:
        net: an fbackprop ``Network``, or any model ``apply(params, x)`` (Flax, Equinox; its
            derivatives from autodiff, as ``levenberg_marquardt``'s).
        params: the initial parameters, a tuple of ``{"W", "b"}`` dicts.
        x: ``(N, n_in)`` inputs.
        y: ``(N, n_out)`` targets (or labels ``(N,)`` for cross_entropy).
        **options: ``levenberg_marquardt``'s keyword options, except ``solver`` and ``curvature``
            (always the exact Hessian, solved densely).

    Returns:
        An ``LMResult``, as ``levenberg_marquardt``'s (``history.loss``: the batch-mean cost).

    Examples:
        >>> net = fb.mlp([2, 3, 1]); params = net.init(jax.random.key(0), jnp.float64)
        >>> x, y = jnp.ones((4, 2)), jnp.zeros((4, 1))
        >>> r = fb.newton(net, params, x, y, max_steps=3)
        >>> r.params[1]["b"].shape
        (1,)
    """
    net, params, unwrap = O.model(net, params, x, "fb.newton")
    fixed = sorted(set(options) & {"solver", "curvature"})
    if fixed:
        raise TypeError(
            f"fb.newton always uses the exact Hessian with the dense solve; it takes no "
            f"{' or '.join(fixed)} option (got {', '.join(f'{k}={options[k]!r}' for k in fixed)})"
        )
    result = levenberg_marquardt(net, params, x, y, **{**options, "curvature": "hessian", "solver": "dense"})
    return O.unwrapped(result, unwrap)
