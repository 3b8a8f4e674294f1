"""`bench data fetch | verify`: find or fetch a dataset, or check every dataset file present."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from bench.cli.args import check_folder_arg
from bench.training import data as data_layer


@dataclass(frozen=True)
class DataOptions:
    action: str                       # fetch | verify
    data_dir: Path
    dataset: Optional[str] = None     # fetch: mnist | mnist_csv | cifar10


def options(args) -> DataOptions:
    data_dir = data_layer.default_data_dir(args.data_dir)
    check_folder_arg("--data-dir", data_dir)
    return DataOptions(args.action, data_dir, getattr(args, "dataset", None))


def main(opts: DataOptions) -> int:
    if opts.action == "fetch":
        data_layer.load(opts.dataset, opts.data_dir)
        print(f"{opts.dataset}: verified in {opts.data_dir}")
        return 0
    bad = 0
    for dataset, status in data_layer.verify_all(opts.data_dir).items():
        for name, why in status.items():
            print(f"{dataset:9} {name:26} {why or 'ok'}")
            bad += bool(why and why != "missing")
    if bad:
        print(f"error: {bad} file(s) fail their checks; delete them and run `python -m bench data fetch`",
              file=sys.stderr)
    return 2 if bad else 0
