"""The two kinds of failure a user can fix, shared by every layer so the door can tell them apart.

BadInput: the command line, a recipe, a dataset or a results folder is not as the command needs it
(exit 2, one line naming the fix, nothing on disk changed). EnvironmentProblem: the machine refused
(a full disk, a read-only folder; exit 1, nothing recorded is lost). Anything else is a bug (exit 3).
Terminated and Interrupted carry SIGTERM and Ctrl-C from the door to every layer that must stop cleanly.
"""
from __future__ import annotations


class BadInput(Exception):
    """Exit 2: bad input, said in one line that names the fix."""


class EnvironmentProblem(Exception):
    """Exit 1: the machine refused (disk full, permission denied); what was recorded is kept."""


class UsageError(BadInput):
    """Bad input that argparse cannot see (device, values that depend on the recipe)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by bench.cli.main's handler so a run stops as on Ctrl-C."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; the message says what was saved; code is the exit status."""

    def __init__(self, message: str, code: int = 130):
        super().__init__(message)
        self.code = code
