"""Seeds times readings: the options a `bench run` hands down (options), one seed trained and recorded,
skipped when done on this machine, resumed from its checkpoint (runner), K seeds at once as child
processes (jobs), Ray's driver and worker (ray_backend, ray_worker), the time estimate (estimate),
budgets and the command that continues them (budget), and `bench speed`'s measurements (speed). It
imports bench.contract, bench.records and bench.training, never the judging or the report."""
