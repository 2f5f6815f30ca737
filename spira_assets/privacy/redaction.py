"""Redaction of identifiers in free text (file names, error details): known ids become their
pseudonym, other identifiers and id-shaped tokens ``[redacted]``, and a file name whose ids are
unknown is withheld."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import PurePosixPath

from spira_assets.privacy.identifiers import (
    clean_identifier,
    is_separator,
    normalize_identifier,
    separator_free,
)
from spira_assets.privacy.pseudonyms import Pseudonymizer

REDACTED = "[redacted]"


def _composed(path: str) -> str:
    return unicodedata.normalize("NFC", path.strip().replace("\\", "/"))


def printable(text: str) -> str:
    """``text`` safe to store and show: bytes of a file name that are not UTF-8 (surrogate
    escapes) and control characters become backslash escapes."""
    decoded = os.fsencode(text).decode("utf-8", "backslashreplace") if text else text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in decoded)


def _matchable(text: str) -> str:
    """Text as it is matched and shown: format characters removed and NFKC, so a decomposed
    (macOS) or fullwidth name, or one with a zero-width space inside an id, matches the id."""
    return unicodedata.normalize(
        "NFKC", "".join(c for c in text if unicodedata.category(c) != "Cf")
    )


# A token that looks like an identifier when no row names it: letters then digits, optionally
# separated (``SP0001``, ``sp-0001``, ``patient_0042``, ``HC-2024-0012``) with at least
# ``_MIN_ID_DIGITS`` digits, or a long number (a record, a phone, a timestamp).
_SEPARATOR = r"[ ._\-\u2010-\u2015]"  # ID_SEPARATORS and the dashes NFKC leaves
_LETTERS_THEN_DIGITS = re.compile(rf"[^\W\d_]{{1,12}}(?:{_SEPARATOR}?\d+)+")
_MIN_ID_DIGITS = 3
_LONG_NUMBER = re.compile(rf"\d{{5,}}[^\W\d_]?|\d+(?:{_SEPARATOR}\d+)+")
_MIN_GROUPED_DIGITS = 8
_PIECE = re.compile(r"[^\W_]+")  # a run of letters or digits
_MAX_TOKEN_PIECES = 6
# replacements are parked on private-use characters while id-shaped tokens are looked for,
# so a pseudonym (``P-0123...``) is never itself taken for an id
_SLOT = 0xF0000


def default_id_like(token: str) -> bool:
    """The default shape of an identifier in a file name (see ``_LETTERS_THEN_DIGITS``)."""
    digits = sum(c.isdigit() for c in token)
    if _LETTERS_THEN_DIGITS.fullmatch(token):
        return digits >= _MIN_ID_DIGITS
    if _LONG_NUMBER.fullmatch(token):
        return token.isalnum() or digits >= _MIN_GROUPED_DIGITS
    return False


def _spelling_pattern(value: str) -> re.Pattern[str]:
    """``value`` as a whole token, ignoring case and the separators between its characters
    (``SP0001`` also matches ``SP-0001`` and ``sp_0001``)."""
    chars = [re.escape(c) for c in clean_identifier(value) if not is_separator(c)]
    body = f"{_SEPARATOR}?".join(chars)
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])", re.IGNORECASE)


def _exact_pattern(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![^\W_]){re.escape(clean_identifier(value))}(?![^\W_])", re.IGNORECASE)


@dataclass(frozen=True)
class Redactor:
    """Replaces identifier values inside free text (file names, error details).

    Values are matched as whole tokens, ignoring case, so a short id such as ``12`` does not
    mangle ``x123``; participant ids also ignoring the separators between their characters
    (a file ``SP-0001_frase.wav`` of the row ``SP0001``). Text is matched in NFKC without
    format characters, so a decomposed (macOS) or fullwidth name matches too. Participant ids
    become their pseudonym; other identifiers ``[redacted]``. In file names (``path``), any
    other token shaped like an id (the site's ``id_format``, or ``default_id_like``) is
    ``[redacted]`` too, whether or not a row lists it: a row may misspell the id its file
    carries.

    When the batch's identifiers are not known (its ``metadata.csv`` is missing or cannot be
    read), substitution cannot be trusted, so ``path`` withholds every file name entirely
    (``withheld``): redaction never depends on the metadata being parseable.
    """

    replacements: tuple[tuple[re.Pattern[str], str], ...] = ()
    withheld: Pseudonymizer | None = field(default=None, repr=False)
    # paths some metadata row names: the ids of their rows are known; a file no row names may
    # carry an id nobody listed, so its name is withheld (None: every name is shown redacted)
    referenced: frozenset[str] | None = None
    id_format: re.Pattern[str] | None = None

    @classmethod
    def build(
        cls,
        pseudonymizer: Pseudonymizer,
        participant_ids: Iterable[str],
        other_identifiers: Iterable[str],
        referenced: Iterable[str] | None = None,
        aliases: Mapping[str, str] | None = None,
    ) -> Redactor:
        """``aliases``: the site's alias map (canonical spelling -> the id it stands for);
        an alias is redacted to the pseudonym of its id, wherever it occurs."""
        aliases = aliases or {}
        exact: dict[str, str] = {}
        for value in other_identifiers:
            if value and clean_identifier(value):
                exact[clean_identifier(value)] = REDACTED
        spelled: dict[str, str] = {}
        for value in [*participant_ids, *aliases]:
            if value and separator_free(value):
                target = aliases.get(normalize_identifier(value), value)
                spelled[clean_identifier(value)] = pseudonymizer.participant(target)
        patterns = [(_exact_pattern(v), r, len(v)) for v, r in exact.items()]
        patterns += [(_spelling_pattern(v), r, len(v)) for v, r in spelled.items()]
        patterns.sort(key=lambda item: -item[2])
        return cls(
            tuple((pattern, replacement) for pattern, replacement, _ in patterns),
            pseudonymizer if referenced is not None else None,
            frozenset(_composed(p) for p in referenced) if referenced is not None else None,
            _format_pattern(pseudonymizer),
        )

    @classmethod
    def withholding(cls, pseudonymizer: Pseudonymizer) -> Redactor:
        """For a batch whose identifiers are unknown: file names are never shown."""
        return cls((), pseudonymizer, frozenset(), _format_pattern(pseudonymizer))

    def _park(self, text: str) -> tuple[str, list[str]]:
        slots: list[str] = []

        def park(replacement: str) -> str:
            slots.append(replacement)
            return chr(_SLOT + len(slots) - 1)

        for pattern, replacement in self.replacements:
            text = pattern.sub(partial(_parked, park, replacement), text)
        return text, slots

    @staticmethod
    def _unpark(text: str, slots: list[str]) -> str:
        return "".join(
            slots[ord(c) - _SLOT] if _SLOT <= ord(c) < _SLOT + len(slots) else c for c in text
        )

    def __call__(self, text: str) -> str:
        parked, slots = self._park(_matchable(text))
        return printable(self._unpark(parked, slots))

    def _id_like(self, token: str) -> bool:
        if self.id_format is not None and self.id_format.fullmatch(token):
            return True
        return default_id_like(token)

    def _redact_id_tokens(self, text: str) -> str:
        """Every token shaped like an id (pieces of letters or digits joined by single
        separators, longest first) replaced by ``[redacted]``."""
        pieces = list(_PIECE.finditer(text))
        out: list[str] = []
        last = i = 0
        while i < len(pieces):
            ends = [i]
            while (
                len(ends) < _MAX_TOKEN_PIECES
                and ends[-1] + 1 < len(pieces)
                and len(gap := text[pieces[ends[-1]].end() : pieces[ends[-1] + 1].start()]) == 1
                and is_separator(gap)
            ):
                ends.append(ends[-1] + 1)
            start = pieces[i].start()
            hit = next(
                (k for k in reversed(ends) if self._id_like(text[start : pieces[k].end()])), None
            )
            if hit is None:
                i += 1
                continue
            out += [text[last:start], REDACTED]
            last, i = pieces[hit].end(), hit + 1
        return "".join(out) + text[last:]

    def path(self, relative_path: str) -> str:
        """A file path as it may be stored or shown: known identifiers replaced and other
        id-shaped tokens redacted, or, when the identifiers of this file are unknown (no
        readable metadata, or no row names the file), the whole path withheld but for its
        extension and a short keyed tag (``spira quarantine-paths`` maps tags back inside the
        raw zone)."""
        if self.withheld is None or (
            self.referenced is not None and _composed(relative_path) in self.referenced
        ):
            parked, slots = self._park(_matchable(relative_path))
            return printable(self._unpark(self._redact_id_tokens(parked), slots))
        suffix = PurePosixPath(relative_path).suffix
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
        return f"[name withheld {self.withheld.path_key(relative_path)[:10]}]{suffix}"


def _parked(park: Callable[[str], str], replacement: str, _: re.Match[str]) -> str:
    return park(replacement)


def _format_pattern(pseudonymizer: Pseudonymizer) -> re.Pattern[str] | None:
    if pseudonymizer.id_format is None:
        return None
    return re.compile(pseudonymizer.id_format, re.IGNORECASE)
