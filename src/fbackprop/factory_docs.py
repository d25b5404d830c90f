"""The docstrings of the functions that the curvature factories return (``fb.hvp(net, loss)``,
``fb.ggn_diag(net, loss)``, ...): a summary, the shared ``Args:`` (params, x, y) and ``Returns:``,
written once here and filled in by each factory."""

from __future__ import annotations

_ARGS = """
    Args:
        params: the model's params (for a Network, the tuple of ``{"W": (fan_out, fan_in),
            "b": (fan_out,)}`` dicts); their dtype is the computation's (x and y are cast to it).
        x: inputs ``(N, n_in)``, one example per row.
        y: targets ``(N, n_out)`` (``(N,)`` for one output; integer labels ``(N,)`` for cross-entropy)."""


_STREAM = """
            Or the data as chunks (``fb.Chunks``, or a callable / re-iterable of ``(x, y)`` pairs) with
            ``y=None``: the result is then that of all their rows (``fbackprop.streaming``)."""


def function_doc(summary: str, returns: str, extra: str = "", streams: bool = False) -> str:
    """The docstring of a function a curvature factory returns: ``summary``, the shared ``Args:``
    (params, x, y, then ``extra``) and ``Returns:`` ``returns``; ``streams``: ``x`` may be chunks."""
    args = _ARGS.replace("one example per row.", "one example per row." + _STREAM) if streams else _ARGS
    return f"{summary}\n{args}{extra}\n\n    Returns:\n        {returns}\n"


_V = """
        v: a tangent shaped like params (same tree, same leaf shapes)."""
