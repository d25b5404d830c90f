"""The documentation lives in the repository, builds without a warning, and covers the public API.

- the site (``make docs``: mkdocs-material + mkdocstrings + mkdocs-jupyter) builds in strict mode;
- every public object is on an API reference page;
- every public function, and every function a public factory returns (``fb.backprop(net, loss)``
  and the like), has a Google-style docstring with ``Args:`` and ``Returns:``;
- no file of the repository points to a path outside it;
- the examples of the guides run.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fbackprop as fb

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SUBMODULES = (
    "activations", "layers", "losses", "data", "spectra", "optim", "results", "status", "streaming",
    "distributed",
)  # fmt: skip


# --- the site builds, strictly ------------------------------------------------------------------
def _require_docs_tools():
    """The docs tools are dev extras: without them this fails (it never skips silently)."""
    missing = []
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python", "mkdocs_jupyter"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        pytest.fail(f"the docs tools are not installed ({', '.join(missing)}): pip install -e '.[dev]'")


def test_docs_build_strict(tmp_path):
    _require_docs_tools()
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    log = out.stdout + out.stderr
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert out.returncode == 0 and not warnings, (
        "`mkdocs build --strict` failed (broken links, missing pages, docstring warnings):\n"
        + "\n".join(warnings or log.splitlines()[-40:])
    )
    for page in ("index.html", "api/gradients/index.html", "notebooks/03_curvature/index.html"):
        assert (tmp_path / "site" / page).exists(), f"the built site has no {page}"


# --- what counts as public ----------------------------------------------------------------------
def _is_ours(obj) -> bool:
    return getattr(obj, "__module__", "").startswith("fbackprop")


def _public_names(module) -> list[str]:
    """``__all__``, or else the public names defined in the module itself (not those it imports)."""
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and not inspect.ismodule(obj)
            and getattr(obj, "__module__", module.__name__) == module.__name__
        ]
    return list(names)


def _public_objects() -> dict[str, object]:
    """``{"fb.name": obj}``: fb.__all__ and the public members of the user-facing submodules."""
    out, seen = {}, set()
    candidates = [(f"fb.{name}", getattr(fb, name)) for name in fb.__all__]
    for sub in SUBMODULES:
        module = getattr(fb, sub, None) or importlib.import_module(f"fbackprop.{sub}")
        candidates += [(f"fb.{sub}.{name}", getattr(module, name)) for name in _public_names(module)]
    for name, obj in candidates:  # each object once, under its shortest public name
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and _is_ours(obj) and id(obj) not in seen:
            seen.add(id(obj))
            out[name] = obj
    return out


def _public_functions() -> dict[str, object]:
    return {k: v for k, v in _public_objects().items() if inspect.isfunction(v)}


def _public_methods() -> dict[str, object]:
    """Public methods (not properties, not dunders) defined in fbackprop on the public classes."""
    out = {}
    for qual, cls in _public_objects().items():
        if not inspect.isclass(cls):
            continue
        for name, attr in vars(cls).items():
            if name.startswith("_") or isinstance(attr, property):
                continue
            fn = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
            if inspect.isfunction(fn) and _is_ours(fn):
                out[f"{qual}.{name}"] = fn
    return out


# --- Google-style docstrings --------------------------------------------------------------------
def _returns_something(fn) -> bool:
    """A ``return <value>`` (or ``yield``) in the function's own body, or a non-None annotation."""
    ann = inspect.signature(fn).return_annotation
    if ann is None or ann == "None":
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return True
    body = tree.body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, (ast.Yield, ast.YieldFrom)):
                return True
            if isinstance(child, ast.Return) and child.value is not None:
                if not (isinstance(child.value, ast.Constant) and child.value.value is None):
                    return True
            if walk(child):
                return True
        return False

    if isinstance(body, ast.Expr) and isinstance(body.value, ast.Lambda):
        return True
    return walk(body)


def _documented_args(doc: str) -> set[str]:
    """The parameter names listed in a Google ``Args:`` section."""
    m = re.search(r"^(Args|Arguments):[ \t]*\n((?:[ \t]+\S.*\n?|[ \t]*\n)*)", doc, re.M)
    if not m:
        return set()
    return set(re.findall(r"^[ \t]{1,8}\*{0,2}(\w+)[ \t]*(?:\([^)]*\))?[ \t]*:", m.group(2), re.M))


def docstring_problems(
    fn, *, args: bool | None = None, returns: bool | None = None, wrapper: bool = False
) -> list[str]:
    """What a function's docstring lacks: ``Args:`` (naming every parameter) and ``Returns:``.

    ``wrapper``: ``fn`` is a checked wrapper ``(params, x, y, *args)``, whose ``*args`` stand for the
    core's own names (``v``, ``key``): those need not be listed under that name.
    """
    doc = inspect.getdoc(fn)
    if not doc or not doc.strip():
        return ["no docstring"]
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ("self", "cls") and not (wrapper and p.kind is p.VAR_POSITIONAL)
        ]
    except (TypeError, ValueError):
        params = []
    takes_args = bool(params) if args is None else args
    gives = _returns_something(fn) if returns is None else returns
    problems = []
    if takes_args:
        if not re.search(r"^(Args|Arguments):", doc, re.M):
            problems.append("no Args: section")
        else:
            missing = [p.name for p in params if p.name not in _documented_args(doc)]
            if missing:
                problems.append(f"Args: does not list {', '.join(missing)}")
    if gives and not re.search(r"^(Returns|Yields):", doc, re.M):
        problems.append("no Returns: section")
    return problems


