"""`bench list`: every recipe and variant with its dataset, parameter count and headline claim."""
from __future__ import annotations

import json
from dataclasses import dataclass

from bench.cli.args import warn_broken
from bench.contract import registry
from bench.report.fmt import table


@dataclass(frozen=True)
class ListOptions:
    json: bool = False


def options(args) -> ListOptions:
    return ListOptions(json=args.json)


def main(opts: ListOptions) -> int:
    rows = []
    readings = registry.all_readings()
    warn_broken(registry.broken())
    for r in readings:
        h = r.headline
        rows.append({"recipe": r.name, "variant": r.variant_name, "reading": r.label, "dataset": r.hparams.dataset,
                     "params": r.params, "declared_params": r.declared_params, "epochs": r.hparams.epochs,
                     "headline": {"metric": h.metric, "value": h.value, "quote": h.quote, "flags": h.flags},
                     "fingerprint": r.fingerprint, "source": r.source,
                     "variants": [v.name for v in r.variants] if r.variant is None else []})
    if opts.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(table([[r["reading"], r["dataset"], f"{r['params']:,}", r["epochs"],
                  f"{r['headline']['metric']} {r['headline']['value']}", "; ".join(r["headline"]["flags"])]
                 for r in rows], ["reading", "dataset", "params", "epochs", "headline claim", "flags"]))
    print("\nrun a variant with `--variant NAME` (the part after the colon)")
    return 0
