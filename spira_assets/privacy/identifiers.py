"""Identifiers in their canonical spelling: what is compared and hashed, so that one person
spelled two ways (case, width, separators, invisible characters) is one person."""

from __future__ import annotations

import unicodedata

# What separates the parts of an id (``SP-0001``, ``SP_0001``, ``SP.0001``, ``SP 0001``): ids
# equal once these are removed are one person spelled two ways until an alias map says which.
ID_SEPARATORS = frozenset(" ._")


def is_separator(char: str) -> bool:
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
    return "".join(c for c in normalize_identifier(value) if not is_separator(c))


def id_shape(value: str) -> str:
    """What an identifier looks like without saying what it is: letters ``A``, digits ``#``,
    separators kept, anything else ``?`` (``SP-0001`` is ``AA-####``). Used to tell two
    spellings apart in records that leave the raw zone."""
    return "".join(
        "#" if c.isdigit() else "A" if c.isalpha() else c if is_separator(c) else "?"
        for c in clean_identifier(value)
    )
