"""Loading and checking config files: the sample, every kind of mistake, and the warnings."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest

from relaybox.config import (
    Config,
    ConfigError,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    Problem,
    ServerConfig,
    SocketAddress,
    check_config,
    default_config,
    load_config,
    sample_config_text,
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaybox.toml"
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, _ = check_config(write(tmp_path, text))
    return errors


def warnings_of(tmp_path: Path, text: str) -> list[Problem]:
    errors, warnings = check_config(write(tmp_path, text))
    assert errors == []
    return warnings


def only_error(tmp_path: Path, text: str) -> Problem:
    errors = errors_of(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


def listener(*lines: str) -> str:
    return "[[listeners]]\n" + "\n".join(lines) + "\n"


def test_sample_config_loads_and_equals_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, sample_config_text())
    config = load_config(path)
    default = default_config()
    assert config.source == path
    # hostname and state_dir are commented out in the sample, so they take the same
    # machine-dependent defaults as the embedded config.
    assert dataclasses.replace(config, source=None) == default


def test_every_setting_is_documented_in_the_sample() -> None:
    """A new field in the model must be added to sample-config.toml (commented out or not)."""
    text = sample_config_text()
    blocks = dict.fromkeys(["server", "limits", "log", "listeners"], "")
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[\[?(\w+)\]\]?\s*", line)
        if header:
            current = header.group(1)
        elif current:
            blocks[current] += line + "\n"
    sections: dict[str, type] = {
        "server": ServerConfig,
        "limits": LimitsConfig,
        "log": LogConfig,
        "listeners": ListenerConfig,
    }
    assert {f.name for f in dataclasses.fields(Config)} - {"source"} == set(sections)
    for section, cls in sections.items():
        for field in dataclasses.fields(cls):
            setting = re.search(rf"^#? ?{field.name} = ", blocks[section], re.MULTILINE)
            assert setting, f"[{section}] {field.name} is not in sample-config.toml"
            comment = re.search(r"((?:^#.*\n)+)\Z", blocks[section][: setting.start()], re.M)
            assert comment and re.search(r"Default|Required", comment.group(1)), (
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


def test_bad_network_is_rejected_with_an_example(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["192.168.1/24"]')
    )
    assert problem.key == "listeners[0].allowed_networks[0]"
    assert "is not a network" in problem.message
    assert "192.168.1.0/24" in problem.message


def test_network_with_host_bits_set_suggests_the_network(tmp_path: Path) -> None:
    problem = only_error(
        tmp_path, listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["10.0.0.1/8"]')
    )
    assert '"10.0.0.0/8"' in problem.message
    assert '"10.0.0.1/32"' in problem.message


def test_single_address_is_a_network_of_one(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["127.0.0.1", "::1"]'),
    )
    networks = load_config(path).listeners[0].allowed_networks
    assert networks == (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))


def test_port_out_of_range_is_rejected(tmp_path: Path) -> None:
    problem = only_error(tmp_path, listener('listen = ["127.0.0.1:70000"]'))
    assert problem.key == "listeners[0].listen[0]"
    assert "0 to 65535" in problem.message


def test_port_zero_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, listener('listen = ["127.0.0.1:0", "127.0.0.1:0"]'))
    assert load_config(path).listeners[0].listen == (SocketAddress("127.0.0.1", 0),) * 2


def test_ipv6_listen_address_is_written_in_brackets(tmp_path: Path) -> None:
    path = write(tmp_path, listener('listen = ["[::1]:2525", "[::]:25"]'))
    assert load_config(path).listeners[0].listen == (
        SocketAddress("::1", 2525),
        SocketAddress("::", 25),
    )
    problem = only_error(tmp_path, listener('listen = ["::1:2525"]'))
    assert "square brackets" in problem.message


def test_host_name_instead_of_ip_address_is_explained(tmp_path: Path) -> None:
    problem = only_error(tmp_path, listener('listen = ["localhost:2525"]'))
    assert '"localhost" is not an IP address' in problem.message
    assert "127.0.0.1" in problem.message


def test_same_address_in_two_listeners_is_an_error(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:2525"]') + listener('listen = ["127.0.0.1:2525"]')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("listeners[1].listen[0]", 4)
    assert "listeners[0]" in problem.message


def test_listener_without_listen_is_named_by_index(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:25"]') + listener('role = "relay"')
    problem = only_error(tmp_path, text)
    assert (problem.key, problem.line) == ("listeners[1]", 3)
    assert '"listen"' in problem.message


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


def test_file_without_listeners_gets_the_default_listener(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[limits]\nmax_recipients = 10\n"))
    assert config.listeners == default_config().listeners


def test_exposed_relay_trusting_loopback_is_warned_about(tmp_path: Path) -> None:
    text = listener(
        'listen = ["0.0.0.0:25"]', 'allowed_networks = ["192.168.1.0/24", "127.0.0.0/8"]'
    )
    [warning] = warnings_of(tmp_path, text)
    assert (warning.key, warning.line) == ("listeners[0].allowed_networks[1]", 3)
    assert "proxy" in warning.message


def test_network_wider_than_slash_8_is_warned_about(tmp_path: Path) -> None:
    text = listener('listen = ["127.0.0.1:25"]', 'allowed_networks = ["16.0.0.0/4"]')
    [warning] = warnings_of(tmp_path, text)
    assert warning.key == "listeners[0].allowed_networks[0]"
    assert "open relay" in warning.message


def test_relay_without_allowed_networks_is_warned_about(tmp_path: Path) -> None:
    [warning] = warnings_of(tmp_path, listener('listen = ["127.0.0.1:25"]'))
    assert warning.key == "listeners[0]"
    assert "no client may" in warning.message


def test_config_objects_are_frozen() -> None:
    config = default_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.limits.max_recipients = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.listeners[0].role = "submission"  # type: ignore[misc]
