"""Reading SPIRA's list files as published: rows with the line numbers a text editor shows,
and the audio each row names, resolved inside the source folder or refused."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from spira_assets.audio.quality import SUPPORTED_SUFFIXES
from spira_assets.ingest.schemas import UTTERANCES


@dataclass(frozen=True)
class ListRow:
    list_name: str
    line: int
    label: int | None  # the list's label (v3), None: from the class column (ACL2021)
    values: dict[str, str]
    published_split: str | None = None

    @property
    def where(self) -> str:
        return f"{self.list_name}:{self.line}"

    @property
    def file_path(self) -> str:
        return self.values.get("file_path", "")


def read_list(path: Path) -> tuple[list[tuple[int, dict[str, str]]], list[tuple[int, str]]]:
    """The rows of a list with their line numbers, and the lines that are no row: a NUL byte or
    text that is not UTF-8 on one line rejects that line, never the list. A list with a header
    (its first cell is no audio path) names its columns; a headerless one is one path a line."""
    good: list[str] = []
    bad: list[tuple[int, str]] = []
    for number, raw in enumerate(path.read_bytes().splitlines(), 1):
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append((number, "the line is not UTF-8 text"))
            good.append("")
            continue
        if "\x00" in text:
            bad.append((number, "the line contains a NUL byte"))
            text = ""
        good.append(text)
    numbered = [
        (number, record)
        for number, record in enumerate(csv.reader(good), 1)
        if any(c.strip() for c in record)
    ]
    if not numbered:
        return [], bad
    first = numbered[0][1]
    has_header = Path(first[0].strip()).suffix.lower() not in SUPPORTED_SUFFIXES
    names = [c.strip().lower() for c in first] if has_header else ["file_path"]
    names[0] = "file_path"
    body = numbered[1:] if has_header else numbered
    return [
        (n, dict(zip(names, (c.strip() for c in record), strict=False))) for n, record in body
    ], bad


def confined(root: Path, listed: str) -> Path | str:
    """The file a list row names, resolved inside ``root`` (a real, absolute folder), or why
    it is refused. Absolute paths, drive letters, URLs and ``..`` are refused before the file
    system is touched; a link is followed only to check that it stays inside ``root``."""
    text = listed.strip().replace("\\", "/")
    if not text:
        return "the row names no file"
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text) or "://" in text:
        return "an absolute path or URL: list files relative to the source folder"
    if ".." in PurePosixPath(text).parts:
        return "a path with '..' leaves the source folder"
    real = Path(os.path.realpath(root / text))
    if real != root and root not in real.parents:
        return "a link leading outside the source folder"
    return real


def sex_of(value: str) -> str | None:
    lowered = value.strip().lower()
    if lowered.startswith(("f", "w")):
        return "F"
    if lowered.startswith(("m", "h")):
        return "M"
    return None


def utterance_of(path: str, default: str | None) -> str | None:
    lowered = path.lower()
    for utterance in UTTERANCES:
        if utterance in lowered:
            return utterance
    return default