def _report(
    offenders: dict[str, list[str]], what: str, lack: str = "a Google-style docstring (Args:/Returns:)"
) -> str:
    lines = [f"{len(offenders)} {what} lack {lack}:"]
    lines += [f"  {name}: {'; '.join(problems)}" for name, problems in sorted(offenders.items())]
    return "\n".join(lines)


def test_public_functions_have_google_docstrings():
    offenders = {name: p for name, fn in _public_functions().items() if (p := docstring_problems(fn))}
    assert not offenders, _report(offenders, "public functions")


def test_public_classes_have_docstrings():
    offenders = {}
    for name, cls in _public_objects().items():
        if not inspect.isclass(cls):
            continue
        doc = cls.__doc__ or ""
        fields = getattr(cls, "_fields", None)
        if not doc.strip() or (fields is not None and doc == f"{cls.__name__}({', '.join(fields)})"):
            offenders[name] = ["no docstring of its own"]
    assert not offenders, _report(offenders, "public classes", "a docstring")


def test_public_methods_have_google_docstrings():
    offenders = {name: p for name, fn in _public_methods().items() if (p := docstring_problems(fn))}
    assert not offenders, _report(offenders, "public methods")


# --- what the factories return ------------------------------------------------------------------
def _factory_results() -> dict[str, object]:
    """Every function a public factory returns, for each of its methods or kinds."""
    net = fb.mlp([2, 3, 1])
    loss = "squared_error"
    made = {
        "fb.hvp(net, loss, method='autodiff')": fb.hvp(net, loss, method="autodiff"),
        "fb.hvp(net, loss, method='backprop')": fb.hvp(net, loss, method="backprop"),
        "fb.fisher_vp(net, loss, kind='empirical')": fb.fisher_vp(net, loss, kind="empirical"),
        "fb.fisher_vp(net, loss, kind='mc')": fb.fisher_vp(net, loss, kind="mc"),
        "fb.jacobian(net, method='backprop')": fb.jacobian(net, method="backprop"),
        "fb.jacobian(net, method='autodiff')": fb.jacobian(net, method="autodiff"),
        "fb.jacobian_gram(net, method='backprop')": fb.jacobian_gram(net, method="backprop"),
        "fb.jacobian_gram(net, method='autodiff')": fb.jacobian_gram(net, method="autodiff"),
        "fb.hessian_diag(net, loss, per_example=True)": fb.hessian_diag(net, loss, per_example=True),
        "fb.hessian_blocks(net, loss, exact=False)": fb.hessian_blocks(net, loss, exact=False),
    }
    # every other public function that makes a function from (net, loss) or (net,) alone
    for name, fn in _public_functions().items():
        for call in ((net, loss), (net,)):
            try:
                inspect.signature(fn).bind(*call)
            except TypeError:
                continue
            try:
                result = fn(*call)
            except Exception:  # not a factory of this form (it needs data, or refuses these)
                continue
            if callable(result) and not inspect.isclass(result) and not hasattr(result, "_fields"):
                made.setdefault(f"{name}({', '.join(('net', 'loss')[: len(call)])})", result)
            break
    return made


def test_factory_results_found():
    found = _factory_results()
    for expected in (
        "fb.backprop(net, loss)",
        "fb.value_and_backprop(net, loss)",
        "fb.autodiff(net, loss)",
        "fb.ggn_vp(net, loss)",
        "fb.hessian_diag(net, loss)",
    ):
        assert expected in found, f"{expected} was not found among the factories: {sorted(found)}"


def test_factory_results_have_google_docstrings():
    offenders = {
        name: p
        for name, fn in _factory_results().items()
        if (p := docstring_problems(fn, args=True, returns=True, wrapper=True))
    }
    assert not offenders, _report(offenders, "functions returned by public factories")


# --- the API reference covers the public API ----------------------------------------------------
def _resolve(path: str):
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(path)


def _api_entries() -> list[tuple[str, str]]:
    """``(identifier, options text)`` of every ``::: identifier`` on the API pages."""
    entries = []
    for page in sorted((DOCS / "api").glob("*.md")):
        text = page.read_text()
        for m in re.finditer(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+.*\n)*)", text, re.M):
            entries.append((m.group(1), m.group(2)))
    return entries


def test_api_reference_covers_the_public_api():
    documented = set()
    for ident, options in _api_entries():
        obj = _resolve(ident)
        documented.add(id(obj))
        if inspect.ismodule(obj) and "members: false" not in options:
            documented.update(id(getattr(obj, n)) for n in _public_names(obj) if hasattr(obj, n))
    missing = sorted(name for name, obj in _public_objects().items() if id(obj) not in documented)
    assert not missing, (
        "public objects missing from docs/api/*.md (add a `::: fbackprop.module.name` entry):\n  "
        + ("\n  ".join(missing))
    )


