"""Local demo corpus: SPIRA-like batches synthesized with numpy/scipy, no network, no weights."""
