"""Textual themes from TOML files: the repo's `themes/` and the admin's own.

A theme file holds `textual.theme.Theme`'s fields (name, primary, ..., dark, [variables]).
A broken file is reported and skipped; the UI never fails to start over a colour.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from textual.theme import Theme

__all__ = ["DEFAULT_THEME", "ThemeError", "load_theme", "load_themes", "theme_dirs"]

DEFAULT_THEME = "relaybox-dark"


class ThemeError(ValueError):
    """A theme file that cannot be used; the message names the file and the problem."""


def theme_dirs(config_dir: Path | None) -> list[Path]:
    """Where themes are looked for: the package's own (`relaybox/themes` in an installed
    wheel, the repository's `themes/` in a checkout), then the config directory's `themes/`
    (later files of the same name win)."""
    package = Path(__file__).resolve().parents[1]
    dirs = [package / "themes"]
    if (package.parent / "pyproject.toml").is_file():  # a checkout, not site-packages
        dirs.append(package.parent / "themes")
    if config_dir is not None:
        dirs.append(config_dir / "themes")
    return dirs


def load_theme(path: Path) -> Theme:
    """One theme file; raises ThemeError naming the file and what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ThemeError(f"{path}: {exc}") from None
    fields = set(Theme.__dataclass_fields__)
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ThemeError(
            f"{path}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(fields))})"
        )
    if not isinstance(data.get("name"), str) or not isinstance(data.get("primary"), str):
        raise ThemeError(f"{path}: a theme needs at least `name` and `primary` (strings)")
    try:
        theme = Theme(**data)
        theme.to_color_system().generate()  # a bad colour fails here, not at first paint
    except Exception as exc:
        raise ThemeError(f"{path}: {exc}") from None
    return theme


def load_themes(dirs: list[Path]) -> tuple[list[Theme], list[str]]:
    """Every usable theme in `dirs`, and a message for each file that is not."""
    themes: dict[str, Theme] = {}
    problems: list[str] = []
    for directory in dirs:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.toml")):
            try:
                theme = load_theme(path)
            except ThemeError as exc:
                problems.append(str(exc))
            else:
                themes[theme.name] = theme
    return list(themes.values()), problems
