"""``authsvc/services/`` by role (issue 20, step 4; README, "Architecture"): every service module
lives in one of four subpackages, and they import one way, ``flows`` -> ``factors`` -> ``core``
-> ``platform`` (a module may import its own subpackage and those to its right); the services
never import the HTTP layer or the application's assembly; no import cycle among them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "authsvc" / "services"
ORDER = ["flows", "factors", "core", "platform"]  # each may import itself and what follows it
ABOVE = ("authsvc.api", "authsvc.app", "authsvc.container", "authsvc.cli", "authsvc.workers", "authsvc.sync_worker")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """Modules ``path`` imports when it runs (``if TYPE_CHECKING:`` blocks left out), absolute;
    ``from package import name`` counts as importing ``package.name`` when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                sub = f"{mod}.{a.name}"
                as_path = ROOT.joinpath(*sub.split("."))
                is_module = as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists()
                found.add(sub if is_module else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): {m for m in _runtime_imports(p) if m.startswith("authsvc.")}
            for p in sorted(SERVICES.rglob("*.py"))}


def test_every_service_module_has_a_role():
    flat = [p.name for p in SERVICES.glob("*.py") if p.name != "__init__.py"]
    assert not flat, f"service modules outside flows/, factors/, core/, platform/: {flat}"
    assert sorted(p.name for p in SERVICES.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(ORDER)


def test_roles_import_one_way():
    wrong = []
    for mod, imports in _graph().items():
        parts = mod.split(".")
        if len(parts) < 3:
            continue
        rank = ORDER.index(parts[2])
        for target in imports:
            t = target.split(".")
            if t[:2] == ["authsvc", "services"] and len(t) > 2 and ORDER.index(t[2]) < rank:
                wrong.append(f"{mod} -> {target}")
            if target.startswith(ABOVE):
                wrong.append(f"{mod} -> {target}")
    assert not wrong, wrong


def test_no_import_cycle_among_services():
    graph = {m: {t for t in ts if t.startswith("authsvc.services.")} for m, ts in _graph().items()}
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError(" -> ".join(path[path.index(node):] + [node]))
        if node in done:
            return
        for nxt in graph.get(node, ()):
            walk(nxt, path + [node])
        done.add(node)

    assert len(graph) > 30
    for node in graph:
        walk(node, [])
