"""A fingerprint says what ran: comments, docstrings, imports and metadata never change it; code does;
a harness change that moves a reading's numbers gives it a new fingerprint at `bench freeze`, so runs of
the old numerics are listed as an older fingerprint and never mixed with the new."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.contract import fingerprint, frozen, registry
from bench.training import numerics

ROOT = Path(__file__).resolve().parent.parent

SOURCE = '''"""Title — source: a document."""
import math

CLAIMS = [1]
ASSUMPTIONS = []


def build_model(hp):
    """Why the model is built this way."""
    return math.sqrt(4) * 3  # a comment
'''


def code_hash_of(tmp_path, text: str) -> str:
    path = tmp_path / "module.py"
    path.write_text(text)
    return registry.code_hash(path)


def test_comments_docstrings_imports_and_metadata_keep_the_code_hash(tmp_path):
    base = code_hash_of(tmp_path, SOURCE)
    same = [SOURCE.replace("# a comment", "# another comment, longer"),
            SOURCE.replace("Title — source: a document.", "Another title, another line"),
            SOURCE.replace("Why the model is built this way.", "Why, at length."),
            SOURCE.replace("import math\n", "import math\nimport os\nfrom pathlib import Path\n"),
            SOURCE.replace("CLAIMS = [1]", "CLAIMS = [1, 2]"),
            SOURCE.replace("ASSUMPTIONS = []", "ASSUMPTIONS: list = ['labelled otherwise']"),
            SOURCE + "\n\n# a trailing comment\n"]
    assert [code_hash_of(tmp_path, text) for text in same] == [base] * len(same)


def test_every_code_edit_changes_the_code_hash(tmp_path):
    base = code_hash_of(tmp_path, SOURCE)
    edits = [("* 3", "* 4"), ("sqrt(4)", "sqrt(9)"), ("CLAIMS = [1]", "CLAIMS = [1]\nSCALE = 2"),
             ("return math", "hp = None\n    return math")]
    hashes = {code_hash_of(tmp_path, SOURCE.replace(*edit)) for edit in edits}
    assert base not in hashes and len(hashes) == len(edits)


def test_a_comment_in_a_real_recipe_keeps_its_fingerprint(tmp_path):
    recipe = registry.load("lenet_sgd")
    copy = tmp_path / "lenet_sgd.py"
    shutil.copy(recipe.module.__file__, copy)
    copy.write_text(copy.read_text().replace("\ndef ", "\n# a reviewer's comment\ndef ", 1) + "\n# the end\n")
    assert registry.code_hash(copy) == recipe.code
    assert recipe.fingerprint == frozen.frozen()["lenet_sgd"]


AMD = {"cpu": "AMD EPYC", "cpu_id": "AuthenticAMD family 25 model 17 stepping 1", "capability": "AVX512",
       "torch": "2.14.1"}
INTEL = {**AMD, "cpu": "Intel(R) Xeon(R)", "cpu_id": "GenuineIntel family 6 model 143 stepping 8"}
NUMBERS = {"machine": AMD, "sha256": "a" * 64, "curves": {"train_loss": [1.0, 0.5]},
           "weights": {"fc.weight": [10, 2.0]}}


def on_machine(numbers: dict, machine: dict, sha: str, loss_scale: float = 1.0) -> dict:
    return {**numbers, "machine": machine, "sha256": sha,
            "curves": {"train_loss": [v * loss_scale for v in numbers["curves"]["train_loss"]]}}


@pytest.fixture
def frozen_lenet(tmp_path, monkeypatch):
    """A FROZEN.json of lenet_sgd alone, in a temporary folder; returns a function that sets what the probe says."""
    monkeypatch.setattr(frozen, "FROZEN_PATH", tmp_path / "FROZEN.json")
    monkeypatch.setattr(registry, "all_readings", lambda: [registry.load("lenet_sgd")])

    def probe_says(numbers):
        monkeypatch.setattr(numerics, "probe", lambda recipe: numbers)
    return probe_says


def test_freeze_gives_a_new_fingerprint_only_when_the_numbers_move(frozen_lenet):
    frozen_lenet(NUMBERS)
    quiet = dict(log=lambda *a: None)
    first = numerics.freeze(**quiet)
    old = frozen.frozen()["lenet_sgd"]
    assert first == {"lenet_sgd": (None, old)} and registry.load("lenet_sgd").fingerprint == old
    assert numerics.freeze(**quiet) == {}                              # same numbers: nothing changes

    frozen_lenet(on_machine(NUMBERS, AMD, "b" * 64))                   # the machine that pinned them, other bits
    messages = []
    changed = numerics.freeze(log=messages.append)
    new = frozen.frozen()["lenet_sgd"]
    assert changed == {"lenet_sgd": (old, new)} and new != old
    assert frozen.frozen_entry("lenet_sgd")["revision"] == 1 and "numerics revision 1" in messages[0]
    assert registry.load("lenet_sgd").fingerprint == new               # old runs are now an older fingerprint
    assert numerics.freeze(**quiet) == {}                              # and it stays there


def test_a_pin_from_another_cpu_is_judged_by_tolerance_never_by_bits():
    pins = [NUMBERS]
    rounding = numerics.check(pins, on_machine(NUMBERS, INTEL, "c" * 64, 1 + 1e-4))
    assert rounding.ok and rounding.status == "agrees" and not rounding.own_pin
    formula = numerics.check(pins, on_machine(NUMBERS, INTEL, "c" * 64, 1.1))
    assert not formula.ok and formula.status == "moved" and "train_loss" in formula.details[0]
    same_kind = numerics.check(pins, on_machine(NUMBERS, AMD, "c" * 64, 1 + 1e-4))
    assert not same_kind.ok and same_kind.own_pin and "final weights" in same_kind.details[0]
    assert numerics.check(pins, NUMBERS).status == "same"
    several = [NUMBERS, on_machine(NUMBERS, INTEL, "c" * 64, 1 + 1e-4)]   # two machines' pins side by side
    assert numerics.check(several, on_machine(NUMBERS, INTEL, "c" * 64, 1 + 1e-4)).status == "same"


def test_freeze_on_another_cpu_adds_its_pin_and_never_raises_a_revision(frozen_lenet):
    frozen_lenet(NUMBERS)
    numerics.freeze(log=lambda *a: None)
    fingerprint = frozen.frozen()["lenet_sgd"]
    frozen_lenet(on_machine(NUMBERS, INTEL, "c" * 64, 1 + 1e-4))       # rounding of another CPU
    messages = []
    assert numerics.freeze(log=messages.append) == {}
    entry = frozen.frozen_entry("lenet_sgd")
    assert entry["revision"] == 0 and [p["machine"] for p in entry["pins"]] == [AMD, INTEL]
    assert "pinned this machine" in messages[0]

    frozen_lenet(on_machine(NUMBERS, {**INTEL, "cpu_id": "GenuineIntel family 6 model 85"}, "d" * 64, 1.1))
    with pytest.raises(numerics.FreezeRefused, match="lenet_sgd"):     # beyond tolerance, no pin of its own
        numerics.freeze(log=lambda *a: None)
    assert frozen.frozen_entry("lenet_sgd") == entry and frozen.frozen()["lenet_sgd"] == fingerprint
    assert numerics.freeze(log=lambda *a: None, accept_moved=True)     # said on purpose: a new revision
    assert frozen.frozen_entry("lenet_sgd")["revision"] == 1


def test_a_format_2_pin_is_read_and_adopted_by_a_machine_that_reproduces_it(frozen_lenet):
    import json
    legacy = {"capability": "AVX512", **{k: v for k, v in NUMBERS.items() if k != "machine"}}
    recipe = registry.load("lenet_sgd")
    frozen.FROZEN_PATH.write_text(json.dumps({"format": 2, "recipes": {"lenet_sgd": {
        "fingerprint": recipe.fingerprint_for(0), "code": recipe.code, "revision": 0, "numerics": legacy}}}))
    assert frozen.frozen_entry("lenet_sgd")["pins"][0]["machine"] == {"capability": "AVX512"}
    assert numerics.check(frozen.frozen_entry("lenet_sgd")["pins"], NUMBERS).status == "agrees"
    frozen_lenet(NUMBERS)
    assert numerics.freeze(log=lambda *a: None) == {}
    assert frozen.frozen_entry("lenet_sgd")["pins"] == [NUMBERS]


# ---------------------------------------------------------------- the same hash on every CPython

def other_pythons() -> list[Path]:
    """Every other CPython 3.10+ on this machine: pyenv's versions and pythonX.Y on PATH."""
    found = {}
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob("*/bin/python3")) if root.is_dir() else []
    candidates += [Path(p) for v in range(10, 20) if (p := shutil.which(f"python3.{v}"))]
    for exe in candidates:
        try:
            out = subprocess.run([str(exe), "-c", "import sys; print(sys.implementation.name, *sys.version_info[:3])"],
                                 capture_output=True, text=True, timeout=30).stdout.split()
        except (OSError, subprocess.SubprocessError):
            continue
        if len(out) == 4 and out[0] == "cpython" and (int(out[1]), int(out[2])) >= (3, 10):
            found.setdefault(tuple(map(int, out[1:])), exe)
    here = tuple(sys.version_info[:3])
    return [exe for version, exe in sorted(found.items()) if version != here]


