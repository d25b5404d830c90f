"""MkDocs hooks: the notebooks and the experiments' claims, read from where they live.

- Every ``notebooks/*.ipynb`` is added to the site's files under the same path, so ``mkdocs-jupyter``
  renders the stored, executed notebook (not a copy) and the navigation can name
  ``notebooks/NAME.ipynb``.
- On ``experiments.md`` each marker ``<!-- experiment: NAME -->`` becomes the command line and the
  "Claims tested" paragraph of ``experiments/NAME.py``'s docstring, so the page states exactly the
  claims the test suite checks. A script without either is a warning (an error under ``--strict``).
"""

from __future__ import annotations

import ast
import logging
import re
import textwrap
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("mkdocs.hooks.fbackprop")
MARKER = re.compile(r"^<!-- experiment: (\w+) -->$", re.M)


@event_priority(100)  # before mkdocs-jupyter's on_files, which turns .ipynb files into pages
def on_files(files, config):
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        uri = f"notebooks/{nb.name}"
        if files.get_file_from_path(uri) is None:
            files.append(File(uri, str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files


def _paragraphs(doc: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", doc) if p.strip()]


def experiment_summary(name: str) -> str:
    """Markdown for one experiment: its command (a shell block) and its claims, from its docstring."""
    path = ROOT / "experiments" / f"{name}.py"
    if not path.exists():
        log.warning("experiments.md names experiments/%s.py, which does not exist", name)
        return ""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    paragraphs = _paragraphs(doc)
    command = next((p for p in paragraphs if p.lstrip().startswith(f"python experiments/{name}.py")), None)
    claims = [p for p in paragraphs if p.lstrip().startswith("Claims tested")]
    if command is None or not claims:
        log.warning(
            "experiments/%s.py: its docstring lacks the command line or the 'Claims tested' paragraph", name
        )
        return ""
    claims_text = " ".join(" ".join(p.split()) for p in claims)
    claims_text = re.sub(r"^Claims tested", "**Claims tested**", claims_text)
    return f"```sh\n{textwrap.dedent(command).strip()}\n```\n\n{claims_text}\n"


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri != "experiments.md":
        return markdown
    return MARKER.sub(lambda m: experiment_summary(m.group(1)), markdown)
