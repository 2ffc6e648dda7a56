"""Imports flow one way (tests/layering.py holds the rules table; docs/architecture.md the picture):
no upward import and no import cycle between modules, counting imports inside functions; every
Fabric task stays thin. The checker itself is tried on a planted package, so these tests can fail."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO
from tests.layering import cycles, scan, upward

MAX_TASK_LINES = 10
MAX_MODULE_LINES = 400
PACKAGES = ("lab", "chaos", "loadtest", "reports", "dnslab", "bench")


def test_no_package_imports_upward():
    assert upward(scan(REPO)) == []


def test_no_import_cycle_between_modules():
    assert cycles(scan(REPO)) == []


def test_the_scan_reads_imports_inside_functions():
    found = {(imp.source, imp.target) for imp in scan(REPO)}
    # dnslab/tasks.py imports chaos only inside its functions (so that `fab --list` stays quick)
    assert ("dnslab.tasks", "chaos.execute") in found and ("fabfile", "dnslab.tasks") in found


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_catches_a_planted_upward_import_and_a_cycle(tmp_path):
    _plant(tmp_path, {
        "lab/__init__.py": "",
        "lab/model.py": "import json\n\n\ndef f():\n    from chaos.run import go\n    return go\n",
        "chaos/__init__.py": "",
        "chaos/run.py": "from lab.model import f\n\n\ndef go():\n    return f\n",
        "loadtest/__init__.py": "",
        "loadtest/knobs.py": "from . import engine\n",
        "loadtest/engine.py": "def start():\n    import loadtest.knobs\n",
        "reports/__init__.py": "",
        "reports/answers.py": "import lab.model\nimport chaos\n",
        "fabfile.py": "from lab import model\n",
    })
    found = scan(tmp_path)
    assert upward(found) == [
        "fabfile.py:1: fabfile imports lab.model: fabfile.py imports only the application layer (dnslab) "
        "and libraries",
        "lab/model.py:5: lab.model imports chaos.run: lab imports only itself and loadtest.knobs",
        "reports/answers.py:2: reports.answers imports chaos: reports may import lab and loadtest, "
        "never chaos",
    ]
    assert cycles(found) == [
        "import cycle between chaos.run, lab.model: chaos/run.py:1 chaos.run -> lab.model; "
        "lab/model.py:5 lab.model -> chaos.run",
        "import cycle between loadtest.engine, loadtest.knobs: loadtest/engine.py:2 loadtest.engine -> "
        "loadtest.knobs; loadtest/knobs.py:1 loadtest.knobs -> loadtest.engine",
    ]
    assert cycles(found, [frozenset({"chaos.run", "lab.model"})]) == cycles(found)[1:]


def test_fabric_tasks_stay_thin():
    tree = ast.parse((REPO / "fabfile.py").read_text())
    tasks = [node for node in tree.body if isinstance(node, ast.FunctionDef)
             and any("task" in ast.unparse(d) for d in node.decorator_list)]
    assert len(tasks) >= 14
    long = [f"fabfile.py:{t.lineno} {t.name}: {t.end_lineno - t.lineno + 1} lines" for t in tasks
            if t.end_lineno - t.lineno + 1 > MAX_TASK_LINES]
    assert long == []


def test_no_module_is_over_400_lines():
    sizes = {path: len(path.read_text().splitlines())
             for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}
    sizes[REPO / "fabfile.py"] = len((REPO / "fabfile.py").read_text().splitlines())
    assert len(sizes) > 50
    assert [f"{p.relative_to(REPO)}: {n} lines" for p, n in sizes.items() if n > MAX_MODULE_LINES] == []
