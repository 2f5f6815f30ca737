"""Container-level integrity checks that libsndfile does not make.

libsndfile quietly "repairs" a truncated WAV (it recomputes the frame count from the file size)
and a truncated Ogg stream (it trusts the last complete page), so decoding alone cannot tell an
interrupted upload from a short recording. These checks read the container's own bookkeeping.
"""

from __future__ import annotations

import struct

OGG_TAIL_BYTES = 65536
_UNKNOWN_RIFF_SIZES = {0, 0xFFFFFFFF}


def wav_truncation(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is shorter than its header says, or None."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    declared = struct.unpack("<I", data[4:8])[0]
    if declared in _UNKNOWN_RIFF_SIZES:
        return None
    expected = declared + 8
    if len(data) + 1 < expected:  # +1: a final pad byte may be missing
        return f"RIFF header declares {expected} bytes but the file has {len(data)}"
    return None


def ogg_truncation(data: bytes) -> str | None:
    """Why an Ogg stream lacks its end (last page incomplete or without end-of-stream flag)."""
    if data[:4] != b"OggS":
        return None
    tail_start = max(0, len(data) - OGG_TAIL_BYTES)
    last = data.rfind(b"OggS", tail_start)
    if last < 0 or len(data) - last < 27:
        return "the last Ogg page is cut off"
    header_type = data[last + 5]
    segments = data[last + 26]
    table_end = last + 27 + segments
    if table_end > len(data):
        return "the last Ogg page is cut off"
    page_end = table_end + sum(data[last + 27 : table_end])
    if page_end > len(data):
        return f"the last Ogg page is cut off ({len(data) - last} of {page_end - last} bytes)"
    if not header_type & 0x04:
        return "the Ogg stream has no end-of-stream page"
    return None


def container_truncation(data: bytes) -> str | None:
    return wav_truncation(data) or ogg_truncation(data)
