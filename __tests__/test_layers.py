"""The folders of app/ are layers: each imports only those below it, and what
gunicorn's master imports loads no engine, no Flask, no image library."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from support import HEAVY_MODULES

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"
# Bottom up. A layer may import its own and those before it, never one after it.
# api_keys: one reading of the key headers, for the front's nginx config and the app.
# serve: the process runner; below http, which it never imports (nor Flask: below).
LAYERS = ("model", "vision", "inference", "settings", "api_keys", "pipeline", "evaluation", "serve", "http", "cli")


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "app" and parts[1] in LAYERS else None


def app_imports(path: Path) -> set[str]:
    """The app.* modules a file imports, relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    tree = ast.parse(path.read_text())
    for block in [node for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)]:
        block.body = []  # names for type hints only: no import at run time
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "app" or name.startswith("app.")}


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


SOURCES = sorted(path for path in APP.rglob("*.py") if layer_of(".".join(path.relative_to(ROOT).parts)))


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(APP)))
def test_a_layer_imports_only_the_layers_below_it(path):
    own = LAYERS.index(layer_of(".".join(path.relative_to(ROOT).parts)))
    upward = [name for name in app_imports(path) if layer_of(name) and LAYERS.index(layer_of(name)) > own]
    assert upward == [], f"{path.relative_to(ROOT)} imports a layer above its own"


def test_the_runner_is_a_program_of_its_own_the_app_never_imports():
    for path in (APP / "serve").rglob("*.py"):
        imported = {name.split(".")[0] for name in _all_imports(path)}
        assert not imported & {"flask", "werkzeug"}, f"{path.relative_to(ROOT)} imports Flask"
    for path in (APP / "http").rglob("*.py"):
        assert not [name for name in app_imports(path) if name.startswith("app.serve")], path


def _all_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level:
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_http_layer_never_imports_an_engine():
    for path in (APP / "http").rglob("*.py"):
        assert not [name for name in app_imports(path) if name.startswith("app.inference.engines")], path


@pytest.mark.e2e  # a fresh interpreter per case
@pytest.mark.parametrize(
    "modules",
    [
        "app",  # the package itself
        "app.settings, app.serve.front, app.serve.supervisor, app.log_lines",  # the supervisor, gunicorn.conf.py
    ],  # run.sh's `python -m app.model.sources`: test_model_sources.py
)
def test_what_the_master_imports_loads_nothing_heavy(modules):
    code = f"import sys, {modules}; print([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
