"""Every number a recipe attributes to its document can be found in that document, verbatim.

The repository carries the source documents byte for byte in recipes/seeds/ (CI has no ../shared), pinned
below by their SHA-256. The first line of a recipe's docstring names its document as
`recipes/seeds/NNN_<hash>.txt`. For every reading (canonical and variants):

* each Claim.quote is an exact substring of the document: no stitching of a heading to a bullet, no "...",
  no whitespace normalisation. Context a quote cannot carry (the heading it sits under) goes in the
  claim's `note`.
* each DOCUMENT_LOG point (bench.contract.recipe.LogPoint) follows this convention for `where`:
    - prose saying where in the document, then the printed text in backquotes: `where` holds exactly one
      backquoted span, and that span is the exact printed text of the number (a substring of one line);
    - the span occurs exactly once in the document, so it pins the line the number is read from;
    - the span contains the point's value as printed: the value itself, or value / 100 when the document
      prints a fraction and the run records keep percent (e.g. `测试准确率为: 0.991500` for 99.15);
    - text in double quotes elsewhere in `where` is context (e.g. the header of a log block) and must be
      verbatim in the document too;
    - an epoch named in `where` ("Epoch 13", "第13轮") must be the point's epoch.
  Points are 1-based epochs of a curve a run records (val_* only for a recipe with a validation split),
  one per (epoch, metric), within the recipe's epochs. Only numbers printed as text count, never numbers
  read off an image.
"""
from __future__ import annotations

import hashlib
import math
import re
from pathlib import Path

import pytest

from bench.contract import registry
from bench.contract.recipe import Claim, LogPoint

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "recipes" / "seeds"
SHARED_SEEDS = ROOT.parent / "shared" / "seeds"
SOURCE = re.compile(r"recipes/seeds/(\d{3}_[0-9a-f]{16}\.txt)")

# The documents are frozen: a changed byte would silently move every quote's ground truth.
DOCUMENT_SHA256 = {
    "000_ba29e86c1874ea82.txt": "3cce4ebfe0a2f408e8b0db7feebd12622086cefd68b98f76a852b3932d6a7b16",
    "001_6e0d6cd5968aa22c.txt": "0f0ddbe020285e82adac50381e4aa95b30b1ddd83229c7d17a699b250d247dae",
    "002_84b04945752c13ec.txt": "3f5e6eed45728d7d4878cbe53e240130e119ea32092f6c412ae847db31417568",
    "003_aee73f9bf4752610.txt": "34d51527d2744316efd48771297f1980d0d995d960f9102315c70e25ea8198ef",
    "004_dde257d3e968d607.txt": "8973f7997ce53746b67a9bf41517787d8b1a08714a5cdd02817abf13926587e4",
}
CURVES = {"train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc"}
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
EPOCH_MENTION = re.compile(r"\bEpoch\s*(\d+)|第\s*(\d+)\s*轮")

NAMES = registry.names()
READINGS = [r.label for r in registry.all_readings()]


def document_name(recipe) -> str:
    m = SOURCE.search(recipe.source)
    assert m, f"{recipe.label}: the docstring's first line must name recipes/seeds/NNN_<hash>.txt ({recipe.source!r})"
    return m.group(1)


def document(recipe) -> str:
    path = SEEDS / document_name(recipe)
    assert path.is_file(), f"{recipe.label}: {path.relative_to(ROOT)} is not in the repository"
    return path.read_text(encoding="utf-8")


def claim_problems(claims, doc: str) -> list[str]:
    """Claims whose quote is not an exact substring of the document."""
    return [f"{c.metric} = {c.value}: quote {c.quote!r} is not in the document"
            for c in claims if not c.quote or c.quote not in doc]


def _prints_value(text: str, value: float) -> bool:
    for n in map(float, NUMBER.findall(text)):
        if math.isclose(n, value, rel_tol=1e-9, abs_tol=1e-12) or math.isclose(100 * n, value, rel_tol=1e-9):
            return True
    return False


def log_problems(points, doc: str) -> list[str]:
    """Points whose `where` breaks the quoting convention of the module docstring."""
    out = []
    for p in points:
        tag = f"epoch {p.epoch} {p.metric} = {p.value}"
        spans = re.findall(r"`([^`]*)`", p.where)
        if len(spans) != 1 or p.where.count("`") != 2:
            out.append(f"{tag}: `where` needs exactly one backquoted printed text ({p.where!r})")
            continue
        printed = spans[0]
        count = doc.count(printed) if printed else 0
        if count != 1:
            out.append(f"{tag}: printed text {printed!r} occurs {count} times in the document (needs exactly 1)")
        elif "\n" in printed:
            out.append(f"{tag}: printed text {printed!r} spans several lines")
        if not _prints_value(printed, p.value):
            out.append(f"{tag}: printed text {printed!r} does not show the value {p.value}")
        for context in re.findall(r'"([^"]+)"', p.where):
            if context not in doc:
                out.append(f"{tag}: quoted context {context!r} is not in the document")
        for m in EPOCH_MENTION.finditer(p.where):
            named = int(m.group(1) or m.group(2))
            if named != p.epoch:
                out.append(f"{tag}: `where` names epoch {named}")
    return out


