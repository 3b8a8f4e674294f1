"""recipes/FROZEN.json: each reading's pinned fingerprint, code hash, numerics revision and numerics pins.

Stdlib only, so that a reader of records (or of an older commit's FROZEN.json) needs no torch.
Writing a new one is `bench freeze` (bench.training.numerics.freeze).
"""
from __future__ import annotations

import json

from bench.contract.fingerprint import RECIPES_DIR

FROZEN_PATH = RECIPES_DIR / "FROZEN.json"
FROZEN_FORMAT = 3
READABLE_FROZEN = (2, 3)   # 2: one pin per reading, named by its CPU kernels only


def entries_of(data: dict) -> dict[str, dict]:
    """label -> {"fingerprint", "code", "revision", "pins"} from a FROZEN.json of any format this bench
    has written (format 2 held one pin, "numerics", named by its CPU kernels only)."""
    if not isinstance(data, dict) or data.get("format") not in READABLE_FROZEN or not isinstance(
            data.get("recipes"), dict):
        return {}
    out = {}
    for label, entry in data["recipes"].items():
        entry = dict(entry)
        if "pins" not in entry:
            old = entry.pop("numerics", None)
            entry["pins"] = [] if old is None else [
                {"machine": {"capability": old.get("capability")},
                 **{k: v for k, v in old.items() if k != "capability"}}]
        out[label] = entry
    return out


def frozen_all() -> dict[str, dict]:
    """label -> {"fingerprint", "code", "revision", "pins"} as pinned in FROZEN.json."""
    if not FROZEN_PATH.exists():
        return {}
    return entries_of(json.loads(FROZEN_PATH.read_text()))


def frozen_entry(label: str) -> dict:
    return frozen_all().get(label, {})


def frozen() -> dict[str, str]:
    """label -> pinned fingerprint."""
    return {k: v["fingerprint"] for k, v in frozen_all().items()}


def write_frozen(entries: dict[str, dict]) -> None:
    FROZEN_PATH.write_text(json.dumps({"format": FROZEN_FORMAT, "recipes": entries}, indent=1, sort_keys=True)
                           + "\n")
