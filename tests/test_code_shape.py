"""The code's shape, as the layout promises it: no import loop, Faust/aiokafka internals only in
the adapter, no function over 150 lines. (Lint and format are `ruff check` / `ruff format --check`,
run by `make test` before pytest.)"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "stream"
ADAPTER = PACKAGE / "service" / "faust_adapter.py"
MAX_FUNCTION_LINES = 150


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere (top level or inside functions)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                root = base[: len(base) - (node.level - 1)]
                mod = ".".join(root + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from . import x` names submodules only; `from .m import x`: m, or m.x if a module
            targets = ([mod] if node.module else []) + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {n: _imports(n, p, modules) for n, p in modules.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(n: str, stack: list[str]) -> None:
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m) :] + [m])
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, f"import loops: {cycles}"
    # the graph is real: it sees relative imports, top-level and inside functions
    assert {"stream.service.faust_adapter", "stream.engine"} <= graph["stream.service.churn"]
    assert "stream.service.topics" in graph["stream.dev.kafka"]


def test_faust_and_aiokafka_private_names_only_in_the_adapter():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == ADAPTER:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("faust", "aiokafka", "mode"):
                bad = [a.name for a in node.names if a.name.startswith("_")]
                bad += [node.module] if any(p.startswith("_") for p in node.module.split(".")) else []
                if bad:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {bad}")
            elif (
                isinstance(node, ast.ImportFrom) and node.level > 1 and any(a.name.startswith("_") for a in node.names)
            ):
                # (siblings in one package may share private names; other packages may not)
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports another package's private name")
    assert not offenders, offenders
    # the adapter is where they are: this test would notice it moved
    assert "_ensure_producer" in ADAPTER.read_text()


def test_no_function_is_over_150_lines():
    long = []
    for folder in (PACKAGE, ROOT / "bench", ROOT / "tests"):
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
