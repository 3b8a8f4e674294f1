"""`python -m bench COMMAND`: parse, check at the door, run the command, map what went wrong to an exit code.

Exit codes: 0 done; 1 a check failed (regression, broken night, nondeterminism, a failed child
run, --strict with rejected records) or the machine refused (disk full, permission denied); 2 bad
input (one line on stderr, nothing on disk changed); 3 an internal error (a bug in bench: never
mistaken for "worse"); 130 Ctrl-C; 143 SIGTERM.
"""
from __future__ import annotations

import importlib
import signal
import sys
import threading
import traceback

from bench.cli.parser import build_parser
from bench.contract.errors import BadInput, EnvironmentProblem, Interrupted, Terminated


def _terminate(signum, frame):
    raise Terminated()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        # each command's module is imported only when it runs: `bench list` never loads the trainer
        command = importlib.import_module(f"bench.cli.{args.command_module}")
        return command.main(command.options(args))
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except EnvironmentProblem as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return exc.code
    except Terminated:
        print("\nterminated before any run started: nothing was saved", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("\ninterrupted before any run started: nothing was saved", file=sys.stderr)
        return 130
    except Exception:                                   # a bug in bench, never a "regression" (exit 1)
        traceback.print_exc()
        print("internal error: this is a bug in bench (exit 3); the traceback above says where", file=sys.stderr)
        return 3