# ---------------------------------------------------------------- the documents

def test_the_repository_carries_each_document_unchanged():
    carried = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in SEEDS.glob("*.txt")}
    assert carried == DOCUMENT_SHA256


@pytest.mark.skipif(not SHARED_SEEDS.is_dir(), reason="no ../shared/seeds beside this checkout (CI)")
def test_carried_documents_are_byte_copies_of_shared():
    for name in DOCUMENT_SHA256:
        assert (SEEDS / name).read_bytes() == (SHARED_SEEDS / name).read_bytes(), name


@pytest.mark.parametrize("name", NAMES)
def test_recipe_names_a_carried_document(name):
    r = registry.load(name)
    assert document_name(r) in DOCUMENT_SHA256
    assert document(r)


def test_every_document_has_a_recipe():
    assert {document_name(registry.load(n)) for n in NAMES} == set(DOCUMENT_SHA256)


# ---------------------------------------------------------------- claims and logs

@pytest.mark.parametrize("label", READINGS)
def test_claim_quotes_are_verbatim(label):
    r = registry.load(label)
    problems = claim_problems(r.claims, document(r))
    assert not problems, f"{label}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_document_log_quotes_are_verbatim(name):
    r = registry.load(name)
    problems = log_problems(r.document_log, document(r))
    assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", NAMES)
def test_document_log_points_are_curve_points(name):
    r = registry.load(name)
    hp = r.hparams
    recorded = CURVES if hp.split != "official" else {c for c in CURVES if not c.startswith("val_")}
    seen = set()
    for p in r.document_log:
        assert isinstance(p, LogPoint)
        assert isinstance(p.epoch, int) and 1 <= p.epoch <= hp.epochs, f"epoch {p.epoch} (1-based, <= {hp.epochs})"
        assert p.metric in recorded, f"{p.metric} is not a curve this recipe records ({sorted(recorded)})"
        assert isinstance(p.value, (int, float)) and math.isfinite(p.value)
        assert (p.epoch, p.metric) not in seen, f"two points for epoch {p.epoch} {p.metric}"
        seen.add((p.epoch, p.metric))


# ---------------------------------------------------------------- the checks can fail

def test_a_stitched_or_paraphrased_quote_is_caught():
    doc = (SEEDS / "003_aee73f9bf4752610.txt").read_text(encoding="utf-8")
    stitched = [Claim("test_acc_final", 99.43, "Training Results (Final Epoch): ... Test Accuracy: 99.43%",
                      selection="final_epoch"),
                Claim("train_loss_final", 0.0124, "Training Results (Final Epoch): Training Loss: 0.0124",
                      selection="final_epoch"),
                Claim("train_loss_final", 0.0124, "Training Loss:  0.0124", selection="final_epoch")]
    assert len(claim_problems(stitched, doc)) == 3
    fixed = [Claim("train_loss_final", 0.0124, "Training Loss: 0.0124", selection="final_epoch")]
    assert claim_problems(fixed, doc) == []


def test_a_log_point_breaking_the_convention_is_caught():
    doc = (SEEDS / "000_ba29e86c1874ea82.txt").read_text(encoding="utf-8")
    good = LogPoint(2, "val_acc", 97.40, "notebook output: `Epoch 2: Val Acc: 97.40%`")
    assert log_problems([good], doc) == []
    bad = [
        LogPoint(2, "val_acc", 97.40, "notebook output: Epoch 2: Val Acc: 97.40%"),            # no backquotes
        LogPoint(2, "val_acc", 97.41, "notebook output: `Epoch 2: Val Acc: 97.40%`"),          # wrong value
        LogPoint(3, "val_acc", 97.40, "notebook output: `Epoch 2: Val Acc: 97.40%`"),          # wrong epoch
        LogPoint(2, "val_acc", 97.40, "notebook output: `Epoch 2: Val Acc: 97.4%`"),           # not verbatim
        LogPoint(39, "val_acc", 98.0, "notebook output: `Val Acc: 98`"),                        # not unique
        LogPoint(2, "val_acc", 97.40, 'after "Epoch 2: Val Accuracy" `Epoch 2: Val Acc: 97.40%`'),  # bad context
    ]
    assert all(log_problems([p], doc) for p in bad)
