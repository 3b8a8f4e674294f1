"""How numbers are printed in REPORT.md and on the console: one place, so every table agrees."""
from __future__ import annotations

from tabulate import tabulate

from bench.records.format import finite


def num(v, unit: str = "") -> str:
    if not finite(v):
        return "—"
    if unit == "%":
        return f"{v:.2f}"
    return f"{int(v):,}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:.4g}"


def spread(v, unit: str = "") -> str:
    return "—" if not finite(v) else f"{v:.3f}" if unit == "%" else f"{v:.3g}"


def suffix(unit: str) -> str:
    return unit if unit in ("%", "") else f" {unit}"


def interval(pair, unit: str = "") -> str:
    return "—" if not all(map(finite, pair)) else f"[{num(pair[0], unit)}, {num(pair[1], unit)}]"


def chance(p) -> str:
    """A probability as a percentage that never rounds a small chance to 0 or a large one to 100."""
    if not finite(p):
        return "—"
    if p == 0:
        return "0%"
    if p < 0.001:
        return f"{p:.1e}"
    return ">99.9%" if 0.999 < p < 1 else f"{p:.1%}"


def mean_sd(mean, sd, n: int, unit: str) -> str:
    return "—" if not n else num(mean, unit) if n == 1 or not finite(sd) else f"{num(mean, unit)} ± {spread(sd, unit)}"


def pvalue(p) -> str:
    return f"{p:.3g}" if finite(p) else "—"


def table(rows, headers) -> str:
    clean = [[str(c).replace("|", "\\|").replace("\n", " ") for c in row] for row in rows]
    return tabulate(clean, headers=headers, tablefmt="github", disable_numparse=True)