# --- nothing points outside the repository ------------------------------------------------------
# Built from pieces so that this file does not match its own patterns.
_OUTSIDE = re.compile(
    "|".join(
        [re.escape(".." + "/shared"), re.escape("DESIGN" + ".md"), r"\bseeds" + "/", r"\bseeds? 00[0-3]\b"]
    ),
    re.IGNORECASE,
)


def _repository_text_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
        files = [ROOT / f for f in out if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every file but the ignored folders
        skip = {".git", ".venv", "site", "runs", ".cache", "__pycache__", ".pytest_cache", ".hypothesis"}
        files = [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]
    return [f for f in files if f.is_file() and f.suffix not in {".png", ".jpg", ".gif", ".pdf", ".ico"}]


def _notebook_text(raw: str) -> str:
    """A notebook's sources and text outputs, without its base64 images (which could match by chance).

    Line numbers are then counted in that text, one cell after another.
    """
    nb = json.loads(raw)
    parts = []
    for cell in nb.get("cells", []):
        parts.append("".join(cell.get("source", "")))
        for out in cell.get("outputs", []):
            parts.append("".join(out.get("text", "")))
            for kind, value in out.get("data", {}).items():
                if kind.startswith("text/"):
                    parts.append("".join(value))
    return "\n".join(parts)


def test_no_file_refers_to_a_path_outside_the_repository():
    hits = []
    for path in _repository_text_files():
        if path.resolve() == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if path.suffix == ".ipynb":
            text = _notebook_text(text)
        for i, line in enumerate(text.splitlines(), 1):
            if m := _OUTSIDE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{i}: {m.group(0)!r}: {line.strip()[:120]}")
    assert not hits, (
        f"{len(hits)} lines refer to files a user who clones the repository does not have "
        "(cite the literature by author and year instead; link into docs/):\n" + "\n".join(hits)
    )


# --- the guides' examples run -------------------------------------------------------------------
EXAMPLE_PAGES = (
    "getting-started.md",
    "guide/gradients.md",
    "guide/curvature.md",
    "guide/training.md",
    "guide/second-order.md",
    "guide/architectures.md",
)
#: The pages whose examples take 10-30 s (they train and compile several optimizers): make test-slow.
SLOW_PAGES = {"guide/curvature.md", "guide/training.md", "guide/second-order.md", "guide/architectures.md"}
PAGE_RUNS = [pytest.param(p, marks=pytest.mark.slow if p in SLOW_PAGES else ()) for p in EXAMPLE_PAGES]


def _python_blocks(text: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(r"^```python\n(.*?)^```", text, re.M | re.S)]


@pytest.mark.parametrize("page", PAGE_RUNS)
def test_guide_examples_run(page, capsys):
    blocks = _python_blocks((DOCS / page).read_text())
    assert blocks, f"docs/{page} has no ```python example"
    namespace: dict = {"__name__": f"docs/{page}"}
    for i, block in enumerate(blocks):
        try:
            exec(compile(block, f"docs/{page} (example {i + 1})", "exec"), namespace)
        except Exception as err:
            pytest.fail(f"docs/{page}, example {i + 1} fails: {type(err).__name__}: {err}\n{block}")


# --- the docstring checker itself -------------------------------------------------------------
def _good(params, x, y=None, *others, **options):
    """One line.

    Args:
        params: a tuple of ``{"W", "b"}`` dicts.
        x (jax.Array): ``(N, n_in)``.
        y: targets; default None.
        *others: more arrays like ``x``.
        **options: passed on.

    Returns:
        ``(C, grads)``: the cost and the gradients.
    """
    return params


def _no_return(a):
    """Sets a thing.

    Args:
        a: the thing.
    """
    a.append(1)


def _bad(a, b):
    """One line, with no sections."""
    return a + b


def _half(a, b):
    """Half documented.

    Args:
        a: the first.

    Returns:
        their sum.
    """
    return a + b


def test_docstring_checker():
    assert docstring_problems(_good) == []
    assert docstring_problems(_no_return) == []
    assert docstring_problems(_bad) == ["no Args: section", "no Returns: section"]
    assert docstring_problems(_half) == ["Args: does not list b"]
    assert docstring_problems(lambda: None) == ["no docstring"]


def test_every_experiment_is_on_the_experiments_page():
    """Each script with claims has its section; the page's hook pulls its command and claims from it."""
    page = (DOCS / "experiments.md").read_text()
    marked = set(re.findall(r"^<!-- experiment: (\w+) -->$", page, re.M))
    scripts = {p.stem for p in (ROOT / "experiments").glob("*.py") if "Claims tested" in p.read_text()}
    assert scripts, "no experiment script states its claims ('Claims tested' in its docstring)"
    assert scripts <= marked, f"experiments missing from docs/experiments.md: {sorted(scripts - marked)}"
    assert marked <= scripts, f"docs/experiments.md names scripts without claims: {sorted(marked - scripts)}"
