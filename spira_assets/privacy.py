"""Pseudonymization and redaction of patient identifiers.

Identifiers (``participant_id``, ``hospital_record``, ``phone``) never leave the raw zone.
A participant becomes a keyed pseudonym: HMAC-SHA256 of the identifier under a secret key, so
the same person gets the same pseudonym in every batch (needed for patient-grouped splits) but
nobody without the key can test a guess. The key comes from ``SPIRA_PSEUDONYM_KEY``; for the
demo a random key is generated once and kept outside the repository (``~/.config``).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
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
# Bump when the way an identifier becomes a pseudonym changes: the key id changes with it, so
# batches pseudonymized the old way can never be silently mixed with new ones (dataset_split
# refuses a split over different key ids).
PSEUDONYM_SCHEME = "v2-nfc-trim-casefold"


def normalize_identifier(value: str) -> str:
    """The canonical spelling of an identifier before it is hashed: Unicode NFC, surrounding
    space removed, inner runs of white space collapsed to one space, case folded. ``" ab\u00e7 "``,
    ``"AB\u00c7"`` and ``"abc\u0327"`` (c + combining cedilla) are one person."""
    return " ".join(unicodedata.normalize("NFC", value).split()).casefold()


class PseudonymKeyError(RuntimeError):
    """The pseudonym key is missing or too weak."""


def local_key_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spira_assets" / "pseudonym.key"


def load_pseudonym_key(explicit: str | None = None) -> str:
    """The key: explicit value, else ``SPIRA_PSEUDONYM_KEY``, else a generated local key."""
    key = (explicit or os.environ.get(KEY_ENV) or "").strip()
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
        check_pseudonym_key(key)


@dataclass(frozen=True)
class Pseudonymizer:
    """Keyed, stable pseudonyms. ``key_id`` names the key without revealing it."""

    key: str = field(repr=False)

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


@dataclass(frozen=True)
class Redactor:
    """Replaces known identifier values inside free text (file names, error details).

    Values are matched as whole tokens, ignoring case, so a short id such as ``12`` does not
    mangle ``x123``. Participant ids become their pseudonym; other identifiers ``[redacted]``.

    When the batch's identifiers are not known (its ``metadata.csv`` is missing or cannot be
    read), substitution cannot be trusted, so ``path`` withholds every file name entirely
    (``withheld``): redaction never depends on the metadata being parseable.
    """

    replacements: tuple[tuple[re.Pattern[str], str], ...] = ()
    withheld: Pseudonymizer | None = field(default=None, repr=False)
    # paths some metadata row names: the ids of their rows are known; a file no row names may
    # carry an id nobody listed, so its name is withheld (None: every name is shown redacted)
    referenced: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        pseudonymizer: Pseudonymizer,
        participant_ids: Iterable[str],
        other_identifiers: Iterable[str],
        referenced: Iterable[str] | None = None,
    ) -> Redactor:
        pairs: dict[str, str] = {}
        for value in other_identifiers:
            if value and value.strip():
                pairs[value.strip()] = REDACTED
        for value in participant_ids:
            if value and value.strip():
                pairs[value.strip()] = pseudonymizer.participant(value)
        ordered = sorted(pairs.items(), key=lambda item: -len(item[0]))
        return cls(
            tuple(
                (
                    re.compile(
                        rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", re.IGNORECASE
                    ),
                    repl,
                )
                for value, repl in ordered
            ),
            pseudonymizer if referenced is not None else None,
            frozenset(_composed(p) for p in referenced) if referenced is not None else None,
        )

    @classmethod
    def withholding(cls, pseudonymizer: Pseudonymizer) -> Redactor:
        """For a batch whose identifiers are unknown: file names are never shown."""
        return cls((), pseudonymizer, frozenset())

    def __call__(self, text: str) -> str:
        for pattern, replacement in self.replacements:
            text = pattern.sub(replacement, text)
        return printable(text)

    def path(self, relative_path: str) -> str:
        """A file path as it may be stored or shown: known identifiers replaced, or, when the
        identifiers of this file are unknown (no readable metadata, or no row names the file),
        the whole path withheld but for its extension and a short keyed tag
        (``spira quarantine-paths`` maps tags back inside the raw zone)."""
        if self.withheld is None or (
            self.referenced is not None and _composed(relative_path) in self.referenced
        ):
            return self(relative_path)
        suffix = PurePosixPath(relative_path).suffix
        suffix = suffix if suffix.isascii() and suffix[1:].isalnum() else ""
        return f"[name withheld {self.withheld.path_key(relative_path)[:10]}]{suffix}"
