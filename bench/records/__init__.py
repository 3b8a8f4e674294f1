"""Run records, the evidence: the one record format with its digest and validation (format), the selection
rules that turn curves into metrics (selection: used by the engine when it writes and by the reader when
it checks), atomic writes and run locks (store), the one reader of a results folder (evidence), which
runs count together (groups) and the export frames (export). No torch and no training code: a checker
reads results anywhere. It imports only bench.contract's stdlib modules."""
