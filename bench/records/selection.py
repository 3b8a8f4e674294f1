"""The selection rules: which epoch's numbers a document's protocol keeps, and every metric a claim may
refer to, computed from a run's curves. One function, used by the engine when it writes a record and by
the evidence reader when it checks one (a record's metrics must be what its own curves give)."""
from __future__ import annotations

import math

import numpy as np


def _pick(values, best) -> int:
    """Index of the first best value: 'strictly greater' keeps the earliest epoch on ties."""
    arr = np.array([np.nan if v is None else v for v in values], dtype=float)
    if np.all(np.isnan(arr)):
        return len(arr) - 1
    return int(np.nanargmax(arr) if best == "max" else np.nanargmin(arr))


def select_epoch(curves: dict, selection: str) -> int:
    """Index into the curves of the model the protocol keeps."""
    if selection == "final_epoch":
        return len(curves["epoch"]) - 1
    if selection == "best_test_epoch":
        return _pick(curves["test_acc"], "max")
    if selection == "best_val_acc":
        return _pick(curves["val_acc"], "max")
    if selection == "best_val_loss":
        return _pick(curves["val_loss"], "min")
    raise ValueError(f"unknown selection rule {selection!r}")


def honest_selection(selection: str, has_val: bool) -> str:
    """The same protocol without looking at test: validation if there is one, else the last epoch."""
    if selection != "best_test_epoch":
        return selection
    return "best_val_acc" if has_val else "final_epoch"


def summarize(curves: dict, selection: str) -> dict:
    """Every metric a claim may refer to, from the curves and the document's selection rule."""
    has_val = "val_acc" in curves
    last = len(curves["epoch"]) - 1
    sel = select_epoch(curves, selection)
    honest = select_epoch(curves, honest_selection(selection, has_val))
    best_test = select_epoch(curves, "best_test_epoch")
    m = {
        "test_acc_selected": curves["test_acc"][sel],
        "test_loss_selected": curves["test_loss"][sel],
        "selected_epoch": curves["epoch"][sel],
        "test_acc_honest": curves["test_acc"][honest],
        "honest_epoch": curves["epoch"][honest],
        "test_acc_final": curves["test_acc"][last],
        "test_loss_final": curves["test_loss"][last],
        "test_acc_best": curves["test_acc"][best_test],
        "best_test_epoch": curves["epoch"][best_test],
        "train_loss_final": curves["train_loss"][last],
        "train_acc_final": curves["train_acc"][last],
    }
    if has_val:
        bv = select_epoch(curves, "best_val_acc")
        m.update(val_acc_best=curves["val_acc"][bv], best_val_epoch=curves["epoch"][bv],
                 val_acc_final=curves["val_acc"][last], val_loss_final=curves["val_loss"][last],
                 val_loss_best=curves["val_loss"][select_epoch(curves, "best_val_loss")],
                 train_loss_selected=curves["train_loss"][sel])
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}
