"""The recipe contract, used by every layer: what a frozen recipe module declares (hyperparameters with
their domains, claims with their quotes, assumptions, constraints, variants: bench.contract.recipe), how
recipes are found and loaded (registry), the code hash that names what a recipe computes
(fingerprint: stdlib only, the same on every CPython), recipes/FROZEN.json (frozen) and the kinds of
failure a user can fix (errors). It imports nothing else of bench."""
