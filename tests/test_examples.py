"""The ``Examples:`` sections of the API reference run, and every public function has one.

Each docstring's doctest runs on its own with the shared names ``jax``, ``jnp``, ``np``, ``fb``
(``fbackprop``) and ``optax`` (and float64 enabled, as every test here), so an example in the
reference is a program a user can paste after those imports.
"""

import doctest
import importlib
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fbackprop as fb

MODULES = [
    "fbackprop.autodiff",
    "fbackprop.backprop",
    "fbackprop.check",
    "fbackprop.check_layer",
    "fbackprop.curvature",
    "fbackprop.data",
    "fbackprop.distributed",
    "fbackprop.jacobian",
    "fbackprop.layers.activation",
    "fbackprop.layers.autodiff",
    "fbackprop.layers.conv2d",
    "fbackprop.layers.dense",
    "fbackprop.layers.flatten",
    "fbackprop.layers.network",
    "fbackprop.layers.norm",
    "fbackprop.layers.pool",
    "fbackprop.layers.residual",
    "fbackprop.layers.serial",
    "fbackprop.nets",
    "fbackprop.second_order",
    "fbackprop.kronecker",
    "fbackprop.kronecker_products",
    "fbackprop.spectra",
    "fbackprop.streaming",
    "fbackprop.chunks",
    "fbackprop.train",
    "fbackprop.optim.damping",
    "fbackprop.optim.ekfac",
    "fbackprop.optim.gauss_newton",
    "fbackprop.optim.hessian_free",
    "fbackprop.optim.least_squares",
    "fbackprop.optim.levenberg_marquardt",
    "fbackprop.optim.damped_newton",
    "fbackprop.optim.line_search",
    "fbackprop.optim.solves",
    "fbackprop.optim.streamed",
]
NEEDS_SKLEARN = {"fbackprop.data.digits", "fbackprop.data.breast_cancer"}


def _globs():
    return {"jax": jax, "jnp": jnp, "np": np, "fb": fb, "optax": optax}


def _public_functions():
    """``(qualified name, function)`` for ``fb.__all__``'s functions and ``fb.data``'s public ones."""
    found = {}
    for name in fb.__all__:
        obj = getattr(fb, name)
        if inspect.isfunction(obj):
            found[f"fb.{name}"] = obj
    for name, obj in vars(fb.data).items():
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == "fbackprop.data":
            found[f"fb.data.{name}"] = obj
    return found


def _qualname(fn):
    f = inspect.unwrap(fn)
    return f"{f.__module__}.{f.__qualname__}"


def _doctests():
    """Every doctest with examples in MODULES, plus those of the public functions (some are wrapped by
    a cache defined elsewhere, which ``DocTestFinder`` does not attribute to their module)."""
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = {}
    for mod in MODULES:
        for t in finder.find(importlib.import_module(mod)):
            if t.examples:
                tests[t.name] = t
    for fn in _public_functions().values():
        name = _qualname(fn)
        if name not in tests:
            for t in finder.find(fn, name):
                if t.examples:
                    tests[t.name] = t
    return [tests[k] for k in sorted(tests)]


DOCTESTS = _doctests()


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example_runs(test):
    if test.name in NEEDS_SKLEARN:
        pytest.importorskip("sklearn")
    test.globs = _globs()
    out = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test, out=out.append, clear_globs=True)
    assert result.failed == 0, f"{test.name}: {result.failed} failing example(s)\n" + "".join(out)


def test_every_public_function_has_examples():
    missing = [name for name, fn in _public_functions().items() if "Examples:" not in (fn.__doc__ or "")]
    assert not missing, "public functions without an 'Examples:' section in their docstring: " + ", ".join(
        missing
    )


def test_every_public_function_example_is_collected():
    collected = {t.name for t in DOCTESTS}
    missing = [name for name, fn in _public_functions().items() if _qualname(fn) not in collected]
    assert not missing, "public functions whose examples are not collected: " + ", ".join(missing)
