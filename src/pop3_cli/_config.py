"""``pop3 fetch``'s accounts: the command line merged with the config file.

The config file is TOML (read with ``tomllib``)::

    [defaults]              # optional: keys every account starts from
    keep = true

    [accounts.work]         # one table per account, fetched in file order
    host = "pop.example.org"
    user = "alice"
    password_command = "pass show mail/work"
    maildir = "~/Mail/work"

Every key is a long option of ``pop3 fetch`` with its dashes turned into
underscores, and nothing else: the keys allowed, and how each value is
checked, come from the command's argparse parser itself (the option's type
function, its choices, whether it is a flag), so an option added to the
command is a config key at once. A value is a TOML string, or a number
where the option takes one, or ``true``/``false`` for a flag. A path (an
option whose metavar is ``FILE`` or ``DIR``) may start with ``~``, and a
relative one is relative to the config file's directory.

Options given on the command line override the file (for every account),
an option of a mutually exclusive group overriding the file's choice in that
group (``--implicit-tls`` over ``starttls = true``). Options that say how to
run rather than what an account is (``--config``, ``--account``,
``--status``, ``--daemon``, ``-v``, ``-q``) are not config keys.

The file holds passwords or the commands that print them, so it is read
with the same checks as a password file (``_secretfile``): it must belong
to you and not be readable or writable by the group or others.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass
from typing import Any

from ._errors import CliError, UsageError
from ._secretfile import read_secret_file

__all__ = ["RUN_OPTIONS", "Account", "default_config_path", "resolve_accounts"]

RUN_OPTIONS = frozenset({"help", "config", "account", "status", "daemon", "verbose", "quiet"})
"""Long options (as keys) that say how to run, not what an account is: not config keys."""

_PATH_METAVARS = ("FILE", "DIR")


@dataclass
class Account:
    """One account to fetch: its name and its complete options."""

    name: str
    """The config file's table name, or ``USER@HOST`` for an account of the command line."""
    options: argparse.Namespace
    """What ``run_fetch`` reads: every option of ``pop3 fetch``, merged."""


