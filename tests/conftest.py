"""Shared test set-up: float64 everywhere (the verification precision), keys, hypothesis profiles, seeds.

``FBACKPROP_SEEDS`` (comma-separated, default ``0``) lists the seeds of every test that takes a
``seed`` argument (the quick experiments, the notebooks): ``FBACKPROP_SEEDS=0,1,2,3,4 pytest -m
"not sweep" tests/experiments tests/test_notebooks.py`` runs each trajectory claim from five
initialisations (``-m`` replaces the default ``-m 'not sweep and not slow'`` of pyproject.toml, so the
tests marked ``slow``, which ``make test-slow`` runs, are included).
"""

import os

# The suite compiles hundreds of small programs; XLA's CPU compiler spends most of its time in
# LLVM optimisation, which small test programs do not need (3-4x faster compiles). Results are
# compared with tolerances, never bit for bit. Set before JAX creates its CPU backend.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
)

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

# Bounded example counts keep the suite inside its 10-minute budget on 2 cores; each example
# compiles fresh shapes. FBACKPROP_HYPOTHESIS=thorough runs many more.
settings.register_profile(
    "ci", max_examples=8, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("FBACKPROP_HYPOTHESIS", "ci"))


def seeds_from_env(text: str | None) -> list[int]:
    """Parse ``FBACKPROP_SEEDS``.

    Args:
        text: the variable's value, e.g. ``"0,1,2,3,4"``; None or blank means ``[0]``.

    Returns:
        The seeds, in the order given.

    Raises:
        ValueError: if an entry is not a non-negative integer.
    """
    if text is None or not text.strip():
        return [0]
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(
            f"FBACKPROP_SEEDS must be non-negative integers separated by commas, such as 0,1,2,3,4; "
            f"got {text!r}"
        )
    return [int(part) for part in parts]


SEEDS = seeds_from_env(os.environ.get("FBACKPROP_SEEDS"))


def pytest_generate_tests(metafunc):
    """Every test with a ``seed`` argument runs once per seed of ``FBACKPROP_SEEDS`` (ids ``seed0``, ...)."""
    if "seed" in metafunc.fixturenames:
        metafunc.parametrize("seed", SEEDS, ids=[f"seed{s}" for s in SEEDS])


@pytest.fixture
def key():
    return jax.random.key(0)


_COMPILES = [0]


def _on_event(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        _COMPILES[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_event)


@pytest.fixture
def compiles():
    """``compiles()`` is the number of XLA compilations since the test started (JAX's own event)."""
    start = _COMPILES[0]
    return lambda: _COMPILES[0] - start
