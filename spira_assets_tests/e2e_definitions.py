"""The product's definitions with test-sized training and a lenient gate, for the end-to-end
test that runs them under `dagster dev` (sensors, daemon, run queue all real). Only the
``training`` and ``evaluation`` resource values differ from ``spira_assets.definitions``."""

import dagster as dg

from spira_assets import definitions as product_module
from spira_assets.resources import EvaluationSettings, TrainingSettings
from spira_assets_tests.settings import LENIENT_GATE, SMALL_TRAINING

# (dagster refuses a module with two Definitions at module scope: read the product's in place)
defs = dg.Definitions(
    assets=product_module.defs.assets,
    jobs=product_module.defs.jobs,
    sensors=product_module.defs.sensors,
    schedules=product_module.defs.schedules,
    resources={
        **product_module.RESOURCES,
        "training": TrainingSettings(**SMALL_TRAINING),  # type: ignore[arg-type]
        "evaluation": EvaluationSettings(**LENIENT_GATE),  # type: ignore[arg-type]
    },
)
