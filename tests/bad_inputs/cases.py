"""The bad-input tables' row type and their one runner.

The rule (issue 11): bad input gets a ``ValueError``/``TypeError`` raised by fbackprop's own code at
the API boundary, naming the argument, what was expected and what came, before anything is
compiled. Each ``test_*.py`` here is one area's table, a list ``CASES`` of ``Case`` rows, and every
row is one test (parametrized by ``table``), checked by ``check``:

- ``call()`` raises ``error`` with a message matching the regex ``match`` (``re.search``);
- the innermost frame of the traceback is in fbackprop's own code, not in JAX, NumPy or optax;
- nothing is compiled (XLA compilations, the ``compiles`` fixture of tests/conftest.py), except in
  rows marked ``values=True``: the NaN/Inf check reads the values of params and data before this
  error is found, one fused on-device reduction, which compiles once per shape (so the first such
  row of a shape compiles it, the later ones find it compiled); and rows with a ``known_compile``,
  which says what fbackprop compiles there before refusing (a gap to close, not a licence).
  A row whose check comes after that NaN/Inf check without reading values itself (e.g.
  ``train_many: goal='low'``) would compile that reduction when it runs alone; so ``check`` swaps
  the reduction for its NumPy twin while a row runs, and every row passes alone, in any order, as
  under ``-k`` or ``pytest-xdist``.

Adding a public function: add one row per bad argument (wrong type, out of range, NaN/Inf, an apply
callable where a ``Network`` is needed, ...) to the table of its area (``test_gradients.py``:
networks and gradients; ``test_training.py``: ``fb.train``/``fb.train_many``;
``test_data_and_compare.py``: ``fb.data``, ``fb.compare``, ``fb.tolerance``; ``test_curvature.py``:
curvature, Jacobians and spectra; ``test_optimizers.py``: the second-order optimizers), or start a
new ``test_AREA.py`` ending, as every table does, with ``@table(CASES)`` on a
``test_bad_input(case, compiles)`` that calls ``check(case, compiles)``. Give the row a unique ``id``
(``"function: what is wrong"``) and build the arrays it needs at module level, not inside its
``call``: creating an array can compile.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from unittest import mock

import numpy as np
import pytest

from fbackprop import finite

# The package's one message for NaN/Inf in concrete data (``validate.check_finite``): format it with
# the first bad value and its index, e.g. ``NONFINITE.format("nan", r"\(2, 1\)")``.
NONFINITE = r"holds 1 non-finite value \(the first, {}, at index {}\); expected finite numbers"
PACKAGE = f"{os.sep}fbackprop{os.sep}"


class Case(NamedTuple):
    """One bad input.

    Attributes:
        id: the test id, unique in its table, e.g. ``"train: epochs=-1"``.
        call: ``() -> ...``, the call that must be refused.
        error: the exception type it must raise (``ValueError`` or ``TypeError``).
        match: a regex its message must match (``re.search``).
        values: values are read (the NaN/Inf check) before the error, which may compile a reduction.
        known_compile: what fbackprop compiles before refusing this input, a known gap; empty: nothing.
    """

    id: str
    call: Callable[[], Any]
    error: type
    match: str
    values: bool = False
    known_compile: str = ""


def with_nan(a, where=(0, 0)) -> np.ndarray:
    """A float64 copy of ``a`` with a NaN at index ``where``."""
    a = np.array(a, dtype=np.float64)
    a[where] = np.nan
    return a


def table(cases: Sequence[Case]):
    """``@table(CASES)``: parametrize a test ``(case, compiles)`` over the rows, one test each."""
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), f"duplicate case ids: {sorted({i for i in ids if ids.count(i) > 1})}"
    return pytest.mark.parametrize("case", cases, ids=ids)


def check(case: Case, compiles: Callable[[], int]) -> None:
    """Run one row: the error and its message, raised by fbackprop's code, before any compilation.

    Args:
        case: the row.
        compiles: the ``compiles`` fixture (XLA compilations since the test began).
    """
    numpy_flag = lambda leaves: all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves)
    with (
        mock.patch.object(finite, "_finite_flag", numpy_flag),
        pytest.raises(case.error, match=case.match) as info,
    ):
        case.call()
    innermost = str(info.traceback[-1].path)
    assert PACKAGE in innermost, f"raised from {innermost}, not from fbackprop's own code"
    if not (case.values or case.known_compile):
        assert compiles() == 0, "the error must come before anything is compiled"
