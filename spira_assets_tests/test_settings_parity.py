"""One source for every setting: each Dagster resource that carries a core configuration has
every field of it, by the core's name, with the core's type (a ``Literal`` as an enum of exactly
its values) and the core's default (``None`` where the resource overrides a profile); a field
the resource adds must be declared as its own. A planted resource with a renamed field, a free
string for a choice and a drifted default is named by the same check."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from enum import Enum
from typing import Any, Literal, get_args, get_origin

import dagster as dg
import pytest
from pydantic import Field

from spira_assets.audio.quality import AudioQualityRules
from spira_assets.evaluation.config import EvaluationConfig
from spira_assets.evaluation.drift import DriftThresholds
from spira_assets.evaluation.gate import GateConfig
from spira_assets.features.augment_config import AugmentConfig
from spira_assets.features.config import FeatureConfig
from spira_assets.ingest.identity import ParticipantRules
from spira_assets.ingest.listing import ListingLimits
from spira_assets.ml.protocol import PLATFORM, PROFILES, SPIRA_ACL2021
from spira_assets.ml.split import SplitConfig
from spira_assets.ml.train_config import TrainConfig
from spira_assets.resources import (
    DriftSettings,
    EvaluationSettings,
    FeatureSettings,
    IngestPolicy,
    SplitSettings,
    TrainingSettings,
)

# resource -> (the core configs it carries, the fields that are the resource's own, whether its
# core fields override a profile: default None, the profile's value)
PARITY: dict[type, tuple[tuple[Any, ...], frozenset[str], bool]] = {
    IngestPolicy: (
        (AudioQualityRules(), ListingLimits(), ParticipantRules()),
        frozenset({"max_quarantine_share", "decode_workers"}),
        False,
    ),
    FeatureSettings: ((FeatureConfig(),), frozenset({"batch_seconds"}), False),
    SplitSettings: ((SplitConfig(),), frozenset(), False),
    EvaluationSettings: ((GateConfig(), EvaluationConfig()), frozenset(), False),
    DriftSettings: ((DriftThresholds(),), frozenset(), False),
    TrainingSettings: (
        (PROFILES[PLATFORM], AugmentConfig()),
        frozenset({"profile", "seeds", "split"}),
        True,
    ),
}
NOT_CARRIED = {TrainConfig: {"profile", "augment"}}  # the profile's name; augment is flat


def _members(annotation: Any) -> tuple[set[Any], bool]:
    """(the non-None members of a union, or the type itself; whether None is allowed)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = set(get_args(annotation))
        return args - {type(None)}, type(None) in args
    return {annotation}, annotation is type(None)


def _same_type(core: Any, resource: Any) -> bool:
    if get_origin(core) is Literal:
        return (
            isinstance(resource, type)
            and issubclass(resource, Enum)
            and {m.value for m in resource} == set(get_args(core))
        )
    return bool(core == resource)


def parity_problems(
    resource: type, cores: tuple[Any, ...], own: frozenset[str], overrides: bool
) -> list[str]:
    """Every way ``resource`` differs from the core configs it carries."""
    problems = []
    declared = dict(resource.model_fields)  # type: ignore[attr-defined]
    carried: set[str] = set()
    for instance in cores:
        core = type(instance)
        hints = typing.get_type_hints(core)
        for f in fields(core):
            if f.name in NOT_CARRIED.get(core, set()):
                continue
            carried.add(f.name)
            where = f"{resource.__name__}.{f.name}"
            if f.name not in declared:
                problems.append(f"{where}: missing ({core.__name__}.{f.name} has no field)")
                continue
            field = declared[f.name]
            (core_type, *_), core_none = _members(hints[f.name])
            found, resource_none = _members(field.annotation)
            if len(found) != 1 or not _same_type(core_type, next(iter(found))):
                problems.append(f"{where}: type {field.annotation} is not {hints[f.name]}")
            if resource_none != (core_none or overrides):
                problems.append(f"{where}: None allowed is {resource_none}, not {core_none}")
            expected = None if overrides else getattr(instance, f.name)
            default = field.get_default(call_default_factory=True)
            if (default.value if isinstance(default, Enum) else default) != expected:
                name = core.__name__
                problems.append(f"{where}: default {default!r} is not {name}'s {expected!r}")
    for name in sorted(set(declared) - carried - own):
        problems.append(f"{resource.__name__}.{name}: in no core config and not declared its own")
    return problems


