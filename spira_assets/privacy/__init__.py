"""Pseudonymization and redaction of patient identifiers.

Identifiers (``participant_id``, ``hospital_record``, ``phone``) never leave the raw zone.
A participant becomes a keyed pseudonym: HMAC-SHA256 of the identifier under a secret key, so
the same person gets the same pseudonym in every batch (needed for patient-grouped splits) but
nobody without the key can test a guess. The key comes from ``SPIRA_PSEUDONYM_KEY``. A data root
the demo generated carries the demo corpus's public key (``demo_key``: the same on every machine,
so every ``make demo`` gets the same split), refused in the environment; anything else without a
key gets a random key generated once and kept outside the repository (``~/.config``).

One concept a module: ``identifiers`` (canonical spelling), ``keys`` (where the key comes from
and which keys are refused), ``pseudonyms`` (``Pseudonymizer``), ``redaction`` (``Redactor``).
"""

from spira_assets.privacy.identifiers import (
    ID_SEPARATORS,
    clean_identifier,
    id_shape,
    is_separator,
    normalize_identifier,
    separator_free,
)
from spira_assets.privacy.keys import (
    DEMO_KEY_FILE,
    DEMO_KEY_PREFIX,
    DEMO_KEY_REFUSED,
    EXAMPLE_KEYS,
    KEY_ENV,
    MAKE_KEY_HINT,
    MIN_KEY_BITS,
    MIN_KEY_LENGTH,
    KeySource,
    PseudonymKeyError,
    check_pseudonym_key,
    demo_key,
    is_demo_key,
    key_bits,
    load_pseudonym_key,
    local_key_file,
    refuse_unusable_key,
    write_demo_key,
)
from spira_assets.privacy.pseudonyms import PSEUDONYM_SCHEME, Pseudonymizer
from spira_assets.privacy.redaction import REDACTED, Redactor, default_id_like, printable

__all__ = [
    "DEMO_KEY_FILE",
    "DEMO_KEY_PREFIX",
    "DEMO_KEY_REFUSED",
    "EXAMPLE_KEYS",
    "ID_SEPARATORS",
    "KEY_ENV",
    "MAKE_KEY_HINT",
    "MIN_KEY_BITS",
    "MIN_KEY_LENGTH",
    "PSEUDONYM_SCHEME",
    "REDACTED",
    "KeySource",
    "PseudonymKeyError",
    "Pseudonymizer",
    "Redactor",
    "check_pseudonym_key",
    "clean_identifier",
    "default_id_like",
    "demo_key",
    "id_shape",
    "is_demo_key",
    "is_separator",
    "key_bits",
    "load_pseudonym_key",
    "local_key_file",
    "normalize_identifier",
    "printable",
    "refuse_unusable_key",
    "separator_free",
    "write_demo_key",
]
