import hashlib
import os
import re
import secrets
import stat
import subprocess
import sys
import unicodedata
from pathlib import Path

import polars as pl
import pytest
import yaml

from spira_assets.environment import config_home, pseudonym_key
from spira_assets.privacy import (
    EXAMPLE_KEYS,
    KEY_ENV,
    Pseudonymizer,
    PseudonymKeyError,
    Redactor,
    local_key_file,
)
from spira_assets_tests.conftest import TEST_KEY, environment, fixture_environment

REPO = Path(__file__).resolve().parents[1]
HOW_TO_MAKE_ONE = "openssl rand -hex 32"


def test_pseudonym_is_stable_keyed_and_opaque() -> None:
    a, b = Pseudonymizer("k" * 32), Pseudonymizer("j" * 32)
    assert a.participant("SP0001") == a.participant(" SP0001 ")
    assert a.participant("SP0001") != a.participant("SP0002")
    assert a.participant("SP0001") != b.participant("SP0001")
    assert a.participant("SP0001").startswith("P-") and "0001" not in a.participant("SP0001")
    assert a.key_id != b.key_id and "k" * 8 not in a.key_id


def test_key_comes_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = secrets.token_hex(32)
    monkeypatch.setenv(KEY_ENV, key)
    assert pseudonym_key() == key


def test_local_key_is_generated_once_private_and_outside_repo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV)
    first = pseudonym_key()
    path = local_key_file(config_home())
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert pseudonym_key() == first
    assert Path(__file__).resolve().parents[1] not in path.resolve().parents


def test_short_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(PseudonymKeyError, match="at least 32 characters") as refused:
        pseudonym_key()
    assert HOW_TO_MAKE_ONE in str(refused.value)


@pytest.mark.parametrize(
    "weak",
    [
        "a" * 64,  # long, one symbol
        "spira-" * 8,  # long, a repeated word
        "test-key-0123456789abcdef",  # the old test key: 25 characters
        # 32 random-looking hex digits, about 115 bits by the estimate; fixed, so that every
        # run (and every pytest-xdist worker) collects the same test
        hashlib.sha256(b"spira-assets: a 128-bit key").hexdigest()[:32],
    ],
)
def test_low_entropy_key_is_refused(monkeypatch: pytest.MonkeyPatch, weak: str) -> None:
    monkeypatch.setenv(KEY_ENV, weak)
    with pytest.raises(PseudonymKeyError, match="too weak") as refused:
        pseudonym_key()
    assert HOW_TO_MAKE_ONE in str(refused.value)


