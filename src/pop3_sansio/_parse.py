"""The server's command-line parser: one line (CRLF removed) in, one event out.

The keyword is looked up in the command table (``_commands.BY_KEYWORD``) and
the rest of the line goes to the parser of the row's argument shape. Every
argument is checked here, explicitly, against what the event's constructor
accepts, so the constructors never raise on a parsed line; anything that does
not fit is an ``UnknownCommand`` with reason ``"syntax"``. ``parse_command``
never raises (docs/architecture.md, invariant 3).
"""

from __future__ import annotations

from . import _events as ev
from ._base64 import b64decode_strict
from ._commands import BARE_COMMANDS, BY_KEYWORD, TAKES_ARGUMENTS, Args
from ._listing import MAX_NUMBER_DIGITS

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from ._commands import CommandSpec

    # A parser of one argument shape: (bytes after the keyword's space or None
    # when there was none, their UTF-8 text) -> the event, or None for a syntax error.
    _Parser = Callable[[bytes | None, str], ev.Command | None]

__all__ = ["parse_command"]

_HEX_DIGITS = "0123456789abcdefABCDEF"


def _is_mechanism(token: bytes) -> bool:
    # RFC 4422 section 3.1: 1-20 characters of A-Z, 0-9, "-" and "_" (any
    # case accepted on receipt; it is upper-cased). bytes.isalnum is ASCII-only.
    rest = token.translate(None, b"-_")
    return 0 < len(token) <= 20 and (not rest or rest.isalnum())


def _is_digest(text: str) -> bool:
    # RFC 1939 section 7: the APOP digest is 32 hexadecimal digits.
    return len(text) == 32 and text.isascii() and not text.strip(_HEX_DIGITS)


def _msg_number(token: bytes) -> int | None:
    # A message number is 1 or more (RFC 1939 section 5), at most 20 digits.
    if 0 < len(token) <= MAX_NUMBER_DIGITS and token.isdigit():
        value = int(token)
        if value >= 1:
            return value
    return None


def _line_count(token: bytes) -> int | None:
    # TOP's line count may be 0 (RFC 1939 section 7).
    if 0 < len(token) <= MAX_NUMBER_DIGITS and token.isdigit():
        return int(token)
    return None


# One parser per argument shape (``_Parser``). Each gets the argument bytes after
# the keyword's space (``None`` when there was no space) and their UTF-8 text,
# and returns the event or ``None`` for a syntax error.


def _none(bare: ev.Command) -> _Parser:
    # Only called without a space: a space after such a keyword is refused
    # before (it is not in TAKES_ARGUMENTS).
    def parse(rest: bytes | None, text: str) -> ev.Command | None:
        return bare

    return parse


def _opt_msg(kind: type[ev.List | ev.Uidl], bare: ev.Command) -> _Parser:
    def parse(rest: bytes | None, text: str) -> ev.Command | None:
        if rest is None:
            return bare
        msg = _msg_number(rest)
        return None if msg is None else kind(msg)

    return parse


def _msg(kind: type[ev.Retr | ev.Dele]) -> _Parser:
    def parse(rest: bytes | None, text: str) -> ev.Command | None:
        msg = None if rest is None else _msg_number(rest)
        return None if msg is None else kind(msg)

    return parse


def _name(rest: bytes | None, text: str) -> ev.Command | None:
    return ev.User(text) if text else None


def _secret(rest: bytes | None, text: str) -> ev.Command | None:
    # RFC 1939 section 7: spaces may be part of the secret; an empty one is
    # allowed, a missing one is not.
    return None if rest is None else ev.Pass(text)


def _name_digest(rest: bytes | None, text: str) -> ev.Command | None:
    name, _, digest = text.rpartition(" ")
    # The name is not empty and has no space; the digest is 32 hex digits.
    if not name or " " in name or not _is_digest(digest):
        return None
    return ev.Apop(name, digest)


def _msg_lines(rest: bytes | None, text: str) -> ev.Command | None:
    args = [] if rest is None else rest.split(b" ")
    if len(args) != 2:
        return None
    msg, count = _msg_number(args[0]), _line_count(args[1])
    return None if msg is None or count is None else ev.Top(msg, count)


def _auth(rest: bytes | None, text: str) -> ev.Command | None:
    if rest is None:
        return BARE_COMMANDS["AUTH"]
    args = rest.split(b" ")
    if len(args) > 2 or not _is_mechanism(args[0]):
        return None
    mechanism = args[0].decode("ascii").upper()
    if len(args) == 1:
        return ev.Auth(mechanism)
    # RFC 5034 section 4: "=" stands for an empty initial response.
    decoded = b"" if args[1] == b"=" else b64decode_strict(args[1])
    return None if decoded is None else ev.Auth(mechanism, decoded)


def _parser(keyword: str, spec: CommandSpec) -> _Parser:
    """The parser of a row's argument shape."""
    args = spec.args
    if args is Args.NONE:
        return _none(BARE_COMMANDS[keyword])
    if args is Args.OPT_MSG:
        return _opt_msg(spec.event, BARE_COMMANDS[keyword])
    if args is Args.MSG:
        return _msg(spec.event)
    return {
        Args.NAME: _name,
        Args.SECRET: _secret,
        Args.NAME_DIGEST: _name_digest,
        Args.MSG_LINES: _msg_lines,
        Args.AUTH: _auth,
    }[args]


_PARSERS: dict[str, _Parser] = {
    keyword: _parser(keyword, spec) for keyword, spec in BY_KEYWORD.items()
}
"""Keyword -> the parser of its arguments (built from the table, before the parser)."""


def _syntax(keyword: str, line: bytes) -> ev.UnknownCommand:
    return ev.UnknownCommand(keyword, line, "syntax")


def parse_command(line: bytes) -> ev.Command | ev.UnknownCommand:
    """Parse one command line (CRLF removed) into an event; never raises."""
    space = line.find(b" ")
    word = line if space < 0 else line[:space]
    # Upper-case ASCII keywords only. str.upper() of a Latin-1 word can
    # produce ASCII ("PA\xdf" -> "PASS"), so a non-ASCII word would be taken
    # for a command; it stays as it is and is an unknown command.
    keyword = word.decode("latin-1")
    if word.isascii():
        keyword = keyword.upper()
    rest = None if space < 0 else line[space + 1 :]
    if b"\0" in line or b"\r" in line:
        return _syntax(keyword, line)
    try:
        text = "" if rest is None else rest.decode("utf-8")
    except UnicodeDecodeError:
        return _syntax(keyword, line)
    parser = _PARSERS.get(keyword)
    if parser is None:
        return ev.UnknownCommand(keyword, line, "unknown")
    if rest is not None and keyword not in TAKES_ARGUMENTS:
        return _syntax(keyword, line)
    command = parser(rest, text)
    return _syntax(keyword, line) if command is None else command
