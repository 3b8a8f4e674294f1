"""Judging claims against runs: the statistics and the verdict rule (stats), every claim of a reading on
its scale and rule (verdicts), the early-curve comparison with a document's printed log (early) and the
nightly regression gate (gate). No torch code of its own and nothing that prints: it imports
bench.contract and bench.records, and returns plain data for the report and the command line."""
