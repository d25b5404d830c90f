"""Results files, written atomically: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_figure(path: str | Path, fig) -> Path:
    """A matplotlib figure as PNG, atomically (rendered to a temporary file, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _plain(np.asarray(obj).tolist())
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def write_json(path: str | Path, data: dict) -> Path:
    """``data`` (arrays become lists) as indented JSON, atomically."""
    return write_text(path, json.dumps(_plain(data), indent=2, allow_nan=True) + "\n")


def versions() -> dict[str, str]:
    """What produced a result: Python, JAX and the device it ran on."""
    from . import __version__

    return {"fbackprop": __version__, "python": platform.python_version(), "jax": jax.__version__,
            "device": str(jax.devices()[0].device_kind), "platform": platform.platform()}