@pytest.mark.parametrize("resource", list(PARITY), ids=lambda r: r.__name__)
def test_each_resource_carries_its_core_config_field_by_field(resource: type) -> None:
    assert parity_problems(resource, *PARITY[resource]) == []


def test_the_resources_give_the_core_defaults_and_forward_every_field() -> None:
    assert IngestPolicy().audio_rules() == AudioQualityRules()
    assert IngestPolicy().listing_limits() == ListingLimits()
    assert IngestPolicy().participant_rules() == ParticipantRules()
    assert FeatureSettings().config() == FeatureConfig()
    assert EvaluationSettings().gate() == GateConfig()
    assert EvaluationSettings().config() == EvaluationConfig()
    assert DriftSettings().thresholds() == DriftThresholds()
    assert TrainingSettings().split_config() == SplitConfig()
    for name, profile in PROFILES.items():
        assert TrainingSettings(profile=name).train_config() == profile  # type: ignore[arg-type]
    # every override reaches its core field (a field forwarded under another name would not)
    base = PROFILES[SPIRA_ACL2021]
    for core, target in ((base, "train"), (base.augment, "augment")):
        for f in fields(core):
            if f.name in NOT_CARRIED.get(type(core), set()):
                continue
            value = getattr(core, f.name)
            changed = _another(value, TrainingSettings.model_fields[f.name].annotation)
            made = TrainingSettings(profile=SPIRA_ACL2021, **{f.name: changed}).train_config()
            got = getattr(made if target == "train" else made.augment, f.name)
            assert got == changed and got != value, f.name


def _another(value: Any, annotation: Any) -> Any:
    """A valid value of the field other than ``value``."""
    (kind,), _ = _members(annotation)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return next(m.value for m in kind if m.value != value)
    if isinstance(value, bool):
        return not value
    return value + 1 if isinstance(value, int) else value * 0.5 + 0.125


def test_a_choice_outside_the_core_literal_is_refused() -> None:
    with pytest.raises(ValueError, match="norm"):
        TrainingSettings(norm="layer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        FeatureSettings(kind="cqt")  # type: ignore[arg-type]


class MismatchedFeatures(dg.ConfigurableResource):
    """Planted: a renamed field, a free string for a Literal, a drifted default, an extra."""

    kind: str = "mfcc"
    sample_rate: int = 16_000
    n_coefficients: int = 40  # FeatureConfig.n_mfcc renamed
    n_mels: int = 40
    n_fft: int = 1024  # FeatureConfig's default is 1200
    win_length: int = 400
    hop_length: int = 160
    f_min: float = 0.0
    f_max: float | None = None
    log_mels: bool = False
    normalized: bool = False
    batch_seconds: float = Field(default=0.0)


def test_the_parity_check_names_a_planted_mismatch() -> None:
    problems = parity_problems(MismatchedFeatures, (FeatureConfig(),), frozenset(), False)
    text = "\n".join(problems)
    assert "MismatchedFeatures.n_mfcc: missing" in text
    assert "MismatchedFeatures.kind: type <class 'str'>" in text
    assert "MismatchedFeatures.n_fft: default 1024 is not FeatureConfig's 1200" in text
    assert "MismatchedFeatures.n_coefficients: in no core config" in text
    assert "MismatchedFeatures.batch_seconds: in no core config" in text
    assert len(problems) == 5, problems
