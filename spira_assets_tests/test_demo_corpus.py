"""The demo corpus: deterministic, realistic formats, a class signal that scales to nothing."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spira_assets.demo.corpus import DemoSpec, generate_corpus
from spira_assets.demo.voice import RATE, breathing_for, random_speaker, synthesize


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "_READY"
    }


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path: Path) -> None:
    spec = {"batches": 1, "participants": 2, "noise_files": 1}
    generate_corpus(DemoSpec(tmp_path / "a", seed=3, **spec), workers=1)  # type: ignore[arg-type]
    generate_corpus(DemoSpec(tmp_path / "b", seed=3, **spec), workers=1)  # type: ignore[arg-type]
    generate_corpus(DemoSpec(tmp_path / "c", seed=4, **spec), workers=1)  # type: ignore[arg-type]
    assert digest_tree(tmp_path / "a") == digest_tree(tmp_path / "b")
    assert digest_tree(tmp_path / "a") != digest_tree(tmp_path / "c")


def test_corpus_has_spira_shape_formats_and_identifiers(clean_corpus: Path) -> None:
    batches = sorted(p.name for p in clean_corpus.iterdir() if p.name.startswith("demo"))
    assert batches == ["demo-001", "demo-002"]
    assert list((clean_corpus / "noise").iterdir())
    rows = []
    for batch in batches:
        assert (clean_corpus / batch / "_READY").exists()
        with (clean_corpus / batch / "metadata.csv").open(encoding="utf-8-sig") as handle:
            rows += list(csv.DictReader(handle))
    assert {r["utterance"] for r in rows} == {"aceite", "sustentada", "parlenda", "frase"}
    assert {r["label"] for r in rows} == {"0", "1"}
    assert all(r["participant_id"] and r["phone"] for r in rows)
    assert all(r["hospital_record"] for r in rows if r["label"] == "1")
    assert all(int(r["spo2"]) < 92 for r in rows if r["label"] == "1")
    rates = set()
    for r in rows:
        info = sf.info(
            str(
                clean_corpus
                / next(b for b in batches if (clean_corpus / b / r["audio_path"]).exists())
                / r["audio_path"]
            )
        )
        rates.add((info.format, info.samplerate))
    assert len(rates) >= 2  # several containers and rates, as phones deliver


def parlenda_seconds(label: int, effect: float, seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(30):
        speaker = random_speaker(str(rng.choice(["F", "M"])), rng)
        out.append(
            len(synthesize("parlenda", speaker, breathing_for(label, effect, rng), rng)) / RATE
        )
    return out


def auc(negatives: list[float], positives: list[float]) -> float:
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_patients_speak_with_longer_pauses_when_effect_is_present() -> None:
    assert auc(parlenda_seconds(0, 1.0, 1), parlenda_seconds(1, 1.0, 2)) > 0.85


def test_effect_size_zero_removes_every_class_difference() -> None:
    rng_a, rng_b = np.random.default_rng(9), np.random.default_rng(9)
    assert breathing_for(1, 0.0, rng_a) == breathing_for(0, 0.0, rng_b)
    assert 0.3 < auc(parlenda_seconds(0, 0.0, 1), parlenda_seconds(1, 0.0, 2)) < 0.7


@pytest.mark.parametrize("bad", [{"participants": 1}, {"defect_rate": 1.5}, {"effect_size": -1.0}])
def test_impossible_specs_are_refused(tmp_path: Path, bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        generate_corpus(DemoSpec(tmp_path, **bad), workers=1)  # type: ignore[arg-type]


def test_every_defect_is_caught_exactly_across_seeds_and_effect_sizes(tmp_path: Path) -> None:
    """The generator's defects must each break exactly their rule (e.g. the 50 ms clip must be
    voiced, not silence, whatever the utterance), on corpora other than the fixtures'."""
    from spira_assets.audio.quality import AudioQualityRules
    from spira_assets.demo.defects import DEFECT_KINDS
    from spira_assets.demo.verify import load_manifest, verify_batch
    from spira_assets.privacy import Pseudonymizer
    from spira_assets.storage.layout import DataLayout
    from spira_assets_tests.conftest import TEST_KEY, all_quarantine, run_core_stages

    _ = AudioQualityRules
    for seed, effect in ((21, 0.0), (22, 1.0), (23, 2.0)):
        out = tmp_path / f"s{seed}" / "landing"
        generate_corpus(
            DemoSpec(
                out,
                batches=1,
                participants=8,
                seed=seed,
                effect_size=effect,
                defect_rate=2 * len(DEFECT_KINDS) / 32,
                noise_files=1,
            ),
            workers=1,
        )
        layout = DataLayout.from_location(out.parent)
        raw, meta = run_core_stages(layout, "demo-001", Pseudonymizer(TEST_KEY))
        result = verify_batch(
            load_manifest(layout.batch_dir("demo-001")) or {},
            all_quarantine(raw, meta),
            Pseudonymizer(TEST_KEY),
        )
        assert result.ok, result.problems
