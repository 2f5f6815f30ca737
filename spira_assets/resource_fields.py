"""The field types Dagster resources carry core settings with: an enum of exactly the values of
each core ``Literal`` (Dagster's config has no ``Literal``; type checkers see the ``Literal``
itself), and the conversion back to a core dataclass that names every one of its fields."""

from __future__ import annotations

from dataclasses import fields
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any, get_args

from spira_assets.features.augment_config import NoiseScale
from spira_assets.features.config import FeatureKind, TransformUnit
from spira_assets.features.windows import WindowRule
from spira_assets.ml.calibration import CalibrationMethod, ThresholdRule
from spira_assets.ml.protocol import PROFILES
from spira_assets.ml.train_config import InputScaling, Norm


def choices(name: str, literal: Any) -> type[StrEnum]:
    """An enum of exactly the values of a core ``Literal`` (its one source)."""
    return StrEnum(name, {value: value for value in get_args(literal)})  # type: ignore[return-value]


def plain(value: Any) -> Any:
    """A config value as the core takes it (an enum member becomes its string)."""
    return value.value if isinstance(value, Enum) else value


def core_values(resource: Any, core: type) -> dict[str, Any]:
    """Every field of the core dataclass ``core``, read from the resource by the same name
    (an AttributeError, never a silent default, if the resource lacks one)."""
    return {f.name: plain(getattr(resource, f.name)) for f in fields(core)}


if TYPE_CHECKING:  # type checkers see the core's Literals; Dagster, an enum of their values
    FeatureKindChoice = FeatureKind
    NormChoice = Norm
    WindowRuleChoice = WindowRule
    TransformUnitChoice = TransformUnit
    ThresholdRuleChoice = ThresholdRule
    InputScalingChoice = InputScaling
    CalibrationChoice = CalibrationMethod
    NoiseScaleChoice = NoiseScale
    ProfileChoice = str
else:
    FeatureKindChoice = choices("FeatureKind", FeatureKind)
    NormChoice = choices("Norm", Norm)
    WindowRuleChoice = choices("WindowRule", WindowRule)
    TransformUnitChoice = choices("TransformUnit", TransformUnit)
    ThresholdRuleChoice = choices("ThresholdRule", ThresholdRule)
    InputScalingChoice = choices("InputScaling", InputScaling)
    CalibrationChoice = choices("CalibrationMethod", CalibrationMethod)
    NoiseScaleChoice = choices("NoiseScale", NoiseScale)
    ProfileChoice = StrEnum("Profile", {name: name for name in PROFILES})
