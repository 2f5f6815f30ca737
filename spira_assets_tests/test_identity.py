"""Who is who: spellings of one id are one pseudonym, ids spelled two ways block their batch
until the site's alias map resolves them, ids outside the site's format are quarantined, and
one participant's rows must agree on label, sex and age (merged people become visible)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from spira_assets.app.runner import materialize_batch, register_batch
from spira_assets.definitions import defs
from spira_assets.ingest.gates import blocked_batches
from spira_assets.ingest.identity import EarlierParticipants, ParticipantRules, parse_aliases
from spira_assets.privacy import Pseudonymizer, separator_free
from spira_assets.resources import IngestPolicy
from spira_assets.storage.lake import Lake
from spira_assets.storage.layout import DataLayout
from spira_assets.storage.tables import QUARANTINE, VALIDATED_METADATA
from spira_assets_tests.conftest import TEST_KEY
from spira_assets_tests.small_batches import GOOD, INGEST, Row, land, latest_metadata
from spira_assets_tests.test_metadata_validation import row, rules, run

IDS_CHECK = "validated_metadata:participant_ids_unambiguous"


def test_spellings_that_nfc_and_case_folding_missed_are_one_pseudonym() -> None:
    p = Pseudonymizer(TEST_KEY)
    spellings = [
        "SP0001",
        "SP\u200b0001",  # zero-width space
        "SP\u00ad0001",  # soft hyphen
        "\ufeffSP0001\u2060",  # BOM, word joiner
        "\uff33\uff30\uff10\uff10\uff10\uff11",  # fullwidth
        "\u00a0sp0001\u00a0",  # no-break spaces around it
    ]
    assert {p.participant(s) for s in spellings} == {p.participant("SP0001")}
    # a no-break space inside is a space: another spelling, equal once separators are gone
    assert p.participant("SP\u00a00001") == p.participant("SP 0001") != p.participant("SP0001")
    separated = ["SP 0001", "SP-0001", "SP_0001", "SP.0001", "SP\u20110001", "SP\u00a00001"]
    assert {separator_free(s) for s in separated} == {"sp0001"}
    assert len({p.id_fingerprint(s) for s in separated}) == 1


def _quarantined(layout: DataLayout, batch: str, rule: str) -> pl.DataFrame:
    return (
        Lake(layout.lake)
        .read_part(QUARANTINE, batch, sub="validated_metadata")
        .filter(pl.col("rule") == rule)
    )


def test_an_id_spelled_two_ways_blocks_the_batch_until_the_alias_map_resolves_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    rows = [Row("SP-0001", 1, utterance="frase"), Row("SP_0001", 1, utterance="aceite"), *GOOD]
    layout = land(root, "b1", rows)
    instance = dg.DagsterInstance.ephemeral()

    blocked = materialize_batch(instance, layout, "b1", INGEST)
    assert blocked.failed_checks == (IDS_CHECK,)
    found = _quarantined(layout, "b1", "ambiguous_participant_id")
    assert found.get_column("row_number").to_list() == [2, 3]
    p = Pseudonymizer(TEST_KEY)
    first, second = p.participant("SP-0001"), p.participant("SP_0001")
    details = "\n".join(found.get_column("detail"))
    # both spellings named by their shape and pseudonym, never by the id
    assert "`AA-####`" in details and "`AA_####`" in details
    assert first in details and second in details and "id_aliases.csv" in details
    assert "SP-0001" not in details and "SP_0001" not in details and "0001" not in details
    # a blocking check downstream steps ask for, whatever starts them
    reasons = blocked_batches(Lake(layout.lake), ["b1"])["b1"]
    assert any("participant_ids_unambiguous failed" in r for r in reasons), reasons
    assert first in " ".join(reasons) and "SP" not in " ".join(reasons).replace("SPIRA", "")
    assert latest_metadata(instance, "validated_metadata")["participant_ids_ambiguous"] == 1

    # the site says which id the other spelling is: one person, the batch open
    (root / "landing" / "id_aliases.csv").write_text("alias,participant_id\nSP_0001,SP-0001\n")
    resolved = materialize_batch(instance, layout, "b1", ("validated_metadata",))
    assert resolved.ok, resolved
    table = Lake(layout.lake).read_part(VALIDATED_METADATA, "b1")
    ours = table.filter(pl.col("row_number").is_in([2, 3]))
    assert ours.get_column("participant").to_list() == [first, first]
    assert blocked_batches(Lake(layout.lake), ["b1"]) == {}


def test_a_later_batch_spelling_an_id_otherwise_is_blocked_naming_the_earlier_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    instance = dg.DagsterInstance.ephemeral()
    layout = land(root, "b1", [Row("SP-0001", 1), *GOOD])
    assert materialize_batch(instance, layout, "b1", INGEST).ok
    stored = Lake(layout.lake).read_part(VALIDATED_METADATA, "b1")
    assert stored.get_column("id_fingerprint").null_count() == 0  # kept beside the pseudonym
    assert "SP-0001" not in stored.write_csv()

    others = [replace(r, pid=r.pid.replace("SP", "SQ")) for r in GOOD]  # other people
    land(root, "b2", [Row("SP0001", 1), *others])
    later = materialize_batch(instance, layout, "b2", INGEST)
    assert later.failed_checks == (IDS_CHECK,)
    (detail,) = _quarantined(layout, "b2", "ambiguous_participant_id").get_column("detail")
    p = Pseudonymizer(TEST_KEY)
    assert f"{p.participant('SP-0001')} in batch b1" in detail
    assert f"`AA####` here ({p.participant('SP0001')})" in detail
    assert "SP0001" not in detail and "SP-0001" not in detail

    (root / "landing" / "id_aliases.csv").write_text("alias,participant_id\nSP0001,SP-0001\n")
    assert materialize_batch(instance, layout, "b2", ("validated_metadata",)).ok
    table = Lake(layout.lake).read_part(VALIDATED_METADATA, "b2")
    assert p.participant("SP-0001") in table.get_column("participant").to_list()


def test_ids_outside_the_sites_format_are_quarantined_with_their_own_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The format is a setting of the pseudonyms resource (None: no format)."""
    root = tmp_path / "data"
    monkeypatch.setenv("SPIRA_DATA_DIR", str(root))
    land(root, "b1", [Row("XY-12", 0, utterance="sustentada"), *GOOD])
    instance = dg.DagsterInstance.ephemeral()
    register_batch(instance, "b1")
    job = defs.resolve_job_def("process_batch")
    selection = dg.AssetSelection.assets(*INGEST).required_multi_asset_neighbors()
    keys = list(selection.resolve(defs.resolve_asset_graph()))

    def materialize(id_format: str | None) -> None:
        config = {"pseudonyms": {"config": {"participant_id_format": id_format}}}
        result = job.execute_in_process(
            instance=instance,
            partition_key="b1",
            asset_selection=keys,
            run_config={"resources": config},
            raise_on_error=False,
        )
        assert result.success

    layout = DataLayout.from_location(root)
    materialize(None)
    assert _quarantined(layout, "b1", "participant_id_format").is_empty()
    materialize(r"SP\d{4}")
    (record,) = _quarantined(layout, "b1", "participant_id_format").iter_rows(named=True)
    assert record["row_number"] == 2 and record["column"] == "participant_id"
    assert "`AA-##`" in record["detail"] and r"SP\d{4}" in record["detail"]
    assert "XY" not in record["detail"]
    accepted = Lake(layout.lake).read_part(VALIDATED_METADATA, "b1").get_column("row_number")
    assert 2 not in accepted.to_list() and accepted.len() == len(GOOD)


