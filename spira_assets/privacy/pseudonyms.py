"""Keyed, stable pseudonyms: HMAC-SHA256 of an identifier's canonical spelling under the
secret key, so the same person gets the same pseudonym in every batch and nobody without the key
can test a guess."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import unicodedata
from dataclasses import dataclass, field

from spira_assets.privacy.identifiers import clean_identifier, normalize_identifier, separator_free
from spira_assets.privacy.keys import is_demo_key

# Bump when the way an identifier becomes a pseudonym changes: the key id changes with it, so
# batches pseudonymized the old way can never be silently mixed with new ones (dataset_split
# refuses a split over different key ids).
PSEUDONYM_SCHEME = "v3-nfkc-no-format-chars-trim-casefold"


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
