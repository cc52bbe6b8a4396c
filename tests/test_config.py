"""Loading and checking config files: the sample, the whole file, single values of every type,
the small tables, and where each problem is reported."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from relaybox.config import (
    AuthConfig,
    Config,
    ConfigError,
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    HealthConfig,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    RouteConfig,
    ServerConfig,
    UiConfig,
    UserConfig,
    check_config,
    default_config,
    load_config,
    model,
    sample_config_text,
)
from relaybox.config.positions import index_key_lines

from .support.configs import (
    errors_of,
    listener,
    only_error,
    write,
)


def test_sample_config_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, sample_config_text())
    config = load_config(path)
    default = default_config()
    assert config.source == path
    # hostname and state_dir are commented out in the sample, so they take the same
    # machine-dependent defaults as the embedded config.
    assert dataclasses.replace(config, source=None) == default


def test_every_setting_is_documented_in_the_sample() -> None:
    """A new field in the model must be added to sample-config.toml (commented out or not).

    Sections that are only shown as commented-out examples (`# [[users]]`) count too: their
    keys must appear in the example, and each is explained either by the comment just above
    its line or by a `# key: ...` paragraph.
    """
    text = sample_config_text()
    sections: dict[str, type] = {
        "server": ServerConfig,
        "limits": LimitsConfig,
        "log": LogConfig,
        "auth": AuthConfig,
        "listeners": ListenerConfig,
        "users": UserConfig,
        "dns": DnsConfig,
        "delivery": DeliveryConfig,
        "health": HealthConfig,
        "ui": UiConfig,
        "dkim": DkimConfig,
        "routes": RouteConfig,
    }
    blocks = dict.fromkeys(sections, "")
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"(?:# )?\[\[?(\w+)\]\]?\s*", line)
        if header:
            current = header.group(1)
        elif current:
            blocks[current] += line + "\n"
    assert {f.name for f in dataclasses.fields(Config)} - {"source"} == set(sections)
    for section, cls in sections.items():
        for field in dataclasses.fields(cls):
            if field.metadata.get("loaded"):
                continue  # filled in by the loader (a key read from its file), not a setting
            setting = re.search(rf"^#? ?{field.name} = ", blocks[section], re.MULTILINE)
            assert setting, f"[{section}] {field.name} is not in sample-config.toml"
            # The comment lines right above the setting, not counting commented-out settings.
            above = re.search(
                r"((?:^#(?! ?\w+ = ).*\n)+)\Z", blocks[section][: setting.start()], re.M
            )
            paragraph = re.search(rf"^# {field.name}: .*\n(?:^#  .*\n)*", text, re.M)
            documented = [m.group() for m in (above, paragraph) if m]
            assert any(re.search(r"Default|Required", doc) for doc in documented), (
                f"[{section}] {field.name} needs a comment saying what it does and its default"
            )


def test_sample_config_has_no_warnings(tmp_path: Path) -> None:
    assert check_config(write(tmp_path, sample_config_text())) == ([], [])


def test_unknown_key_is_reported_with_its_line_and_a_suggestion(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, '[server]\nmin_free_space_mb = 5\nhostnme = "mail.example.com"\n'
    )
    assert problem.line == 3
    assert problem.key == "server.hostnme"
    assert 'did you mean "hostname"?' in problem.message
    assert str(problem).startswith(f"{tmp_path / 'relaybox.toml'}:3: server.hostnme: unknown key")


def test_unknown_table_is_reported(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limit]\nmax_recipients = 5\n")
    assert (problem.key, problem.line) == ("limit", 1)
    assert '"limits"' in problem.message


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    text = (
        "[limits]\n"
        "max_recipients = 0\n"  # 2
        "\n"
        "[log]\n"
        'level = "loud"\n'  # 5
        "\n"
        + listener(
            'listen = ["127.0.0.1:2525"]',
            "allowed_networks = [",
            '  "192.168.1.0/24",',
            '  "not-a-network",',  # 11
            "]",
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    problems = caught.value.problems
    assert [(p.key, p.line) for p in problems] == [
        ("limits.max_recipients", 2),
        ("log.level", 5),
        ("listeners[0].allowed_networks[1]", 11),
    ]
    assert str(caught.value).splitlines() == [str(p) for p in problems]


def test_bool_is_not_accepted_where_a_number_is_expected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_recipients = true\n")
    assert problem.key == "limits.max_recipients"
    assert "whole number" in problem.message


def test_whole_number_is_accepted_for_a_decimal_setting(tmp_path: Path) -> None:
    limits = load_config(write(tmp_path, "[limits]\nidle_timeout = 60\n")).limits
    assert limits.idle_timeout == 60.0
    assert isinstance(limits.idle_timeout, float)


def test_out_of_range_limit_names_the_range(tmp_path: Path) -> None:
    problem = only_error(tmp_path, "[limits]\nmax_line_length = 50\n")
    assert "between 78 and 100000" in problem.message


def test_enum_value_lists_the_allowed_values(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[log]\nformat = "xml"\n')
    assert problem.key == "log.format"
    assert '"text", "json"' in problem.message


def test_invalid_hostname_is_rejected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[server]\nhostname = "mail_server.example.com"\n')
    assert "not a valid host name" in problem.message


def test_relative_paths_start_at_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = write(tmp_path, '[server]\nstate_dir = "state"\n[log]\nfile = "logs/relay.log"\n')
    config = load_config(path)
    assert config.server.state_dir == tmp_path / "state"
    assert config.log.file == tmp_path / "logs" / "relay.log"


def test_log_file_folder_must_exist(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[log]\nfile = "missing/relay.log"\n')
    assert "does not exist" in problem.message


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: file not found")


def test_toml_syntax_error_reports_its_line(tmp_path: Path) -> None:
    problem = only_error(tmp_path, '[server]\nmin_free_space_mb = 5\nhostname = = "x"\n')
    assert problem.line == 3
    assert "not valid TOML" in problem.message


def test_config_objects_are_frozen() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_recipients = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listeners[0].role = "submission"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.routes[0].transport = "reject"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.delivery.soft_bounce = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "message"),
    [
        (
            '[listeners]\nlisten = ["127.0.0.1:2525"]\n',
            "listeners",
            "write each listener as its own [[listeners]] block (with double square brackets), "
            "not [listeners]",
        ),
        (
            "listeners = []\n",
            "listeners",
            "relaybox needs at least one listener; add a [[listeners]] block with "
            'listen = ["127.0.0.1:2525"]',
        ),
        (
            "listeners = 5\n",
            "listeners",
            "must be [[listeners]] blocks, one per listener, each with its own listen = [...] line",
        ),
        (
            '[users]\nname = "alice"\n',
            "users",
            "write each user as its own [[users]] block (with double square brackets), not [users]",
        ),
        (
            "users = [1]\n",
            "users",
            "must be [[users]] blocks, one per user, each with its own name = ... and "
            "password_hash = ... lines (relaybox passwd NAME prints one)",
        ),
        (
            'routes = ["*"]\n',
            "routes",
            "must be [[routes]] blocks, one per route, each with its own domains = [...] and "
            "transport = ... lines",
        ),
        (
            '[dkim]\ndomain = "example.org"\n',
            "dkim",
            "write each key as its own [[dkim]] block (with double square brackets), with "
            "domain, selector and private_key lines (relaybox dkim keygen prints one)",
        ),
        (
            "dkim = 5\n",
            "dkim",
            "write each key as its own [[dkim]] block (with double square brackets), with "
            "domain, selector and private_key lines (relaybox dkim keygen prints one)",
        ),
    ],
)
def test_blocks_written_in_the_wrong_shape_are_explained(
    tmp_path: Path, text: str, key: str, message: str
) -> None:
    """Every array of tables is checked for its shape by one helper; each keeps its words."""
    problem = only_error(tmp_path, text)
    assert str(problem) == f"{tmp_path / 'relaybox.toml'}:1: {key}: {message}"


def test_empty_lists_of_users_and_dkim_keys_are_fine(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "users = []\ndkim = []\n"))
    assert config.users == () and config.dkim == ()


def test_a_dkim_key_read_from_its_file_cannot_be_written_as_a_setting(tmp_path: Path) -> None:
    """`DkimConfig.key` is filled in from `private_key` (its field says so), not read from the
    file: writing it is an unknown key, not a crash."""
    errors = errors_of(
        tmp_path,
        '[[dkim]]\ndomain = "example.org"\nselector = "s1"\nprivate_key = "k.pem"\nkey = "x"\n',
    )
    unknown = [e for e in errors if e.key == "dkim[0].key"]
    assert [(e.line, e.message.split(" (")[0]) for e in unknown] == [(5, "unknown key")]


def test_key_lines_follow_arrays_inline_tables_and_multiline_strings() -> None:
    """Every problem names a line; the scanner must count lines inside values it skips."""
    text = (
        "# a comment\n"
        "[server]\n"
        'hostname = """mail\n'
        '.example.org"""\n'
        "[[routes]]\n"
        "domains = [\n"
        '  "example.org",\n'
        '  "*.example.org",  # and its subdomains\n'
        "]\n"
        'rewrite_senders = { "a@b.example" = "c@example.org", "@x.example" = "d@example.org" }\n'
        "[[routes]]\n"
        'transport = "mx"\n'
    )
    lines = index_key_lines(text)
    assert lines("server") == 2
    assert lines("server.hostname") == 3
    assert lines("routes[0]") == 5
    assert lines("routes[0].domains[1]") == 8
    assert lines("routes[0].rewrite_senders.@x.example") == 10
    assert lines("routes[1].transport") == 12
    assert lines("routes[1].hosts[0]") == 11  # not written: its nearest written parent
    assert lines("limits.max_recipients") is None


def test_every_setting_in_the_model_has_a_docstring() -> None:
    """As in posting's config.py: reading model.py tells an admin what each setting does."""
    tree = ast.parse(inspect.getsource(model))
    undocumented = []
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        for statement, after in zip(cls.body, [*cls.body[1:], None], strict=True):
            if not isinstance(statement, ast.AnnAssign):
                continue
            if not (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                undocumented.append(f"{cls.name}.{ast.unparse(statement.target)}")
    assert undocumented == []
