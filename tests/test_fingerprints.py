"""A fingerprint says what ran: comments, docstrings, imports and metadata never change it; code does;
a harness change that moves a reading's numbers gives it a new fingerprint at `bench freeze`, so runs of
the old numerics are listed as an older fingerprint and never mixed with the new."""
from __future__ import annotations

import shutil

from bench import numerics, registry

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
    assert recipe.fingerprint == registry.frozen()["lenet_sgd"]


def test_freeze_gives_a_new_fingerprint_only_when_the_numbers_move(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "FROZEN_PATH", tmp_path / "FROZEN.json")
    monkeypatch.setattr(registry, "all_readings", lambda: [registry.load("lenet_sgd")])
    numbers = {"capability": "AVX512", "sha256": "a" * 64, "curves": {"train_loss": [1.0, 0.5]},
               "weights": {"fc.weight": [10, 2.0]}}
    monkeypatch.setattr(numerics, "probe", lambda recipe: numbers)
    quiet = dict(log=lambda *a: None)
    first = registry.freeze(**quiet)
    old = registry.frozen()["lenet_sgd"]
    assert first == {"lenet_sgd": (None, old)} and registry.load("lenet_sgd").fingerprint == old
    assert registry.freeze(**quiet) == {}                              # same numbers: nothing changes

    moved = {**numbers, "sha256": "b" * 64}                            # same kernels, other bits
    monkeypatch.setattr(numerics, "probe", lambda recipe: moved)
    messages = []
    changed = registry.freeze(log=messages.append)
    new = registry.frozen()["lenet_sgd"]
    assert changed == {"lenet_sgd": (old, new)} and new != old
    assert registry.frozen_entry("lenet_sgd")["revision"] == 1 and "numerics revision 1" in messages[0]
    assert registry.load("lenet_sgd").fingerprint == new               # old runs are now an older fingerprint
    assert registry.freeze(**quiet) == {}                              # and it stays there
