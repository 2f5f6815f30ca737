"""How each collection device delivers audio: container, codec, sample rate, channels."""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from spira_assets.demo.voice import RATE


@dataclass(frozen=True)
class AudioFormat:
    suffix: str
    container: str
    subtype: str
    sample_rate: int
    channels: int = 1


DEVICE_FORMATS: dict[str, tuple[AudioFormat, ...]] = {
    "android-app": (
        AudioFormat(".ogg", "OGG", "OPUS", 48_000),
        AudioFormat(".flac", "FLAC", "PCM_16", 16_000),
    ),
    "ios-app": (AudioFormat(".wav", "WAV", "PCM_16", 44_100),),
    "web": (
        AudioFormat(".wav", "WAV", "PCM_16", 48_000, channels=2),
        AudioFormat(".mp3", "MP3", "MPEG_LAYER_III", 44_100),
    ),
    "whatsapp": (AudioFormat(".ogg", "OGG", "OPUS", 16_000),),
}
LOSSLESS_WAV = AudioFormat(".wav", "WAV", "PCM_16", 16_000)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return audio
    common = gcd(source_rate, target_rate)
    return resample_poly(audio, target_rate // common, source_rate // common, axis=0).astype(
        np.float32
    )


def encode(audio: np.ndarray, fmt: AudioFormat) -> bytes:
    """Bytes of ``audio`` (mono, 16 kHz float) delivered in ``fmt``."""
    signal = resample(audio, RATE, fmt.sample_rate)
    if fmt.channels > 1:
        signal = np.stack(
            [signal * (0.9 + 0.1 * c / fmt.channels) for c in range(fmt.channels)], axis=1
        )
    buffer = io.BytesIO()
    sf.write(
        buffer,
        np.clip(signal, -1.0, 1.0),
        fmt.sample_rate,
        format=fmt.container,
        subtype=fmt.subtype,
    )
    data = buffer.getvalue()
    if fmt.container == "OGG":
        data = fix_ogg_serial(data, zlib.crc32(audio.tobytes()))
    return data


def _ogg_crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_OGG_CRC = _ogg_crc_table()


def _ogg_crc(page: bytes) -> int:
    crc = 0
    for byte in page:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _OGG_CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def fix_ogg_serial(data: bytes, serial: int) -> bytes:
    """Give every page of an Ogg stream the same serial number (libsndfile draws a random one,
    which would make the demo corpus differ byte-for-byte between runs)."""
    out = bytearray(data)
    position = 0
    while position + 27 <= len(out) and out[position : position + 4] == b"OggS":
        segments = out[position + 26]
        length = 27 + segments + sum(out[position + 27 : position + 27 + segments])
        out[position + 14 : position + 18] = struct.pack("<I", serial & 0xFFFFFFFF)
        out[position + 22 : position + 26] = b"\0\0\0\0"
        crc = _ogg_crc(bytes(out[position : position + length]))
        out[position + 22 : position + 26] = struct.pack("<I", crc)
        position += length
    return bytes(out)
