"""The report's figures: per-seed values against the claim, and learning curves over seeds.

Drawn on bare Figure objects with the Agg canvas (no pyplot state), matplotlib's default
style whatever the user's matplotlibrc says, a fixed size and dpi, and saved without the
Software stamp: the same runs always give the same PNG bytes.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.style
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
MARKERS = "os^Dv<>"


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def seeds_figure(path: Path, title: str, series: dict[str, list[tuple[int, float]]], claim: float,
                 label: str) -> Path:
    """One point per seed for each group (label -> [(seed, value)]), the claim as a line."""
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for i, (name, points) in enumerate(series.items()):
            seeds, values = zip(*points) if points else ((), ())
            ax.plot(seeds, values, MARKERS[i % len(MARKERS)], label=name, alpha=0.8)
        ax.axhline(claim, color="crimson", linestyle="--", label=f"claim {claim:g}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("seed")
        ax.set_ylabel(label)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return _save(fig, path)


def _band(curves: list[dict], key: str) -> tuple[np.ndarray, ...] | None:
    """Epochs, mean, min and max of one curve over runs, aligned on the epoch numbers."""
    runs = [c for c in curves if key in c]
    if not runs:
        return None
    epochs = np.array(sorted({e for c in runs for e in c["epoch"]}), dtype=float)
    column = {e: i for i, e in enumerate(epochs)}
    grid = np.full((len(runs), len(epochs)), np.nan)
    for row, c in enumerate(runs):
        for e, v in zip(c["epoch"], c[key]):
            grid[row, column[e]] = np.nan if v is None else v
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # an epoch every run diverged at
        return epochs, np.nanmean(grid, 0), np.nanmin(grid, 0), np.nanmax(grid, 0)


def curves_figure(path: Path, title: str, curves: list[dict], log_points=()) -> Path:
    """Accuracy (test, and validation when recorded) and training loss against epoch:
    the mean over seeds as a line, the min-max over seeds as a band, and the document's own
    printed log (bench.contract.recipe.LogPoint) as points over it."""
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(9.6, 3.6))
        acc, loss = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for ax, keys in ((acc, ("test_acc", "val_acc")), (loss, ("train_loss",))):
            for key in keys:
                band = _band(curves, key)
                if band is None:
                    continue
                epochs, mid, lo, hi = band
                line, = ax.plot(epochs, mid, label=f"{key} (mean)")
                ax.fill_between(epochs, lo, hi, color=line.get_color(), alpha=0.2, label=f"{key} (min-max)")
        for metric in sorted({p.metric for p in log_points}):
            points = [(p.epoch, p.value) for p in log_points if p.metric == metric]
            ax = loss if "loss" in metric else acc
            ax.plot(*zip(*points), "k.", markersize=4, label=f"{metric} (the document)")
        for ax in (acc, loss):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            if ax.has_data():
                ax.legend(fontsize=8)
        acc.set_ylabel("accuracy (%)")
        loss.set_ylabel("training loss")
        positive = [v for c in curves for v in c.get("train_loss", []) if v is not None]
        if positive and min(positive) > 0:
            loss.set_yscale("log")
        fig.suptitle(f"{title} ({len(curves)} seed(s))", fontsize=10)
        fig.tight_layout()
        return _save(fig, path)