def default_config_path() -> str:
    """``$XDG_CONFIG_HOME/pop3/fetch.toml`` (``~/.config/pop3/fetch.toml`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "pop3", "fetch.toml")


def _key(action: argparse.Action) -> str | None:
    """The config key of ``action``: its long option without dashes, or ``None``."""
    for option in action.option_strings:
        if option.startswith("--"):
            key = option[2:].replace("-", "_")
            return None if key in RUN_OPTIONS else key
    return None


def config_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The keys an account table may hold, with the option each one stands for."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        key = _key(action)
        if key is not None:
            keys[key] = action
    return keys


class _Where:
    """Names a place in the config file in error messages."""

    def __init__(self, path: str, table: str) -> None:
        self.path = path
        self.table = table

    def error(self, key: str, message: str) -> CliError:
        return UsageError(f"{self.path}: {self.table}: {key}: {message}")


def _convert(action: argparse.Action, key: str, value: object, where: _Where) -> object:
    """``value`` of the file for ``action``, checked as argparse checks the option."""
    if isinstance(action, argparse.BooleanOptionalAction):
        # --received / --no-received: the key is the positive name.
        if not isinstance(value, bool):
            raise where.error(key, "expected true or false")
        return value
    if action.nargs == 0:
        # A flag (store_true, store_false): ``true`` gives it, ``false`` leaves the default.
        if not isinstance(action.const, bool):
            raise where.error(key, "is not a config key")  # pragma: no cover - no such option
        if not isinstance(value, bool):
            raise where.error(key, "expected true or false")
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        if not isinstance(value, list):
            raise where.error(key, "expected a list")
        return [_scalar(action, key, item, where) for item in value]
    return _scalar(action, key, value, where)


def _scalar(action: argparse.Action, key: str, value: object, where: _Where) -> object:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise where.error(key, "expected a string" if action.type is None else "expected a value")
    if not isinstance(value, str) and action.type is None:
        raise where.error(key, "expected a string")
    text = str(value)
    if action.metavar in _PATH_METAVARS:
        text = os.path.join(os.path.dirname(where.path), os.path.expanduser(text))
    converted: object = text
    if action.type is not None:
        convert: Any = action.type
        try:
            converted = convert(text)
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise where.error(key, str(exc) or "invalid value") from None
    if action.choices is not None and converted not in action.choices:
        shown = ", ".join(map(str, action.choices))
        raise where.error(key, f"expected one of {shown}")
    return converted


def _groups(parser: argparse.ArgumentParser) -> list[list[str]]:
    """The destinations of each mutually exclusive group of ``parser``."""
    return [[a.dest for a in g._group_actions] for g in parser._mutually_exclusive_groups]


def _table(parser: argparse.ArgumentParser, table: object, where: _Where) -> dict[str, object]:
    """The options an account (or ``[defaults]``) table sets, by destination."""
    if not isinstance(table, dict):
        raise UsageError(f"{where.path}: {where.table} is not a table")
    keys = config_keys(parser)
    values: dict[str, object] = {}
    for key, value in table.items():
        action = keys.get(key)
        if action is None:
            hint = (
                " (it says how to run: give it on the command line)" if key in RUN_OPTIONS else ""
            )
            raise where.error(key, f"unknown key{hint}")
        values[action.dest] = _convert(action, key, value, where)
    for group in _groups(parser):
        chosen = [
            dest for dest in group if dest in values and values[dest] != _default(parser, dest)
        ]
        if len(chosen) > 1:
            raise UsageError(
                f"{where.path}: {where.table}: {' and '.join(chosen)} cannot be used together"
            )
    return values


def _default(parser: argparse.ArgumentParser, dest: str) -> object:
    for action in parser._actions:
        if action.dest == dest:
            return action.default
    raise AssertionError(dest)  # pragma: no cover


def _overlay(
    parser: argparse.ArgumentParser, base: dict[str, object], top: dict[str, object]
) -> dict[str, object]:
    """``base`` with ``top`` over it; an option of ``top`` replaces ``base``'s choice in its
    mutually exclusive group."""
    merged = dict(base)
    for group in _groups(parser):
        if any(dest in top and top[dest] != _default(parser, dest) for dest in group):
            for dest in group:
                merged.pop(dest, None)
    merged.update(top)
    return merged


def _load(path: str) -> dict[str, Any]:
    text = read_secret_file(path, "the config file", private=True)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def resolve_accounts(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Account]:
    """The accounts to fetch, in order, each with every option of ``parser`` set.

    ``args`` is the parsed command line; ``args.given`` the destinations it
    gave explicitly (``_main.given_options``). The config file is ``--config``,
    or the default one (if it exists) when no ``--host`` is given. Raises
    ``UsageError`` (exit 2) for a bad file, an unknown account or a missing
    required option, naming the file, the account and the key.
    """
    given_dests: set[str] = getattr(args, "given", None) or {
        a.dest for a in parser._actions if getattr(args, a.dest, None) != a.default
    }
    given = {dest: getattr(args, dest) for dest in given_dests if hasattr(args, dest)}
    defaults = {a.dest: a.default for a in parser._actions if a.dest != "help"}
    path = args.config
    if path is None and args.host is None:
        candidate = default_config_path()
        if os.path.exists(candidate):
            path = candidate
    tables: list[tuple[str, dict[str, object]]] = []
    if path is None:
        if args.account:
            raise UsageError("--account needs a config file (--config FILE)")
        tables.append(("", {}))
    else:
        data = _load(path)
        for key in data:
            if key not in ("accounts", "defaults"):
                raise UsageError(
                    f"{path}: unknown table or key {key!r} (expected [accounts.NAME] and "
                    "[defaults])"
                )
        common = _table(parser, data.get("defaults", {}), _Where(path, "[defaults]"))
        accounts = data.get("accounts", {})
        if not isinstance(accounts, dict) or not accounts:
            raise UsageError(f"{path}: no [accounts.NAME] table")
        names = list(accounts) if not args.account else list(dict.fromkeys(args.account))
        for name in names:
            if name not in accounts:
                raise UsageError(f"{path}: no account {name!r} (it has {', '.join(accounts)})")
            own = _table(parser, accounts[name], _Where(path, f"account {name!r}"))
            tables.append((name, _overlay(parser, common, own)))
    result = []
    for name, values in tables:
        merged = _overlay(parser, {**defaults, **values}, given)
        options = argparse.Namespace(**{**vars(args), **merged})
        label = name or f"{options.user}@{options.host}"
        for required in getattr(parser, "required_later", []):
            if all(getattr(options, dest) is None for dest in required):
                flags = " or ".join("--" + d.replace("_", "-") for d in required)
                where = f"{path}: account {name!r}: " if path is not None else ""
                raise UsageError(f"{where}{flags} is required")
        result.append(Account(label, options))
    return result
