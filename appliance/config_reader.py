"""Typed access to one parsed config.ini: every getter raises ConfigError naming section and
key, and remembers the keys asked for, so a key no section reader asks for is reported as
unknown (each key is declared once, where it is read: appliance/config.py and, for the
actions' sections, appliance/config_actions.py). This is the one reader of config.ini.

An empty number or true/false (``timeout_ms =``) means "not set": the default."""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from pathlib import Path

from .config_error import ConfigError
from .config_types import E164, PHRASE_KEYS


class Reader:
    """Typed access to one parsed file; every getter raises ConfigError with section and key."""

    def __init__(self, parser: configparser.ConfigParser, root: Path) -> None:
        self.p, self.root = parser, root
        self.known: dict[str, set[str]] = {}     # every key a section reader asked for

    @classmethod
    def of(cls, sections: Mapping[str, Mapping[str, str]], root: Path = Path(".")) -> Reader:
        """A reader of sections given as dicts (tests; one section read on its own)."""
        parser = _new_parser()
        parser.read_dict(sections)
        return cls(parser, root)

    def keys(self, section: str) -> list[str]:
        return self.p.options(section) if self.p.has_section(section) else []

    def check_unknown_keys(self, other_sections: tuple[str, ...] = ()) -> None:
        """After every section was read: a section or key nobody read is a mistake."""
        for section in self.p.sections():
            if section in other_sections:
                continue
            if section not in self.known:
                known = sorted((*self.known, *other_sections))
                raise ConfigError(section, None, f"unknown section; known sections: "
                                                 f"{', '.join(known)}")
            for key in self.p.options(section):
                if key not in self.known[section]:
                    raise ConfigError(section, key, f"unknown key; known keys: "
                                                    f"{', '.join(sorted(self.known[section]))}")

    def raw(self, section: str, key: str, default: str) -> str:
        self.known.setdefault(section, set()).add(key)
        if self.p.has_option(section, key):
            return self.p.get(section, key).strip()
        return default

    def str(self, section: str, key: str, default: str = "") -> str:
        return self.raw(section, key, default)

    def int(self, section: str, key: str, default: int, lo: int | None = None,
            hi: int | None = None) -> int:
        text = self.raw(section, key, "") or str(default)
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(section, key, f"{text!r} is not a whole number") from None
        return self._bounded(section, key, value, lo, hi)

    def float(self, section: str, key: str, default: float, lo: float | None = None,
              hi: float | None = None) -> float:
        text = self.raw(section, key, "") or str(default)
        try:
            value = float(text)
        except ValueError:
            raise ConfigError(section, key, f"{text!r} is not a number") from None
        return self._bounded(section, key, value, lo, hi)

    def bool(self, section: str, key: str, default: bool) -> bool:
        text = self.raw(section, key, "").lower() or ("true" if default else "false")
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(section, key, f"{text!r} is not true/false")

    def choice(self, section: str, key: str, default: str, options: tuple[str, ...]) -> str:
        value = self.raw(section, key, default).lower()
        if value not in options:
            raise ConfigError(section, key, f"{value!r} must be one of {', '.join(options)}")
        return value

    def path(self, section: str, key: str, default: str) -> Path:
        value = Path(os.path.expanduser(self.raw(section, key, default)))
        return value if value.is_absolute() else (self.root / value)

    def optional_path(self, section: str, key: str) -> Path | None:
        """A path that may be left empty (None); relative ones are relative to config.ini."""
        return self.path(section, key, "") if self.raw(section, key, "") else None

    def phone(self, section: str, key: str, default: str = "") -> str:
        value = self.raw(section, key, default).replace(" ", "").replace("-", "")
        if value and not E164.match(value):
            raise ConfigError(section, key, f"{value!r} is not an E.164 number like +972501234567")
        return value

    @staticmethod
    def _bounded(section, key, value, lo, hi):
        if lo is not None and value < lo:
            raise ConfigError(section, key, f"{value} is below the minimum {lo}")
        if hi is not None and value > hi:
            raise ConfigError(section, key, f"{value} is above the maximum {hi}")
        return value


def read_secrets_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ConfigError("server", "secrets_file", f"{path} line {number} is not KEY=VALUE")
        values[name.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def parse_file(config_path: Path) -> configparser.ConfigParser:
    if not config_path.is_file():
        raise ConfigError("file", None, f"{config_path} does not exist; copy config.ini from the "
                                        "repository or pass --config PATH")
    parser = _new_parser()
    try:
        parser.read(config_path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ConfigError("file", None, f"{config_path} cannot be parsed: {exc}") from None
    return parser


def _new_parser() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    parser.optionxform = str  # keys are case-sensitive, as documented
    return parser


def read_phrases_file(path: Path) -> dict[str, dict[str, str]]:
    """language -> phrase key -> text, from a phrases file (appliance/phrases.ini's format:
    one section per language code, keys from config_types.PHRASE_KEYS)."""
    parser = parse_file(path)
    book: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        for key in parser.options(section):
            if key not in PHRASE_KEYS:
                raise ConfigError(f"{path.name} {section}", key,
                                  f"unknown phrase; phrases are {', '.join(PHRASE_KEYS)}")
        book[section] = {key: parser.get(section, key).strip()
                         for key in parser.options(section)}
    return book


def read_phrase_sections(r: Reader) -> dict[str, dict[str, str]]:
    """config.ini's [phrases_<language>] sections (only the keys set there)."""
    book: dict[str, dict[str, str]] = {}
    for section in r.p.sections():
        if section.startswith("phrases_"):
            texts = {key: r.str(section, key) for key in PHRASE_KEYS}
            book[section.removeprefix("phrases_")] = {k: v for k, v in texts.items() if v}
    return book
