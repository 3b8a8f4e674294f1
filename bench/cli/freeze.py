"""`bench freeze`: pin every reading's fingerprint and numerics in recipes/FROZEN.json."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from bench.contract import frozen, registry
from bench.contract.errors import BadInput
from bench.training import numerics


@dataclass(frozen=True)
class FreezeOptions:
    accept_moved: bool = False


def options(args) -> FreezeOptions:
    return FreezeOptions(accept_moved=args.accept_moved)


def main(opts: FreezeOptions) -> int:
    registry.all_readings()
    if registry.broken():                      # freezing without them would drop their pins
        name, why = sorted(registry.broken().items())[0]
        raise BadInput(f"{why}; `bench freeze` pins every reading, so fix {name} first")
    try:
        changes = numerics.freeze(log=print, accept_moved=opts.accept_moved)
    except numerics.FreezeRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, (old, new) in sorted(changes.items()):
        print(f"{name}: {old} -> {new}")
    print(f"{frozen.FROZEN_PATH} holds {len(frozen.frozen())} reading fingerprint(s)")
    return 0
