"""The built-in losses by name: ``LOSSES`` and ``get``, which every ``(model, loss)`` function uses;
``require_hessian_sqrt`` for the functions that need a loss's ``hessian_sqrt``."""

from __future__ import annotations

from .base import Loss
from .binary_cross_entropy import binary_cross_entropy
from .cross_entropy import cross_entropy
from .squared_error import squared_error

LOSSES: dict[str, Loss] = {l.name: l for l in (squared_error, cross_entropy, binary_cross_entropy)}


def get(loss: str | Loss) -> Loss:
    """Look a loss up by name, or pass a ``Loss`` through.

    Args:
        loss: ``"squared_error"``, ``"cross_entropy"``, ``"binary_cross_entropy"`` or a ``Loss``.

    Returns:
        The ``Loss``.

    Raises:
        ValueError: an unknown name (the valid ones are listed).
    """
    if isinstance(loss, Loss):
        return loss
    if isinstance(loss, str) and loss in LOSSES:
        return LOSSES[loss]
    raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)} or an fbackprop.losses.Loss")


def require_hessian_sqrt(loss: Loss, what: str) -> Loss:
    """``loss``, refused (``TypeError``) when it has no ``hessian_sqrt`` (a user's loss may leave it out).

    Args:
        loss: a ``Loss``.
        what: the call that needs it, for the message.

    Returns:
        ``loss``.
    """
    if loss.hessian_sqrt is None:
        raise TypeError(
            f"{what} needs the loss's hessian_sqrt (S_n with d2l_n/dyhat^2 = S_n S_n^T); loss {loss.name!r} "
            "has none: give fb.losses.Loss a hessian_sqrt=(yhat, y) -> (N, n_out, n_out)"
        )
    return loss
