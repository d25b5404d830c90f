"""MkDocs hooks: render the repository's notebooks in place, without copying them into docs/.

The notebooks live in ``notebooks/`` (the test suite runs them there); this hook adds each
``notebooks/*.ipynb`` to the site's files under the same path, so ``mkdocs-jupyter`` renders the
stored, executed notebook and the navigation can name ``notebooks/NAME.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        uri = f"notebooks/{nb.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
