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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
        return hashlib.sha256(b"spira-key-id:" + self.key.encode()).hexdigest()[:12]

    def _digest(self, domain: str, value: str) -> str:
        message = f"{domain}:{value.strip()}".encode()
        return hmac.new(self.key.encode(), message, hashlib.sha256).hexdigest()

    def participant(self, participant_id: str) -> str:
        return "P-" + self._digest("participant", participant_id)[:16]

    def path_key(self, relative_path: str) -> str:
        """A join key for a file path that may itself contain identifiers."""
        return self._digest("path", relative_path)[:32]


@dataclass(frozen=True)
class Redactor:
    """Replaces known identifier values inside free text (file names, error details).

    Values are matched as whole tokens so a short id such as ``12`` does not mangle ``x123``.
    Participant ids become their pseudonym; other identifiers become ``[redacted]``.
    """

    replacements: tuple[tuple[re.Pattern[str], str], ...] = ()

    @classmethod
    def build(
        cls,
        pseudonymizer: Pseudonymizer,
        participant_ids: Iterable[str],
        other_identifiers: Iterable[str],
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
                (re.compile(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])"), repl)
                for value, repl in ordered
            )
        )

    def __call__(self, text: str) -> str:
        for pattern, replacement in self.replacements:
            text = pattern.sub(replacement, text)
        return text
