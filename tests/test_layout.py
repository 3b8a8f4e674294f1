"""The house has rooms by layer, and imports only go down (../shared/DESIGN.md): the import graph of
bench/, built from the source with `ast` (imports inside functions included), has no cycle and no
import from a layer into one above it; the records layer reads results without torch; `bench list`
and `bench report` never load torchvision."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# lower imports nothing above it; a package may import its own modules
LAYERS = {"contract": 1, "records": 2, "training": 3, "running": 4, "judging": 5, "report": 6, "cli": 7}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(BENCH.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported bench module, line, inside a function) for every import of a bench module in the file."""
    tree = ast.parse(path.read_text())
    out = []

    def visit(node, local: bool):
        for child in ast.iter_child_nodes(node):
            inner = local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                out.extend((a.name, child.lineno, local) for a in child.names if a.name in known)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                base = child.module
                for a in child.names:
                    full = f"{base}.{a.name}"
                    if full in known:
                        out.append((full, child.lineno, local))
                    elif base in known:
                        out.append((base, child.lineno, local))
            visit(child, inner)
    visit(tree, False)
    return out


def graph() -> dict[str, list[tuple[str, int, bool]]]:
    known = set(modules())
    return {name: imports_of(path, known) for name, path in modules().items()}


def layer(module: str):
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_relative_imports_hide_from_the_graph():
    relative = [f"{module_name(p)}:{n.lineno}" for p in modules().values() for n in ast.walk(ast.parse(p.read_text()))
                if isinstance(n, ast.ImportFrom) and n.level]
    assert not relative, f"relative imports (write them as bench.x.y): {relative}"


def test_every_module_lives_in_a_layer_and_every_layer_says_what_it_holds():
    loose = [m for m in modules() if m.count(".") == 1 and m.split(".")[1] not in ("__main__",) + tuple(LAYERS)]
    assert not loose, f"modules outside the layers: {loose}"
    for name in LAYERS:
        doc = ast.get_docstring(ast.parse((BENCH / name / "__init__.py").read_text()))
        assert doc and len(doc) > 80, f"bench/{name}/__init__.py needs a paragraph on what lives there"


def test_imports_only_go_down():
    upward = [f"{m}:{line} imports {target}" for m, edges in graph().items() for target, line, _ in edges
              if layer(m) and layer(target) and layer(target) > layer(m)]
    assert not upward, "imports into a higher layer:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges = {m: sorted({t for t, _, _ in e if t != m}) for m, e in graph().items()}
    state, path, cycles = {}, [], []

    def walk(node):
        state[node] = "open"
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            walk(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_function_local_import_of_bench_code():
    """A local import would only dodge a cycle: bench's own modules are imported at the top (the door's
    command dispatch uses importlib, by design: each command loads only what it needs)."""
    local = [f"{m}:{line} imports {target}" for m, edges in graph().items() for target, line, inside in edges if inside]
    assert not local, "function-local imports of bench modules:\n" + "\n".join(local)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_records_layer_reads_results_without_torch(tmp_path):
    code = ("import sys; from bench.records import evidence, export, format, groups, selection, store; "
            f"ev = evidence.read({str(ROOT / 'results')!r}); assert ev.records; "
            "export.runs_frame(ev, {}); "
            "bad = [m for m in ('torch', 'torchvision', 'bench.training', 'bench.running') if m in sys.modules]; "
            "assert not bad, bad")
    out = _run(code)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("command", [["list"], ["list", "--json"], ["report", "--results", "{tmp}/results",
                                                                     "--out", "{tmp}/REPORT.md"]])
def test_list_and_report_never_load_torchvision(command, tmp_path):
    from tests.records import runs, write
    write(tmp_path / "results", *runs("lenet_sgd", [99.0, 99.1, 98.9]))
    argv = [c.format(tmp=tmp_path) for c in command]
    code = ("import sys; from bench.cli.main import main; code = main(%r); "
            "assert code == 0, code; assert 'torchvision' not in sys.modules, 'torchvision was imported'; "
            "assert 'bench.running.runner' not in sys.modules, 'the runner was imported'" % argv)
    out = _run(code)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_harness_hash_reads_files_that_exist_and_every_dataset_module():
    """A moved or new module of the code every run goes through must not drop out of the harness hash."""
    from bench.training.harness import HARNESS_FILES, harness_hash
    training = BENCH / "training"
    assert all((training / name).is_file() for name in HARNESS_FILES)
    assert {p.relative_to(training).as_posix() for p in (training / "data").glob("*.py")} <= set(HARNESS_FILES)
    assert len(harness_hash()) == 16
