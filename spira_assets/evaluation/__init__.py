"""Judging models (no Dagster here): metrics with participant-bootstrap CIs, the assessment of a
model on its own test split, comparisons with past champions, the promotion gate, champions in
the registry, the model card and reports, drift, and reproduction."""