def test_an_unreadable_alias_map_is_reported_and_not_used() -> None:
    assert parse_aliases(b"alias,participant_id\nSP_1,SP-1\n").targets == {"sp_1": "SP-1"}
    for bad in (
        b"from,to\nSP_1,SP-1\n",  # not the header
        b"alias,participant_id\nSP_1\n",  # one id on a line
        b"alias,participant_id\nSP_1,SP-1\nsp_1,SP 1\n",  # one alias, two ids
        b"alias,participant_id\nSP_1,SP-1\nSP-1,SP1\n",  # a chain
        "alias,participant_id\nSP_1,SP-1\n".encode("utf-16"),
    ):
        aliases = parse_aliases(bad)
        assert aliases.problem and not aliases.targets, bad
        assert "SP" not in aliases.problem


def test_a_participant_whose_rows_disagree_on_sex_age_or_label_is_quarantined_whole(
    tmp_path: Path,
) -> None:
    lines = [
        row("SP1", 0, sex="F", utt="frase"),
        row("SP1", 0, sex="M", utt="aceite"),  # another sex
        row("SP2", 0, age="30", utt="frase"),
        row("SP2", 0, age="70", utt="aceite"),  # 40 years older the same day
        row("SP3", 0, spo2="97", utt="frase"),
        row("SP3", 1, spo2="85", utt="aceite"),  # patient and control
        row("SP4", 0, age="40", utt="frase"),
        row("SP4", 0, age="42", utt="aceite"),  # within the tolerance: kept
    ]
    result = run(tmp_path, lines)
    assert rules(result) == [
        (2, "sex", "participant_attributes_conflict"),
        (3, "sex", "participant_attributes_conflict"),
        (4, "age", "participant_attributes_conflict"),
        (5, "age", "participant_attributes_conflict"),
        (6, "label", "participant_attributes_conflict"),
        (7, "label", "participant_attributes_conflict"),
    ]
    assert result.table.get_column("row_number").to_list() == [8, 9]
    details = result.quarantine.get_column("detail").to_list()
    assert "sex has 2 different values" in details[0]
    assert "age spans 40 years (30..70; at most 2 allowed" in details[2]
    assert "label has 2 different values" in details[4]
    assert not any("SP" in d for d in details)


