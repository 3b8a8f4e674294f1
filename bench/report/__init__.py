"""Presentation: REPORT.md (markdown), its figures (figures), how numbers are printed (fmt), the agreement
block `bench run` ends with (agreement) and the gate's console table (gate). It imports bench.judging,
bench.records and bench.contract; nothing here trains or judges."""
