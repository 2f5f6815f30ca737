"""The defects a real collection produces, and the quarantine records each one must cause.

The generator injects them; the tests and ``spira demo`` check that every one is caught with
exactly the expected rule and that nothing else in the batch is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

AUDIO_STAGE = "raw_audio"
METADATA_STAGE = "validated_metadata"


@dataclass(frozen=True)
class Expected:
    stage: str
    rule: str
    column: str | None = None


_AUDIO_REJECTED = Expected(METADATA_STAGE, "audio_rejected", "audio_path")

EXPECTED: dict[str, tuple[Expected, ...]] = {
    "truncated": (Expected(AUDIO_STAGE, "truncated"), _AUDIO_REJECTED),
    "zero_byte": (Expected(AUDIO_STAGE, "empty_file"), _AUDIO_REJECTED),
    "not_audio": (Expected(AUDIO_STAGE, "undecodable"), _AUDIO_REJECTED),
    "silent": (Expected(AUDIO_STAGE, "silent"), _AUDIO_REJECTED),
    "clipped": (Expected(AUDIO_STAGE, "clipped"), _AUDIO_REJECTED),
    "too_short": (Expected(AUDIO_STAGE, "too_short"), _AUDIO_REJECTED),
    "eight_channels": (Expected(AUDIO_STAGE, "too_many_channels"), _AUDIO_REJECTED),
    "row_without_audio": (Expected(METADATA_STAGE, "audio_missing", "audio_path"),),
    "audio_without_row": (Expected(METADATA_STAGE, "orphan_audio"),),
    "duplicate_participant": (Expected(METADATA_STAGE, "duplicate_recording", "participant_id"),),
    "spo2_out_of_range": (Expected(METADATA_STAGE, "out_of_range", "spo2"),),
    "age_out_of_range": (Expected(METADATA_STAGE, "out_of_range", "age"),),
    "bad_timestamp": (Expected(METADATA_STAGE, "invalid_timestamp", "collected_at"),),
    # Tolerated by contract: stray whitespace around values, a BOM, CRLF line ends.
    "stray_whitespace_bom": (),
}
DEFECT_KINDS: tuple[str, ...] = tuple(EXPECTED)
