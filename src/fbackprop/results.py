"""Results files, written atomically: a reader sees the old file or the new one, never half of one.

Each file is written to a temporary file beside its path and renamed over it. ``tempfile.mkstemp``
creates that file readable by its owner only (0600); before the rename it is given the permissions
any new file of the user gets (``0666`` less the umask, e.g. 0644), so a colleague can read a report.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np


def _umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish(tmp: str, path: Path) -> None:
    """Give ``tmp`` a new file's permissions under the user's umask, then rename it over ``path``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, with the user's umask.

    Args:
        path: the file to write; its folder is created if missing.
        text: the whole content.

    Returns:
        ``path`` as a ``Path``. The text goes to a temporary file beside it first, which is given
        ``0666 & ~umask`` and then renamed over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        _publish(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_figure(path: str | Path, fig) -> Path:
    """Save a matplotlib figure as PNG, atomically, with the user's umask.

    Args:
        path: the PNG file to write; its folder is created if missing.
        fig: a ``matplotlib.figure.Figure``, saved at 110 dpi with a tight bounding box.

    Returns:
        ``path`` as a ``Path`` (rendered to a temporary file, then renamed over it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        _publish(tmp, path)
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
    """Write ``data`` as indented JSON, atomically, with the user's umask.

    Args:
        path: the file to write.
        data: a dict; NumPy and JAX arrays and scalars become lists and numbers, keys strings.

    Returns:
        ``path`` as a ``Path``.
    """
    return write_text(path, json.dumps(_plain(data), indent=2, allow_nan=True) + "\n")


def versions() -> dict[str, str]:
    """What produced a result.

    Returns:
        ``{"fbackprop", "python", "jax", "device", "platform"}``: versions, the first device's kind
        and the platform string.
    """
    from . import __version__

    return {
        "fbackprop": __version__,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "device": str(jax.devices()[0].device_kind),
        "platform": platform.platform(),
    }