def frozen_codes() -> dict[str, str]:
    return {label: entry["code"] for label, entry in frozen.frozen_all().items()}


def printed_codes(python: str) -> dict[str, str]:
    """`python -m bench.contract.fingerprint` under that interpreter, from the repository root, torch never imported."""
    code = ("import runpy, sys; sys.argv = ['bench.contract.fingerprint']; "
            "runpy.run_module('bench.contract.fingerprint', run_name='__main__'); "
            "assert 'torch' not in sys.modules, 'bench.contract.fingerprint imported torch'")
    proc = subprocess.run([python, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split() for line in proc.stdout.splitlines())


def test_fingerprint_module_reproduces_frozen_here_without_torch():
    assert printed_codes(sys.executable) == frozen_codes()


@pytest.mark.parametrize("python", other_pythons() or [None], ids=lambda p: "none-found" if p is None else p.parts[-3])
def test_every_other_cpython_gives_the_frozen_code_hashes(python):
    if python is None:
        pytest.skip("no other CPython 3.10+ on this machine (pyenv versions, python3.X on PATH)")
    assert printed_codes(str(python)) == frozen_codes()


def test_a_field_later_pythons_add_is_ignored_while_empty():
    """3.12's FunctionDef.type_params: an empty list is what 3.10 and 3.11 never show; a full one counts."""
    import ast

    class LaterFunctionDef(ast.FunctionDef):             # FunctionDef as 3.12+ defines its fields
        _fields = tuple(f for f in ast.FunctionDef._fields if f != "type_params") + ("type_params",)

    plain = ast.parse("def f(x):\n    return x\n").body[0]
    later = LaterFunctionDef(**{f: getattr(plain, f, None) for f in ast.FunctionDef._fields})
    later.type_params = []
    assert fingerprint.dump(later) == fingerprint.dump(plain).replace("FunctionDef(", "LaterFunctionDef(", 1)
    later.type_params = [ast.Name(id="T")]
    assert "type_params=[Name(id='T'" in fingerprint.dump(later)