def test_a_key_made_as_the_message_says_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    made = subprocess.run(
        [sys.executable, "-c", "import secrets; print(secrets.token_hex(32))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    monkeypatch.setenv(KEY_ENV, made)
    assert pseudonym_key() == made


def _example_keys() -> dict[str, str]:
    """Every value given to the pseudonym key in the repository's example files."""
    found: dict[str, str] = {}
    for path in REPO.joinpath("deploy").rglob("*"):
        if not path.is_file() or not (".example" in path.name or path.suffix in {".yaml"}):
            continue
        text = path.read_text()
        for match in re.finditer(rf"^{KEY_ENV}=(.*)$", text, re.MULTILINE):
            found[f"{path.name}: {match.group(1)}"] = match.group(1).strip()
        if path.suffix == ".yaml":
            for document in yaml.safe_load_all(text):
                for value in _yaml_key_values(document):
                    found[f"{path.name}: {value}"] = value
    return found


def _yaml_key_values(node: object) -> list[str]:
    """``SPIRA_PSEUDONYM_KEY: value`` and ``{name: SPIRA_PSEUDONYM_KEY, value: ...}``."""
    values: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get(KEY_ENV), str) and "${" not in node[KEY_ENV]:
            values.append(node[KEY_ENV])
        if node.get("name") == KEY_ENV and isinstance(node.get("value"), str):
            values.append(node["value"])
        for child in node.values():
            values += _yaml_key_values(child)
    elif isinstance(node, list):
        for child in node:
            values += _yaml_key_values(child)
    return values


def test_every_example_key_in_the_repository_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    examples = _example_keys()
    assert len(examples) >= 2  # .env.example and spira-secrets.example.yaml at least
    for where, key in examples.items():
        assert key in EXAMPLE_KEYS, f"{where} is not in privacy.EXAMPLE_KEYS"
        monkeypatch.setenv(KEY_ENV, key)
        with pytest.raises(PseudonymKeyError, match="placeholder") as refused:
            pseudonym_key()
        assert HOW_TO_MAKE_ONE in str(refused.value), where


def test_code_location_refuses_to_start_with_an_example_key() -> None:
    """What the code server, webserver and daemon import: with the compose example's key the
    definitions do not load, and the reason says how to make a key."""
    env = {**os.environ, KEY_ENV: "placeholder-not-a-key-run-openssl-rand-hex-32"}
    started = subprocess.run(
        [sys.executable, "-c", "import spira_assets.definitions"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert started.returncode != 0
    assert "PseudonymKeyError" in started.stderr and HOW_TO_MAKE_ONE in started.stderr


def test_redactor_replaces_whole_tokens_only() -> None:
    p = Pseudonymizer("k" * 32)
    redact = Redactor.build(p, ["12"], ["+55 11 91234-5678"])
    assert redact("audio/12_frase.wav") == f"audio/{p.participant('12')}_frase.wav"
    assert redact("audio/x123.wav") == "audio/x123.wav"
    assert redact("call +55 11 91234-5678 now") == "call [redacted] now"


def test_session_fixtures_pseudonymize_with_the_test_key_not_the_developers(
    evaluation_root: Path,  # first: built before materialized_root, if neither is yet
    materialized_root: Path,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Session fixtures are set up before any test's own environment, so each sets the test
    key itself (``fixture_environment``). Planted: a developer key file where the fixtures would
    otherwise look, and no key in the environment, as when a session fixture is the first
    thing a worker builds."""
    planted = tmp_path / "developer"
    (planted / "spira_assets").mkdir(parents=True)
    (planted / "spira_assets" / "pseudonym.key").write_text(secrets.token_hex(32))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(planted))
    monkeypatch.delenv(KEY_ENV)
    with environment():
        assert pseudonym_key() != TEST_KEY  # the fault the fixtures must not have
    with fixture_environment(tmp_path_factory):
        assert pseudonym_key() == TEST_KEY
    expected = Pseudonymizer(TEST_KEY).key_id
    for root in (materialized_root, evaluation_root):
        stored = pl.read_parquet(root / "lake" / "validated_metadata" / "demo-*.parquet")
        assert set(stored.get_column("pseudonym_key_id")) == {expected}, root


def test_file_names_are_composed_before_redaction_and_id_shaped_tokens_are_redacted() -> None:
    p = Pseudonymizer("k" * 32)
    redact = Redactor.build(p, ["Jo\u00e3o-17", "SP0001"], [])
    joao, sp = p.participant("Jo\u00e3o-17"), p.participant("SP0001")
    # planted: a decomposed (macOS) name, a fullwidth one, one with a zero-width space inside
    assert redact.path(unicodedata.normalize("NFD", "a/Jo\u00e3o-17_frase.wav")) == (
        f"a/{joao}_frase.wav"
    )
    assert redact.path("a/\uff33\uff30\uff10\uff10\uff10\uff11.wav") == f"a/{sp}.wav"
    assert redact.path("a/SP\u200b0001.wav") == f"a/{sp}.wav"
    # a listed id however the file separates it
    for name in ("SP-0001", "sp_0001", "SP 0001", "SP.0001"):
        assert redact.path(f"a/{name}_frase.wav") == f"a/{sp}_frase.wav", name
    # ids nobody listed, by the default shape; words and short numbers stay readable
    for name, shown in [
        ("SP0002_frase.wav", "[redacted]_frase.wav"),
        ("patient_0042_frase.wav", "[redacted]_frase.wav"),
        ("HC-2024-0012.wav", "[redacted].wav"),
        ("4455667X.wav", "[redacted].wav"),
        ("11 91234-5678.ogg", "[redacted].ogg"),
        ("take2_frase.mp3", "take2_frase.mp3"),
        ("c01_aceite.wav", "c01_aceite.wav"),
        ("3f2a9c1e_1.wav", "3f2a9c1e_1.wav"),
    ]:
        assert redact.path(f"a/{name}") == f"a/{shown}", name
    # the site's id format catches what the default shape does not
    assert redact.path("a/ab12_frase.wav") == "a/ab12_frase.wav"
    site = Redactor.build(Pseudonymizer("k" * 32, r"[a-z]{2}\d{2}"), [], [])
    assert site.path("a/AB12_frase.wav") == "a/[redacted]_frase.wav"
    # details are not file names: only listed values are replaced there
    assert redact("RIFF size 123456 exceeds the file") == "RIFF size 123456 exceeds the file"
    assert redact("same bytes as a/SP-0001.wav") == f"same bytes as a/{sp}.wav"


def test_an_invalid_site_id_format_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="not a regular expression"):
        Pseudonymizer("k" * 32, "SP(\\d{4}")
