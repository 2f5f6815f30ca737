"""The pseudonym key: where it comes from (``SPIRA_PSEUDONYM_KEY``, the demo corpus's public key
in a data root the demo generated, or a local key generated once outside the repository) and
the checks that refuse a published, demo or weak key."""

from __future__ import annotations

import hashlib
import math
import os
import secrets
from dataclasses import dataclass
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
DEMO_KEY_REFUSED = (
    f"{KEY_ENV} is a demo key: it is derived from the public demo corpus seed, so anybody can "
    f"undo its pseudonyms; a deployment needs a secret of its own: {MAKE_KEY_HINT}"
)


@dataclass(frozen=True)
class KeySource:
    """Where a process that is given no resource takes its key from (the served model, the
    CLI's prediction log): the key its environment sets (may be empty) and the config home of
    a generated local key. The caller reads both (``environment.py``, or the environment the
    serving process passes)."""

    given: str
    config_home: Path

    def load(self, data_root: Path | None) -> str:
        return load_pseudonym_key(self.given, data_root, self.config_home)


class PseudonymKeyError(RuntimeError):
    """The pseudonym key is missing or too weak."""


def local_key_file(config_home: Path) -> Path:
    """Where a generated local key lives under the user's config home (``environment.py``
    gives ``$XDG_CONFIG_HOME`` or ``~/.config``): outside every repository and data root."""
    return Path(config_home) / "spira_assets" / "pseudonym.key"


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


def load_pseudonym_key(given: str | None, data_root: Path | None, config_home: Path) -> str:
    """The key: ``given`` (a resource field or ``SPIRA_PSEUDONYM_KEY``, read by the caller:
    ``environment.pseudonym_key``; never a demo key), else the demo key of a data root the demo
    generated (``DEMO_KEY_FILE``), else the local key under ``config_home`` (generated once)."""
    given = (given or "").strip()
    if given and is_demo_key(given):
        raise PseudonymKeyError(DEMO_KEY_REFUSED)
    key = given or _demo_key_of(data_root)
    if not key:
        path = local_key_file(config_home)
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


def refuse_unusable_key(key: str) -> None:
    """At start-up of a code location: the key the environment sets (a deployment always sets
    it) must pass ``check_pseudonym_key`` before any run starts; none set passes."""
    key = key.strip()
    if key:
        if is_demo_key(key):
            raise PseudonymKeyError(DEMO_KEY_REFUSED)
        check_pseudonym_key(key)
