"""Pseudonymization and redaction of patient identifiers.

Identifiers (``participant_id``, ``hospital_record``, ``phone``) never leave the raw zone.
A participant becomes a keyed pseudonym: HMAC-SHA256 of the identifier under a secret key, so
the same person gets the same pseudonym in every batch (needed for patient-grouped splits) but
nobody without the key can test a guess. The key comes from ``SPIRA_PSEUDONYM_KEY``. A data root
the demo generated carries the demo corpus's public key (``demo_key``: the same on every machine,
so every ``make demo`` gets the same split), refused in the environment; anything else without a
key gets a random key generated once and kept outside the repository (``~/.config``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

KEY_ENV = "SPIRA_PSEUDONYM_KEY"
MIN_KEY_LENGTH = 32
MIN_KEY_BITS = 128
MAKE_KEY_HINT = (
    "make one with `openssl rand -hex 32` "
    "or `python -c 'import secrets; print(secrets.token_hex(32))'`"
)
# Placeholder values published in the repository's examples (deploy/compose/.env.example,
# deploy/k8s/spira-secrets.example.yaml, earlier versions of both): anybody can read them, so a
# deployment that kept one has no secret at all. test_privacy.py checks every example is here.
EXAMPLE_KEYS = frozenset(
    {
        "change-me-to-a-long-random-secret",
        "placeholder-not-a-key-run-openssl-rand-hex-32",
        "a long random secret; changing it changes every pseudonym",
    }
)
REDACTED = "[redacted]"
DEMO_KEY_REFUSED = (
    f"{KEY_ENV} is a demo key: it is derived from the public demo corpus seed, so anybody can "
    f"undo its pseudonyms; a deployment needs a secret of its own: {MAKE_KEY_HINT}"
)
# Bump when the way an identifier becomes a pseudonym changes: the key id changes with it, so
# batches pseudonymized the old way can never be silently mixed with new ones (dataset_split
# refuses a split over different key ids).
PSEUDONYM_SCHEME = "v3-nfkc-no-format-chars-trim-casefold"
# What separates the parts of an id (``SP-0001``, ``SP_0001``, ``SP.0001``, ``SP 0001``): ids
# equal once these are removed are one person spelled two ways until an alias map says which.
ID_SEPARATORS = frozenset(" ._")


def _is_separator(char: str) -> bool:
    return char in ID_SEPARATORS or unicodedata.category(char) == "Pd"  # every dash


def clean_identifier(value: str) -> str:
    """An identifier as typed, made comparable but not case folded: format characters
    (Unicode category Cf: zero-width space, soft hyphen, BOM, direction marks) removed, Unicode
    NFKC (fullwidth ``\uff33\uff30\uff10`` is ``SP0``, a no-break space a space), surrounding
    space trimmed and inner runs of white space collapsed to one space."""
    visible = "".join(c for c in value if unicodedata.category(c) != "Cf")
    return " ".join(unicodedata.normalize("NFKC", visible).split())


def normalize_identifier(value: str) -> str:
    """The canonical spelling of an identifier before it is hashed: ``clean_identifier``, then
    case folded. ``" ab\u00e7 "``, ``"AB\u00c7"``, ``"abc\u0327"`` (c + combining cedilla),
    ``"ab\u200b\u00e7"`` and fullwidth ``"\uff21\uff22\u00c7"`` are one person."""
    return unicodedata.normalize("NFKC", clean_identifier(value).casefold())


def separator_free(value: str) -> str:
    """The canonical spelling without separators (space, dot, underscore, dashes): ``SP-0001``,
    ``sp_0001`` and ``SP 0001`` all give ``sp0001``."""
    return "".join(c for c in normalize_identifier(value) if not _is_separator(c))


def id_shape(value: str) -> str:
    """What an identifier looks like without saying what it is: letters ``A``, digits ``#``,
    separators kept, anything else ``?`` (``SP-0001`` is ``AA-####``). Used to tell two
    spellings apart in records that leave the raw zone."""
    return "".join(
        "#" if c.isdigit() else "A" if c.isalpha() else c if _is_separator(c) else "?"
        for c in clean_identifier(value)
    )


class PseudonymKeyError(RuntimeError):
    """The pseudonym key is missing or too weak."""


def local_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spira_assets" / "pseudonym.key"


# The demo corpus's own key: public, derived from the corpus seed, so that every machine that
# runs ``make demo`` gets the same pseudonyms, hence the same split and the same metrics. It is
# recognisable by its prefix, and refused wherever a real deployment gives its key (the
# environment): a demo key protects nothing.
DEMO_KEY_PREFIX = "spira-demo-key-v1:"
DEMO_KEY_FILE = "demo_pseudonym.key"  # in the data root the demo generated


def demo_key(corpus_seed: int) -> str:
    digest = hashlib.sha256(f"spira-assets demo corpus seed {corpus_seed}".encode()).hexdigest()
    return DEMO_KEY_PREFIX + digest


def is_demo_key(key: str) -> bool:
    return key.strip().startswith(DEMO_KEY_PREFIX)


def write_demo_key(data_root: Path, corpus_seed: int) -> Path:
    """Record the demo key in a data root the demo corpus was generated into (kept when one is
    already there, so a root keeps one key for all its batches)."""
    path = Path(data_root) / DEMO_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(demo_key(corpus_seed) + "\n", encoding="utf-8")
    return path


def _demo_key_of(data_root: Path | None) -> str:
    if data_root is None or not (Path(data_root) / DEMO_KEY_FILE).is_file():
        return ""
    key = (Path(data_root) / DEMO_KEY_FILE).read_text(encoding="utf-8").strip()
    if not is_demo_key(key):
        raise PseudonymKeyError(
            f"{Path(data_root) / DEMO_KEY_FILE} holds something other than a demo key: a real "
            f"key belongs in {KEY_ENV}, never in a file of the data root"
        )
    return key


def load_pseudonym_key(explicit: str | None = None, data_root: Path | None = None) -> str:
    """The key: explicit value, else ``SPIRA_PSEUDONYM_KEY`` (never a demo key), else the demo
    key of a data root the demo generated (``DEMO_KEY_FILE``), else a generated local key."""
    given = (explicit or os.environ.get(KEY_ENV) or "").strip()
    if given and is_demo_key(given):
        raise PseudonymKeyError(DEMO_KEY_REFUSED)
    key = given or _demo_key_of(data_root)
    if not key:
        path = local_key_file()
        if path.exists():
            key = path.read_text(encoding="utf-8").strip()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            key = secrets.token_hex(32)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(key + "\n")
    check_pseudonym_key(key)
    return key


def key_bits(key: str) -> float:
    """A rough strength estimate: length times the Shannon entropy of the key's own characters.
    A random 64-digit hex key scores about 240; ``aaaa...`` or a repeated word scores low."""
    counts = [key.count(char) for char in set(key)]
    return -sum(n * math.log2(n / len(key)) for n in counts)


def check_pseudonym_key(key: str) -> None:
    """Refuse a published example key or one too weak to protect low-entropy identifiers.

    Participant ids are few and guessable (``SP0001``...), so a pseudonym is only as private
    as its key: whoever can enumerate keys can hash every id and undo the pseudonyms."""
    if key in EXAMPLE_KEYS:
        raise PseudonymKeyError(
            f"{KEY_ENV} is the placeholder from the repository's examples, which is public; "
            f"set a secret of your own: {MAKE_KEY_HINT}"
        )
    if len(key) < MIN_KEY_LENGTH or key_bits(key) < MIN_KEY_BITS:
        raise PseudonymKeyError(
            f"{KEY_ENV} is too weak (length {len(key)}, about {key_bits(key):.0f} bits); it "
            f"needs at least {MIN_KEY_LENGTH} characters and {MIN_KEY_BITS} bits so that "
            f"nobody can enumerate it: {MAKE_KEY_HINT}"
        )


def refuse_unusable_environment_key() -> None:
    """At start-up of a code location: a key set in the environment must pass
    ``check_pseudonym_key`` before any run starts (a deployment always sets it)."""
    key = os.environ.get(KEY_ENV, "").strip()
    if key:
        if is_demo_key(key):
            raise PseudonymKeyError(DEMO_KEY_REFUSED)
        check_pseudonym_key(key)


@dataclass(frozen=True)
class Pseudonymizer:
    """Keyed, stable pseudonyms. ``key_id`` names the key without revealing it.

    ``id_format``: the site's participant id format (a regular expression the whole cleaned
    id must match, ignoring case as pseudonyms do), or None for no format. Ids outside it are
    quarantined, and file-name tokens that match it are redacted."""

    key: str = field(repr=False)
    id_format: str | None = None

    def __post_init__(self) -> None:
        if self.id_format is not None:
            try:
                re.compile(self.id_format)
            except re.error as error:
                raise ValueError(
                    f"the participant id format {self.id_format!r} is not a regular "
                    f"expression ({error})"
                ) from error

    @property
    def is_demo(self) -> bool:
        """The demo corpus's public key (``demo_key``): never for patient data."""
        return is_demo_key(self.key)

    @property
    def key_kind(self) -> str:
        return "demo (public, derived from the demo corpus seed)" if self.is_demo else "secret"

    @property
    def key_id(self) -> str:
        """Names the key and the pseudonym scheme together, without revealing the key."""
        material = f"spira-key-id:{PSEUDONYM_SCHEME}:".encode() + self.key.encode()
        return hashlib.sha256(material).hexdigest()[:12]

    def _digest(self, domain: str, value: bytes) -> str:
        message = f"{domain}:".encode() + value
        return hmac.new(self.key.encode(), message, hashlib.sha256).hexdigest()

    def participant(self, participant_id: str) -> str:
        normalized = normalize_identifier(participant_id)
        return "P-" + self._digest("participant", normalized.encode())[:16]

    def id_fingerprint(self, participant_id: str) -> str:
        """A keyed hash of the id without separators: stored beside the pseudonym, so a later
        batch can tell that ``SP-0001`` and ``SP0001`` are one id spelled two ways without any
        raw id being kept."""
        return self._digest("id-fingerprint", separator_free(participant_id).encode())[:16]

    def outside_id_format(self, participant_id: str) -> bool:
        """The cleaned id does not match the site's id format (False when there is none)."""
        if self.id_format is None:
            return False
        return re.fullmatch(self.id_format, clean_identifier(participant_id), re.IGNORECASE) is None

    def path_key(self, relative_path: str) -> str:
        """A join key for a file path that may itself contain identifiers. Paths are taken
        in NFC (a name uploaded from macOS arrives decomposed, the CSV usually composed) and
        otherwise byte for byte (a name that is not UTF-8 arrives with surrogate escapes)."""
        composed = unicodedata.normalize("NFC", relative_path.strip())
        return self._digest("path", os.fsencode(composed))[:32]


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
    chars = [re.escape(c) for c in clean_identifier(value) if not _is_separator(c)]
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
                and _is_separator(gap)
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
