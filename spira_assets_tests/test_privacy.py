import stat
from pathlib import Path

import pytest

from spira_assets.privacy import (
    KEY_ENV,
    Pseudonymizer,
    PseudonymKeyError,
    Redactor,
    load_pseudonym_key,
    local_key_file,
)


def test_pseudonym_is_stable_keyed_and_opaque() -> None:
    a, b = Pseudonymizer("k" * 32), Pseudonymizer("j" * 32)
    assert a.participant("SP0001") == a.participant(" SP0001 ")
    assert a.participant("SP0001") != a.participant("SP0002")
    assert a.participant("SP0001") != b.participant("SP0001")
    assert a.participant("SP0001").startswith("P-") and "0001" not in a.participant("SP0001")
    assert a.key_id != b.key_id and "k" * 8 not in a.key_id


def test_key_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "from-env-0123456789")
    assert load_pseudonym_key() == "from-env-0123456789"


def test_local_key_is_generated_once_private_and_outside_repo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV)
    first = load_pseudonym_key()
    path = local_key_file()
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_pseudonym_key() == first
    assert Path(__file__).resolve().parents[1] not in path.resolve().parents


def test_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(PseudonymKeyError, match="at least 16"):
        load_pseudonym_key()


def test_redactor_replaces_whole_tokens_only() -> None:
    p = Pseudonymizer("k" * 32)
    redact = Redactor.build(p, ["12"], ["+55 11 91234-5678"])
    assert redact("audio/12_frase.wav") == f"audio/{p.participant('12')}_frase.wav"
    assert redact("audio/x123.wav") == "audio/x123.wav"
    assert redact("call +55 11 91234-5678 now") == "call [redacted] now"
