"""Which of dnslab's packages may import which: the rules table, and a checker that reads every import
with `ast` (those inside functions too) and reports upward imports and module cycles.

The table is the one place the layers are written down (docs/architecture.md describes them); the
check runs in tests/test_layers.py.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# What each top-level part may import of ours, besides itself. An entry names a package or a module and
# allows everything under it. Nothing here restricts the standard library or third-party libraries.
RULES: dict[str, tuple[str, ...]] = {
    "loadtest": (),                                   # runs in the guest: stdlib, locust, dnspython only
    "lab": ("loadtest.knobs",),                       # the one table of load options (stdlib only)
    "reports": ("lab", "loadtest"),                   # reads run directories; never chaos
    "chaos": ("lab", "loadtest", "reports"),
    "dnslab": ("lab", "chaos", "loadtest", "reports"),  # the application layer: demo, Fabric tasks
    "fabfile": ("dnslab",),                           # thin tasks over the application layer
    "bench": ("lab", "chaos", "loadtest", "reports", "dnslab"),
}
WHY = {
    "loadtest": "loadtest imports nothing of ours (it runs in the guest)",
    "lab": "lab imports only itself and loadtest.knobs",
    "reports": "reports may import lab and loadtest, never chaos",
    "chaos": "chaos may import lab, loadtest and reports",
    "dnslab": "the application layer imports the packages, never fabfile, bench or tests",
    "fabfile": "fabfile.py imports only the application layer (dnslab) and libraries",
    "bench": "bench imports the runtime packages, never fabfile or tests",
}
OURS = (*RULES, "tests")


@dataclass(frozen=True)
class Import:
    """One import statement's target, resolved to a module of ours."""

    source: str  # the importing module, e.g. "lab.deploy"
    target: str  # the imported module, e.g. "lab.remote" (a package stands for its __init__)
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path}:{self.line}"


def modules(root: Path, parts: Iterable[str] = RULES) -> dict[str, Path]:
    """Every module of the given top-level parts under `root`: {dotted name: file}."""
    found: dict[str, Path] = {}
    for part in parts:
        single = root / f"{part}.py"
        if single.is_file():
            found[part] = single
        for path in sorted((root / part).rglob("*.py")) if (root / part).is_dir() else []:
            names = path.relative_to(root).with_suffix("").parts
            found[".".join(names[:-1] if names[-1] == "__init__" else names)] = path
    return found


def _resolve(name: str, source: str, is_package: bool, level: int) -> str:
    """The absolute name of `from <level dots><name> import ...` in module `source`."""
    if not level:
        return name
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(name: str, path: Path, known: Mapping[str, Path]) -> list[Import]:
    """The imports of ours in one module, at any depth (functions, classes, conditionals)."""
    out = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", name, is_package, node.level)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            if target.split(".")[0] in OURS:
                out.append(Import(name, target, known.get(name, path), node.lineno))
    return out


def _allowed(imp: Import, rules: Mapping[str, tuple[str, ...]]) -> bool:
    part = imp.source.split(".")[0]
    if imp.target.split(".")[0] == part:
        return True
    return any(imp.target == ok or imp.target.startswith(ok + ".") for ok in rules[part])


def upward(found: Iterable[Import], rules: Mapping[str, tuple[str, ...]] = RULES,
           why: Mapping[str, str] = WHY) -> list[str]:
    """One line per import that breaks the rules: file:line, what, and the rule."""
    return [f"{imp.where()}: {imp.source} imports {imp.target}: {why.get(imp.source.split('.')[0], '')}"
            for imp in found if not _allowed(imp, rules)]


def cycles(found: Iterable[Import], allowed_pairs: Iterable[frozenset[str]] = ()) -> list[str]:
    """One line per import cycle between modules (strongly connected components, Tarjan), naming the
    imports that close it. An edge between a pair in `allowed_pairs` is left out."""
    allowed = set(allowed_pairs)
    edges: dict[str, dict[str, Import]] = {}
    for imp in found:
        if imp.source != imp.target and frozenset((imp.source, imp.target)) not in allowed:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:  # recursive Tarjan: the module graph is a few hundred nodes deep at most
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    out = []
    for component in sorted(components):
        members = set(component)
        closing = [imp for src in component for dst, imp in sorted(edges.get(src, {}).items())
                   if dst in members]
        out.append(f"import cycle between {', '.join(component)}: "
                   + "; ".join(f"{imp.where()} {imp.source} -> {imp.target}" for imp in closing))
    return out


def scan(root: Path, parts: Iterable[str] = RULES) -> list[Import]:
    """Every import of ours in every module of `parts` under `root` (paths relative to it)."""
    known = {name: path.relative_to(root) for name, path in modules(root, parts).items()}
    return [imp for name, path in sorted(known.items()) for imp in imports(name, root / path, known)]
