"""Watching the champion at work (no Dagster): the prediction log every scorer appends to,
clinical outcomes that arrive later, live performance and input drift of the served model,
and the audit bundle of a model version."""
