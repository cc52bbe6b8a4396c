"""relaybox configuration: the frozen model, loading and checking TOML files, and the sample file.

Import from here rather than from the submodules.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from relaybox.config.checks.users import check_user_name
from relaybox.config.load import (
    check_config,
    load_config,
    load_config_text,
    load_config_with_warnings,
)
from relaybox.config.model import (
    APP_NAME,
    DEFAULT_LISTENER,
    DEFAULT_ROUTE,
    AuthConfig,
    Config,
    DeliveryConfig,
    DkimConfig,
    DnsConfig,
    HealthConfig,
    HostPort,
    LimitsConfig,
    ListenerConfig,
    LogConfig,
    RouteConfig,
    RouteTls,
    ServerConfig,
    SocketAddress,
    Transport,
    UiConfig,
    UserConfig,
    default_config,
    default_config_path,
    default_state_dir,
)
from relaybox.config.problems import ConfigError, Problem
from relaybox.config.secrets import read_route_password

__all__ = [
    "APP_NAME",
    "DEFAULT_LISTENER",
    "DEFAULT_ROUTE",
    "AuthConfig",
    "Config",
    "ConfigError",
    "DeliveryConfig",
    "DkimConfig",
    "DnsConfig",
    "HealthConfig",
    "HostPort",
    "LimitsConfig",
    "ListenerConfig",
    "LogConfig",
    "Problem",
    "RouteConfig",
    "RouteTls",
    "ServerConfig",
    "SocketAddress",
    "Transport",
    "UiConfig",
    "UserConfig",
    "check_config",
    "check_user_name",
    "default_config",
    "default_config_path",
    "default_state_dir",
    "load_config",
    "load_config_text",
    "load_config_with_warnings",
    "read_route_password",
    "sample_config_text",
]

_SAMPLE_NAME = "sample-config.toml"


def sample_config_text() -> str:
    """The commented sample config, for `relaybox init` and the docs.

    An installed wheel carries the file inside the package (see `force-include` in
    pyproject.toml); a source checkout or editable install has it at the repository root.
    """
    packaged = importlib.resources.files("relaybox") / _SAMPLE_NAME
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parents[2] / _SAMPLE_NAME).read_text(encoding="utf-8")
