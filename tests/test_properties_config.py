"""Properties of the config loader: any text in the config file gives a `Config` or a
`ConfigError` whose every problem is one line naming the key (or the line) and saying what
to do; never a traceback.

Documents are drawn from relaybox's own table and key names with values of every TOML type
(the readers' type checks and rules), and from the sample config with random edits (syntax
errors, cut values).
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import tempfile
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import tomlkit
from hypothesis import given
from hypothesis import strategies as st

from relaybox.config import ConfigError, load_config, sample_config_text
from relaybox.config.model import Config

from .support.properties import budget


def _table_keys() -> dict[str, list[str]]:
    """Each top-level table or array of tables, with the keys its dataclass reads."""
    hints = typing.get_type_hints(Config, include_extras=False)
    tables: dict[str, list[str]] = {}
    for field in dataclasses.fields(Config):
        kind = hints[field.name]
        if typing.get_origin(kind) is tuple:
            kind = typing.get_args(kind)[0]
        if dataclasses.is_dataclass(kind):
            tables[field.name] = [f.name for f in dataclasses.fields(kind)]
    return tables


TABLES = _table_keys()
ARRAYS = {"listeners", "users", "routes", "dkim"}

_WORDS = [
    "",
    " ",
    "127.0.0.1:2525",
    "[::1]:25",
    "0.0.0.0:0",
    "localhost:99999",
    "192.168.0.0/16",
    "10.0.0.1/33",
    "example.org",
    "*.example.org",
    "*",
    "a@b.example",
    "relay",
    "submission",
    "starttls",
    "implicit",
    "none",
    "reject",
    "normalize",
    "hold",
    "mx",
    "smarthost",
    "off",
    "warn",
    "debug",
    "json",
    "rsa-sha256",
    "/nonexistent/file.pem",
    "/dev/null",
    ".",
    "$scrypt$16384$8$1$AAAA$BBBB",
    "line\nbreak",
    "nul\x00",
    "\x1b[2J",
    "é",
    "1e999",
]
scalars = st.one_of(
    st.sampled_from(_WORDS),
    st.text(max_size=12),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 25, 65536, 2**31]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=datetime.datetime(1, 1, 2), max_value=datetime.datetime(9999, 12, 30)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["host", "port", "x", "name"]), inner, max_size=2),
    ),
    max_leaves=6,
)
"""TOML values of every type, nested a little (lists of hosts, inline tables)."""


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A TOML document of relaybox's tables and keys (and some unknown ones), any values."""
    doc: dict[str, Any] = {}
    for name in draw(st.lists(st.sampled_from([*TABLES, "bogus"]), max_size=4, unique=True)):
        keys = TABLES.get(name, ["x"]) + ["unknown_key"]

        def table(keys: list[str] = keys) -> dict[str, Any]:
            chosen = draw(st.lists(st.sampled_from(keys), max_size=4, unique=True))
            return {key: draw(values) for key in chosen}

        if name in ARRAYS:
            doc[name] = [table() for _ in range(draw(st.integers(0, 2)))]
        else:
            doc[name] = draw(st.one_of(st.builds(table), values)) if name != "bogus" else table()
    if draw(st.booleans()):
        doc[draw(st.sampled_from(["listen", "hostname"]))] = draw(values)
    return tomlkit.dumps(doc)


def _every_key_set() -> str:
    """The sample config with its commented-out settings set and its comments gone: every
    documented key with an example value, in a tenth of the text (tomlkit takes about 0.5 s
    for the whole commented sample on a busy machine)."""
    lines = []
    for line in sample_config_text().splitlines():
        setting = re.fullmatch(r"#\s?(\[\[?[a-z_]+\]\]?|[a-z_]+ = .*)", line)
        if setting is not None:
            line = setting.group(1)
        elif line.startswith("#") or not line.strip():
            continue
        try:
            tomllib.loads(line)
        except tomllib.TOMLDecodeError:
            continue  # a comment that only looks like a setting
        lines.append(line)
    return "\n".join(lines) + "\n"


EVERY_KEY_SET = _every_key_set()


@st.composite
def edited_samples(draw: st.DrawFn) -> str:
    """The sample's settings with a few random cuts and insertions: syntax errors, cut values."""
    text = EVERY_KEY_SET
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 40))
        insert = draw(
            st.one_of(
                st.sampled_from(['"', "[", "]", "=", "\n", "#", "'''", "\x00"]), st.text(max_size=6)
            )
        )
        text = text[:at] + insert + text[at + cut :]
    return text


def _check(text: str) -> None:
    """Load `text` as a config file: a Config, or problems an admin can act on."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "relaybox.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            config = load_config(path)
        except ConfigError as err:
            assert err.problems
            for problem in err.problems:
                shown = str(problem)
                assert "\n" not in shown and "\r" not in shown, shown
                assert problem.message.strip(), problem
                assert problem.key or problem.line is not None or problem.message, problem
                assert "Traceback" not in shown
            return
        assert isinstance(config, Config) and config.source == path


@budget(60)
@given(text=documents())
def test_any_document_of_relaybox_keys_loads_or_names_its_problems(text: str) -> None:
    _check(text)


@budget(100)
@given(text=edited_samples())
def test_any_edit_of_the_sample_loads_or_names_its_problems(text: str) -> None:
    _check(text)


@budget(100)
@given(text=st.text(max_size=200))
def test_any_text_loads_or_names_its_problems(text: str) -> None:
    _check(text)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        (
            '[[routes]]\ndomains = ["*"]\ntransport = "smarthost"\nhosts = ["a.example"]',
            "routes[0].ca_file",
        ),
        ("[server]", "server.state_dir"),
        ("[log]", "log.file"),
        (
            '[[listeners]]\nlisten = ["127.0.0.1:2525"]\ntls = "starttls"',
            "listeners[0].certificate",
        ),
    ],
)
def test_a_path_with_a_nul_is_a_problem_naming_its_key(
    tmp_path: Path, table: str, key: str
) -> None:
    """Found by the fuzz run: `ca_file = "a\\u0000b"` ended in "ValueError: embedded null
    byte" from os.stat() instead of a problem in the file."""
    name = key.rsplit(".", 1)[1]
    path = tmp_path / "relaybox.toml"
    path.write_text(f'{table}\n{name} = "a\\u0000b"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert any(p.key == key and "NUL" in p.message for p in refused.value.problems), refused.value
