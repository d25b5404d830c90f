"""The linter and the formatter (ruff, configured in pyproject.toml: line length 110) are clean."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["src", "tests", "experiments", "benchmarks"]


def _ruff() -> str:
    """The ruff installed beside this Python (a dev extra); a loud failure, not a skip, without it."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.fail(f"ruff is not installed beside {sys.executable}: pip install -e '.[dev]'")
    return str(ruff)


@pytest.mark.parametrize(
    "command",
    [["check", "--no-fix"], ["format", "--check"]],
    ids=["ruff check", "ruff format --check"],
)
def test_ruff_clean(command):
    out = subprocess.run([_ruff(), *command, *PATHS], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, (
        f"`ruff {' '.join(command)} {' '.join(PATHS)}` found problems "
        f"(fix: ruff format {' '.join(PATHS)} && ruff check --fix {' '.join(PATHS)}):\n"
        f"{out.stdout[-6000:]}{out.stderr[-2000:]}"
    )
