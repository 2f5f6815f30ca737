"""Write a SPIRA-like landing zone: batches of participants with four utterances each, in the
formats phones deliver, with injected defects and a ground-truth manifest per batch.

Everything is drawn from one seeded generator, so the same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import soundfile as sf

from spira_assets.demo.defects import DEFECT_KINDS, EXPECTED
from spira_assets.demo.formats import DEVICE_FORMATS, LOSSLESS_WAV, AudioFormat, encode
from spira_assets.demo.noise import hospital_ambience
from spira_assets.demo.voice import RATE, breathing_for, random_speaker, synthesize
from spira_assets.storage.batches import METADATA_FILE, READY_MARKER, require_valid_batch_id

MANIFEST_FILE = "_demo_manifest.json"
UTTERANCES = ("aceite", "sustentada", "parlenda", "frase")
COLUMNS = (
    "participant_id",
    "hospital_record",
    "phone",
    "label",
    "sex",
    "age",
    "spo2",
    "respiratory_rate",
    "collected_at",
    "device",
    "utterance",
    "audio_path",
    "notes",  # free text the app exports; unknown to the contract, must be dropped
)
FIRST_NAMES = ("Ana", "Joao", "Maria", "Jose", "Francisca", "Antonio", "Luiza", "Carlos")


@dataclass(frozen=True)
class DemoSpec:
    out: Path
    batches: int = 3
    participants: int = 24
    seed: int = 7
    effect_size: float = 1.0
    defect_rate: float = 0.05
    noise_files: int = 4
    start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    # drift on purpose (a test of the drift checks): years added to every age, and the only
    # devices participants use (empty: all of DEVICE_FORMATS)
    age_shift: int = 0
    devices: tuple[str, ...] = ()


@dataclass
class BatchManifest:
    batch_id: str
    rows: int
    files: int
    defects: list[dict[str, object]] = field(default_factory=list)


def batch_ids(count: int) -> list[str]:
    return [require_valid_batch_id(f"demo-{i:03d}") for i in range(1, count + 1)]


def _participant(rng: np.random.Generator, label: int, serial: int) -> dict[str, object]:
    sex = str(rng.choice(["F", "M"]))
    if label == 1:
        age = int(np.clip(rng.normal(58, 14), 18, 95))
        spo2: int | None = int(rng.integers(78, 92))
        rr: int | None = int(rng.integers(20, 36))
        record = f"{rng.integers(1_000_000, 9_999_999)}{chr(65 + int(rng.integers(0, 26)))}"
    else:
        age = int(np.clip(rng.normal(41, 13), 18, 90))
        spo2 = int(rng.integers(94, 100)) if rng.random() < 0.7 else None
        rr = int(rng.integers(12, 21)) if rng.random() < 0.8 else None
        record = ""
    return {
        "participant_id": f"SP{serial:04d}{int(rng.integers(100_000, 999_999))}",
        "hospital_record": record,
        "phone": f"+55 11 9{rng.integers(1000, 9999)}-{rng.integers(1000, 9999)}",
        "label": label,
        "sex": sex,
        "age": age,
        "spo2": spo2,
        "respiratory_rate": rr,
        "device": str(rng.choice(list(DEVICE_FORMATS))),
        "name": f"{rng.choice(FIRST_NAMES)} {chr(65 + int(rng.integers(0, 26)))}.",
    }


def write_noise(out: Path, count: int, rng: np.random.Generator) -> list[Path]:
    folder = out / "noise"
    folder.mkdir(parents=True, exist_ok=True)
    formats = (
        LOSSLESS_WAV,
        AudioFormat(".flac", "FLAC", "PCM_16", 16_000),
        AudioFormat(".ogg", "OGG", "VORBIS", 44_100),
    )
    written = []
    for i in range(count):
        fmt = formats[i % len(formats)]
        path = folder / f"hospital_ambience_{i:02d}{fmt.suffix}"
        path.write_bytes(encode(hospital_ambience(12.0, rng), fmt))
        written.append(path)
    return written


def _defect_audio(
    kind: str, audio: np.ndarray, fmt: AudioFormat, rng: np.random.Generator
) -> bytes:
    if kind == "zero_byte":
        return b""
    if kind == "not_audio":
        return b"<html><body>502 Bad Gateway</body></html>\n" * 40
    if kind == "truncated":
        data = encode(audio, fmt)
        return data[: int(len(data) * rng.uniform(0.4, 0.7))]
    if kind == "silent":
        return encode(np.zeros_like(audio), fmt)
    if kind == "clipped":  # input gain far too high: the peak driven to 4x full scale
        return encode(audio / max(float(np.abs(audio).max()), 1e-9) * 4.0, fmt)
    if kind == "too_short":  # 50 ms of the loudest stretch: short, but not silent
        piece = int(0.05 * RATE)
        energy = np.convolve(audio.astype(np.float64) ** 2, np.ones(piece), mode="valid")
        start = int(np.argmax(energy))
        return encode(audio[start : start + piece], fmt)
    if kind == "eight_channels":
        buffer = io.BytesIO()
        sf.write(buffer, np.tile(audio[:, None], (1, 8)), RATE, format="WAV", subtype="PCM_16")
        return buffer.getvalue()
    raise ValueError(kind)


def write_batch(
    spec: DemoSpec, batch_index: int, batch_id: str, serial_start: int, rng: np.random.Generator
) -> BatchManifest:
    folder = spec.out / batch_id
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    labels = [i % 2 for i in range(spec.participants)]
    rng.shuffle(labels)
    day = spec.start + timedelta(days=7 * batch_index)
    rows: list[dict[str, object]] = []
    audio_of: dict[int, tuple[np.ndarray, AudioFormat]] = {}
    for p, label in enumerate(labels):
        person = _participant(rng, int(label), serial_start + p)
        if spec.age_shift:
            person["age"] = int(np.clip(int(str(person["age"])) + spec.age_shift, 18, 99))
        if spec.devices:
            person["device"] = spec.devices[p % len(spec.devices)]
        speaker = random_speaker(str(person["sex"]), rng)
        breathing = breathing_for(int(label), spec.effect_size, rng)
        fmt_choices = DEVICE_FORMATS[str(person["device"])]
        fmt = fmt_choices[int(rng.integers(0, len(fmt_choices)))]
        when = day + timedelta(minutes=int(rng.integers(0, 8 * 60)))
        for utterance in UTTERANCES:
            audio = synthesize(utterance, speaker, breathing, rng)
            floor = rng.standard_normal(len(audio)).astype(np.float32) * 10 ** (
                rng.uniform(-65, -50) / 20
            )
            audio = (audio + floor) * 10 ** (rng.uniform(-9, 0) / 20)
            name = f"audio/{rng.integers(16**11, 16**12):012x}_{utterance}{fmt.suffix}"
            row = {k: v for k, v in person.items() if k != "name"}
            offset = timedelta(seconds=int(rng.integers(0, 600)))
            row.update(
                collected_at=(when + offset).astimezone(UTC).isoformat(timespec="seconds"),
                utterance=utterance,
                audio_path=name,
                notes=f"paciente {person['name']} colaborou bem" if rng.random() < 0.3 else "",
            )
            audio_of[len(rows)] = (audio, fmt)
            rows.append(row)

    n_defects = round(spec.defect_rate * len(rows))
    kinds = list(DEFECT_KINDS)
    rng.shuffle(kinds)
    targets = rng.choice(len(rows), size=min(n_defects, len(rows)), replace=False)
    defect_of = {int(t): kinds[i % len(kinds)] for i, t in enumerate(sorted(targets))}

    extra_rows: list[dict[str, object]] = []
    skip_row: set[int] = set()
    skip_file: set[int] = set()
    bom = False
    manifest = BatchManifest(batch_id, 0, 0)
    for index, kind in defect_of.items():
        row = rows[index]
        if kind == "spo2_out_of_range":
            row["spo2"] = 30 if row["label"] == 1 else 150
        elif kind == "age_out_of_range":
            row["age"] = int(rng.choice([7, 150]))
        elif kind == "bad_timestamp":
            row["collected_at"] = str(
                rng.choice(["ontem 14h", "2026-13-45T99:00:00", "03/02/2026"])
            )
        elif kind == "row_without_audio":
            skip_file.add(index)
        elif kind == "audio_without_row":
            skip_row.add(index)
        elif kind == "stray_whitespace_bom":
            bom = True
            row["sex"] = f"  {row['sex']} "
            row["utterance"] = f"{row['utterance']}\t"
        elif kind == "duplicate_participant":
            twin = dict(row)
            twin["audio_path"] = (
                f"audio/{rng.integers(16**11, 16**12):012x}_{row['utterance']}_retake"
                f"{audio_of[index][1].suffix}"
            )
            audio, fmt = audio_of[index]
            (folder / str(twin["audio_path"])).write_bytes(encode(audio * 0.9, fmt))
            extra_rows.append(twin)
        record: dict[str, object] = {
            "kind": kind,
            "audio_path": row["audio_path"]
            if kind != "duplicate_participant"
            else extra_rows[-1]["audio_path"],
            "expected": [asdict(e) for e in EXPECTED[kind]],
        }
        manifest.defects.append(record)

    for index, row in enumerate(rows):
        if index in skip_file:
            continue
        audio, fmt = audio_of[index]
        injected = defect_of.get(index)
        if injected in {
            "truncated",
            "zero_byte",
            "not_audio",
            "silent",
            "clipped",
            "too_short",
            "eight_channels",
        }:
            data = _defect_audio(str(injected), audio, fmt, rng)
        else:
            data = encode(audio, fmt)
        (folder / str(row["audio_path"])).write_bytes(data)

    final_rows = [r for i, r in enumerate(rows) if i not in skip_row] + extra_rows
    order = rng.permutation(len(final_rows))
    final_rows = [final_rows[i] for i in order]
    for twin in extra_rows:  # a retake is recorded after the original: keep its row later
        original = next(
            r
            for r in final_rows
            if r is not twin
            and r["participant_id"] == twin["participant_id"]
            and r["utterance"] == twin["utterance"]
        )
        i, j = final_rows.index(original), final_rows.index(twin)
        if j < i:
            final_rows[i], final_rows[j] = twin, original
    row_number = {str(r["audio_path"]): n for n, r in enumerate(final_rows, start=2)}
    for record in manifest.defects:
        record["row_number"] = row_number.get(str(record["audio_path"]))

    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\r\n" if bom else "\n")
    writer.writeheader()
    for row in final_rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    (folder / METADATA_FILE).write_bytes(
        ("\ufeff" if bom else "").encode() + text.getvalue().encode()
    )
    manifest.rows = len(final_rows)
    manifest.files = sum(1 for p in (folder / "audio").iterdir() if p.is_file())
    (folder / MANIFEST_FILE).write_text(json.dumps(asdict(manifest), indent=2), encoding="utf-8")
    (folder / READY_MARKER).write_text(datetime.now(UTC).isoformat() + "\n", encoding="utf-8")
    return manifest


def generate_corpus(spec: DemoSpec, workers: int | None = None) -> list[BatchManifest]:
    """Write ``spec.batches`` complete batches plus ``noise/`` under ``spec.out``.

    Batches are written in parallel processes; each has its own seed drawn from ``spec.seed``,
    so the output does not depend on the number of workers.
    """
    if spec.participants < 2:
        raise ValueError("--participants must be at least 2 (one per class)")
    if not 0.0 <= spec.defect_rate <= 1.0:
        raise ValueError("--defect-rate must be between 0 and 1")
    unknown = set(spec.devices) - set(DEVICE_FORMATS)
    if unknown:
        raise ValueError(f"unknown devices {sorted(unknown)}; known: {sorted(DEVICE_FORMATS)}")
    if spec.effect_size < 0:
        raise ValueError("--effect-size must be >= 0")
    spec.out.mkdir(parents=True, exist_ok=True)
    root = np.random.default_rng(spec.seed)
    write_noise(spec.out, spec.noise_files, np.random.default_rng(root.integers(2**63)))
    jobs = [
        (spec, index, batch_id, index * spec.participants, int(root.integers(2**63)))
        for index, batch_id in enumerate(batch_ids(spec.batches))
    ]
    workers = min(len(jobs), workers or os.cpu_count() or 1)
    if workers <= 1:
        return [_write_batch_job(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_write_batch_job, jobs))


def _write_batch_job(job: tuple[DemoSpec, int, str, int, int]) -> BatchManifest:
    spec, index, batch_id, serial, seed = job
    return write_batch(spec, index, batch_id, serial, np.random.default_rng(seed))
