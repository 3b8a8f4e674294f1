"""Training one seed: datasets found, fetched and verified (data), the document's splits (splits), batched
augmentation and the documents' torchvision pipeline (augment), the one training loop (engine), its step,
eager or a CUDA graph (step), deterministic layers (layers), seeds, flags and precision (determinism),
the environment a record stores (environment), the harness hash, and the numerics probe behind
recipes/FROZEN.json with `bench freeze` (numerics). It imports bench.contract and bench.records."""
