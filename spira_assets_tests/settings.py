"""Test-sized training and a lenient gate: resource values shared by the tests and by the
``dagster dev`` code location of the end-to-end test (``e2e_definitions``), which imports
them from here, not from ``conftest``: conftest imports pytest, MLflow and the demo generator
(scipy), 1.2 s more for every process that loads that code location (its code server and each
run worker)."""

SMALL_TRAINING = {
    "seeds": [42],
    "max_epochs": 3,
    "warmup_steps": 5,
    "batch_size": 16,
    "dropout": 0.3,
    "split": {"validation": 0.3, "test": 0.4},
}
LENIENT_GATE = {
    "bootstrap_resamples": 100,
    "min_auroc": 0.0,
    "min_sensitivity": 0.0,
    "subgroup_min_auroc": 0.0,
    "max_subgroup_gap": 1.0,
    "non_inferiority_margin": 1.0,
    # the tiny corpora give a handful of people unseen by both models: tests whose subject is
    # not the evidence rule ask for one of each class and a bootstrap defined half the time
    # (the product's defaults, 10 per class and 95 %, are GateConfig's: test_gate.py)
    "min_unseen_per_class": 1,
    "min_defined_draws": 0.5,
}
