import os
import sys

# On a busy machine OpenMP's spinning threads fight the other processes for the cores (a 2-thread step
# ran 3-4x slower on 2 cores with one kept busy; with OMP_WAIT_POLICY=PASSIVE 1.8x, the same bits). The
# policy must be set before torch loads OpenMP, so here, before anything imports torch; it is recorded
# in every run's environment. Idle, spinning is 12% faster, so the user's choice or an idle machine stand.
if "OMP_WAIT_POLICY" not in os.environ and hasattr(os, "getloadavg"):
    if os.getloadavg()[0] >= 0.5 * (os.cpu_count() or 1):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from bench.cli.main import main  # noqa: E402  (after the policy: this import loads torch)

sys.exit(main())
