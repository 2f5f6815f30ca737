import io

import numpy as np
import pytest
import soundfile as sf

from spira_assets.audio.containers import ogg_truncation, wav_truncation
from spira_assets.audio.quality import AudioDecodeError, AudioQualityRules, judge, measure
from spira_assets.demo.formats import AudioFormat, encode

RULES = AudioQualityRules()
RATE = 16_000


def tone(seconds: float = 2.0, amplitude: float = 0.5, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def wav_bytes(audio: np.ndarray, rate: int = RATE) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format="WAV", subtype="FLOAT")
    return buffer.getvalue()


def rules_broken(audio: np.ndarray, rate: int = RATE) -> list[str]:
    return [f.rule for f in judge(measure(wav_bytes(audio, rate), RULES), RULES)]


def test_measures_level_duration_and_format_exactly() -> None:
    stats = measure(wav_bytes(tone(2.0, 0.5)), RULES)
    assert stats.container == "WAV" and stats.sample_rate == RATE and stats.channels == 1
    assert stats.frames == 32_000 and stats.duration_s == pytest.approx(2.0)
    assert stats.peak_dbfs == pytest.approx(-6.02, abs=0.01)
    assert stats.rms_dbfs == pytest.approx(-9.03, abs=0.01)
    assert stats.clipping_ratio == 0.0 and stats.silence_ratio == 0.0


@pytest.mark.parametrize(
    "fmt",
    [
        AudioFormat(".wav", "WAV", "PCM_16", 44_100),
        AudioFormat(".wav", "WAV", "PCM_16", 48_000, channels=2),
        AudioFormat(".flac", "FLAC", "PCM_16", 16_000),
        AudioFormat(".ogg", "OGG", "OPUS", 48_000),
        AudioFormat(".ogg", "OGG", "VORBIS", 44_100),
        AudioFormat(".mp3", "MP3", "MPEG_LAYER_III", 44_100),
    ],
    ids=lambda f: f"{f.subtype}-{f.sample_rate}-{f.channels}ch",
)
def test_every_contract_format_decodes_and_passes(fmt: AudioFormat) -> None:
    data = encode(tone(3.0, 0.4), fmt)
    stats = measure(data, RULES)
    assert stats.sample_rate == fmt.sample_rate and stats.channels == fmt.channels
    assert stats.duration_s == pytest.approx(3.0, abs=0.1)
    assert judge(stats, RULES) == []


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        (AudioFormat(".wav", "WAV", "PCM_16", 44_100), "RIFF header declares"),
        (AudioFormat(".flac", "FLAC", "PCM_16", 16_000), "decoding stopped"),
        (AudioFormat(".ogg", "OGG", "OPUS", 48_000), "Ogg"),
        (AudioFormat(".ogg", "OGG", "VORBIS", 44_100), "Ogg"),
        (AudioFormat(".mp3", "MP3", "MPEG_LAYER_III", 44_100), "declared frames"),
    ],
    ids=lambda v: v.subtype if isinstance(v, AudioFormat) else "",
)
def test_truncated_upload_is_detected_in_every_container(fmt: AudioFormat, expected: str) -> None:
    data = encode(tone(3.0, 0.4), fmt)
    with pytest.raises(AudioDecodeError) as caught:
        measure(data[: len(data) * 6 // 10], RULES)
    assert caught.value.finding.rule == "truncated"
    assert expected in caught.value.finding.detail


def test_empty_and_non_audio_files_have_distinct_rules() -> None:
    with pytest.raises(AudioDecodeError) as empty:
        measure(b"", RULES)
    with pytest.raises(AudioDecodeError) as junk:
        measure(b"<html>oops</html>" * 100, RULES)
    assert empty.value.finding.rule == "empty_file"
    assert junk.value.finding.rule == "undecodable"
    assert "BytesIO" not in junk.value.finding.detail


def test_silence_clipping_shortness_and_channels_are_flagged() -> None:
    assert rules_broken(np.zeros(RATE * 2, dtype=np.float32)) == ["silent"]
    assert rules_broken(np.clip(tone(2.0, 4.0), -1, 1)) == ["clipped"]
    assert rules_broken(tone(0.05)) == ["too_short"]
    assert rules_broken(np.tile(tone(1.0)[:, None], (1, 8))) == ["too_many_channels"]
    assert rules_broken(tone(2.0, rate=4_000), rate=4_000) == ["unsupported_sample_rate"]


def test_speech_with_pauses_is_not_silent() -> None:
    audio = np.concatenate([tone(1.0), np.zeros(RATE, dtype=np.float32), tone(1.0)])
    stats = measure(wav_bytes(audio), RULES)
    assert stats.silence_ratio == pytest.approx(1 / 3, abs=0.02)
    assert judge(stats, RULES) == []


def test_container_checks_ignore_other_formats_and_streaming_wavs() -> None:
    assert wav_truncation(b"fLaC....") is None
    assert ogg_truncation(b"RIFF....") is None
    streaming = bytearray(wav_bytes(tone(1.0)))
    streaming[4:8] = b"\xff\xff\xff\xff"
    assert wav_truncation(bytes(streaming)) is None
