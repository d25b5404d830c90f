"""One set of status codes for every iterative method of the package, each with its message.

Compiled loops cannot raise, so they stop with a code (as optimistix's ``RESULTS``): ``fb.train``,
``fb.levenberg_marquardt``, ``fb.gauss_newton``, ``fb.newton``, ``fb.hessian_free`` and
``fb.least_squares`` all return ``status`` as an ``int32`` array holding one of these values, and
``MESSAGES[int(status)]`` says what it means.
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Why an iterative method stopped (``int(result.status)`` is one of these)."""

    RUNNING = 0
    MAX_STEPS = 1  # the epoch or iteration budget is spent
    MAX_EPOCHS = 1  # the same code, under training's name
    GOAL = 2
    DIVERGED = 3
    MIN_GRAD = 4
    MU_MAX = 5
    MAX_FAIL = 6
    LINE_SEARCH = 7
    NONFINITE_START = 8


MESSAGES: dict[int, str] = {
    Status.RUNNING: "running",
    Status.MAX_STEPS: "max epochs/steps reached",
    Status.GOAL: "loss goal reached",
    Status.DIVERGED: "diverged",
    Status.MIN_GRAD: "gradient below min_grad",
    Status.MU_MAX: "mu above mu_max",
    Status.MAX_FAIL: "validation loss rose max_fail times in a row",
    Status.LINE_SEARCH: "line search found no decrease",
    Status.NONFINITE_START: (
        "the loss or its gradient is not finite at the start (NaN/Inf in the data or params, or an overflow)"
    ),
}


def message(status) -> str:
    """The text of one status code.

    Args:
        status: a ``Status``, an int or a 0-d integer array (``result.status``).

    Returns:
        The message, e.g. ``"loss goal reached"``.
    """
    return MESSAGES[int(status)]