def test_the_age_tolerance_is_a_setting(tmp_path: Path) -> None:
    lines = [row("SP4", 0, age="40", utt="frase"), row("SP4", 0, age="42", utt="aceite")]
    for folder in ("default", "strict"):
        (tmp_path / folder).mkdir()
    assert run(tmp_path / "default", lines).rows_accepted == 2
    strict = run(tmp_path / "strict", lines, rules=ParticipantRules(max_age_spread_years=1))
    assert {r for _, _, r in rules(strict)} == {"participant_attributes_conflict"}
    assert IngestPolicy(max_age_spread_years=1).participant_rules() == ParticipantRules(1)


def test_a_participants_sex_must_agree_with_earlier_batches_label_and_age_may_change(
    tmp_path: Path,
) -> None:
    for folder in ("one", "two", "three"):
        (tmp_path / folder).mkdir()
    first = run(tmp_path / "one", [row("SP1", 0, sex="F", age="40")])
    assert first.rows_accepted == 1
    p = Pseudonymizer("k" * 32)
    stored = first.table.with_columns(pl.lit("b0").alias("batch_id"))  # an earlier batch
    earlier = EarlierParticipants.from_table(stored, p.key_id, "b1")
    later = run(
        tmp_path / "two",
        [
            row("SP1", 1, spo2="85", sex="M", age="41", utt="aceite"),
            row("SP2", 0, sex="M", utt="aceite"),
        ],
        earlier=earlier,
    )
    assert rules(later) == [(2, "sex", "participant_attributes_conflict")]
    assert "batch b0" in later.quarantine.get_column("detail")[0]
    again = run(tmp_path / "three", [row("SP1", 1, spo2="85", sex="F", age="45")], earlier=earlier)
    assert again.rows_accepted == 1, rules(again)
