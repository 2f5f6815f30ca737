"""pandera models: what a metadata record must satisfy, and what the stored tables look like."""

from __future__ import annotations

from typing import Annotated

import pandera.polars as pa
import polars as pl
from pandera.api.polars.model_config import BaseConfig

from spira_assets.ingest.provenance import GROUPINGS, PUBLISHED_SPLITS

# Bump when a rule below changes, so Dagster sees validated_metadata as stale.
VALIDATION_VERSION = "4"  # 4: id fingerprints, ambiguous ids, id format, attribute conflicts
SEXES = ("F", "M")
UTTERANCES = ("aceite", "sustentada", "parlenda", "frase")
SPO2_RI_THRESHOLD = 92
DEVICE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"


SPO2_RANGE = (50, 100)
# One definition per contract range, shared by the input and the stored-table models.
AGE_BOUNDS = {"min_value": 18, "max_value": 110}
SPO2_BOUNDS = {"min_value": SPO2_RANGE[0], "max_value": SPO2_RANGE[1]}
RESPIRATORY_RATE_BOUNDS = {"min_value": 5, "max_value": 60}


def _spo2_out_of_range() -> pl.Expr:
    """Out-of-range values are the range check's to report, not the label checks'."""
    return ((pl.col("spo2") < SPO2_RANGE[0]) | (pl.col("spo2") > SPO2_RANGE[1])).fill_null(False)


class MetadataRecord(pa.DataFrameModel):
    """One recording as the collection app describes it (after type parsing)."""

    participant_id: str = pa.Field(nullable=False)
    label: int = pa.Field(isin=[0, 1])
    sex: str = pa.Field(isin=list(SEXES))
    age: int = pa.Field(in_range=AGE_BOUNDS)
    spo2: int = pa.Field(nullable=True, in_range=SPO2_BOUNDS)
    respiratory_rate: int = pa.Field(nullable=True, in_range=RESPIRATORY_RATE_BOUNDS)
    collected_at: Annotated[pl.Datetime, "us", "UTC"]
    device: str = pa.Field(str_matches=DEVICE_PATTERN)
    utterance: str = pa.Field(isin=list(UTTERANCES))
    audio_path: str = pa.Field(nullable=False)

    @pa.dataframe_check(name="patient_spo2_below_92")
    @classmethod
    def patient_has_low_spo2(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A patient (label 1) is defined by SpO2 < 92 %, so the value must be there and low."""
        return data.lazyframe.select(
            (pl.col("label") != 1)
            | _spo2_out_of_range()
            | (pl.col("spo2").is_not_null() & (pl.col("spo2") < SPO2_RI_THRESHOLD))
        )

    @pa.dataframe_check(name="control_spo2_not_below_92")
    @classmethod
    def control_has_normal_spo2(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A control with SpO2 < 92 % has respiratory insufficiency: mislabelled."""
        return data.lazyframe.select(
            (pl.col("label") != 0)
            | pl.col("spo2").is_null()
            | _spo2_out_of_range()
            | (pl.col("spo2") >= SPO2_RI_THRESHOLD)
        )

    class Config(BaseConfig):
        strict = False
        coerce = False


class ValidatedMetadataTable(pa.DataFrameModel):
    """The stored ``validated_metadata`` table: pseudonymized, one row per accepted recording."""

    batch_id: str
    row_number: int = pa.Field(ge=2)
    participant: str = pa.Field(str_matches=r"^P-[0-9a-f]{16}$")
    id_fingerprint: str = pa.Field(str_matches=r"^[0-9a-f]{16}$")  # the id without separators
    label: int = pa.Field(isin=[0, 1])
    sex: str = pa.Field(isin=list(SEXES))
    age: int = pa.Field(in_range=AGE_BOUNDS)
    spo2: int = pa.Field(nullable=True, in_range=SPO2_BOUNDS)
    respiratory_rate: int = pa.Field(nullable=True, in_range=RESPIRATORY_RATE_BOUNDS)
    collected_at: Annotated[pl.Datetime, "us", "UTC"]
    device: str = pa.Field(str_matches=DEVICE_PATTERN)
    utterance: str = pa.Field(isin=list(UTTERANCES))
    audio_sha256: str = pa.Field(str_matches=r"^[0-9a-f]{64}$", unique=True)
    raw_uri: str
    container: str
    codec: str
    sample_rate: int = pa.Field(in_range={"min_value": 8000, "max_value": 96000})
    channels: int = pa.Field(in_range={"min_value": 1, "max_value": 2})
    duration_s: float = pa.Field(gt=0)
    pseudonym_key_id: str = pa.Field(str_matches=r"^[0-9a-f]{12}$")
    speaker_grouping: str = pa.Field(isin=list(GROUPINGS))
    published_split: str = pa.Field(nullable=True, isin=list(PUBLISHED_SPLITS))
    utterance_assumed: bool  # the import supplied it (--utterance): the list named none

    @pa.dataframe_check(name="one_recording_per_participant_and_utterance")
    @classmethod
    def one_per_utterance(cls, data: pa.PolarsData) -> pl.LazyFrame:
        """A participant's utterance is recorded once a batch, where the utterance is known;
        recordings whose utterance an import assumed are several takes of unknown content."""
        key = pl.concat_str("batch_id", "participant", "utterance", separator="\x1f")
        observed = pl.when(~pl.col("utterance_assumed")).then(key).otherwise(None)
        return data.lazyframe.select(pl.col("utterance_assumed") | ~observed.is_duplicated())

    class Config(BaseConfig):
        strict = True


class RawAudioTable(pa.DataFrameModel):
    """The stored ``raw_audio`` table: one row per file of the batch, accepted or not."""

    batch_id: str
    source_path: str
    path_key: str = pa.Field(unique=True)
    accepted: bool
    rejection_rule: str = pa.Field(nullable=True)
    audio_sha256: str = pa.Field(nullable=True, str_matches=r"^[0-9a-f]{64}$")
    pcm_sha256: str = pa.Field(nullable=True, str_matches=r"^[0-9a-f]{64}$")
    size_bytes: int = pa.Field(ge=0)
    container: str = pa.Field(nullable=True)
    codec: str = pa.Field(nullable=True)
    sample_rate: int = pa.Field(nullable=True)
    channels: int = pa.Field(nullable=True)
    frames: int = pa.Field(nullable=True)
    duration_s: float = pa.Field(nullable=True)
    peak_dbfs: float = pa.Field(nullable=True)
    rms_dbfs: float = pa.Field(nullable=True)
    clipping_ratio: float = pa.Field(nullable=True)
    silence_ratio: float = pa.Field(nullable=True)
    raw_uri: str = pa.Field(nullable=True)
    ingested_at: Annotated[pl.Datetime, "us", "UTC"]

    @pa.dataframe_check(name="accepted_files_have_raw_copy")
    @classmethod
    def accepted_have_uri(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(
            ~pl.col("accepted")
            | (pl.col("raw_uri").is_not_null() & pl.col("rejection_rule").is_null())
        )

    class Config(BaseConfig):
        strict = True
