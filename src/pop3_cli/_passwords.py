"""Where ``pop3 fetch`` gets the secret it logs in with.

One source per account, from the options ``--password-env VAR``,
``--password-file FILE``, ``--password-command CMD``, ``--password-keyring
SERVICE`` and ``--oauth2-token-command CMD``; with none of them, the password
is asked for on the terminal (only if standard input is one). A command is
run by ``/bin/sh -c`` (as mpop's ``passwordeval`` is), with the terminal,
environment and standard error of ``pop3 fetch`` (so that ``pass`` or
``gpg`` can ask for a passphrase), and its first line of output is the
secret; a non-zero exit status, an empty first line, output that is not
UTF-8, or no end within ``SECRET_COMMAND_TIMEOUT`` seconds is an error that
names the option, never the output. On a timeout the shell is killed; a
program it started that outlives it is left alone (it gets SIGPIPE if it
writes).

Commands are run again for every fetch (an OAuth 2.0 access token lasts an
hour or so); a password asked for on the terminal is asked once per account
and process, so that ``--daemon`` asks only when it starts.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from ._defaults import TOKEN_AUTH_METHODS
from ._errors import CliError, UsageError
from ._secretfile import read_secret_file

__all__ = ["SECRET_COMMAND_TIMEOUT", "Credentials", "SecretSource", "read_password"]

SECRET_COMMAND_TIMEOUT = 120.0
"""Seconds a password or token command may run (time to type a passphrase into pinentry)."""
_OUTPUT_LIMIT = 1 << 16  # octets of a command's output kept: a token is a few KiB at most

_SOURCES = (
    "password_env",
    "password_file",
    "password_command",
    "password_keyring",
    "oauth2_token_command",
)


@dataclass(frozen=True)
class Credentials:
    """What to log in with: a password, or an OAuth 2.0 access token."""

    password: str | None = None
    token: str | None = None
    mechanism: str | None = None
    """The SASL mechanism (or ``"USER"``/``"APOP"``) to use, ``None``: the best offered."""

    def __repr__(self) -> str:  # never show the secret
        return f"Credentials(mechanism={self.mechanism!r})"


def _first_line(text: str) -> str:
    return io.StringIO(text, newline="").readline().removesuffix("\n").removesuffix("\r")


def read_password(args: argparse.Namespace) -> str:
    """The password from ``--password-env`` or ``--password-file`` (first line)."""
    if args.password_env is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            raise CliError(
                f"--password-env: the environment variable {args.password_env} is not set"
            )
        if not password:
            raise CliError(f"--password-env: environment variable {args.password_env} is empty")
        return password
    path = args.password_file
    text = read_secret_file(path, "the password file", private=True, newline="")
    password = _first_line(text)
    if not password:
        raise CliError(f"the password file {path} starts with an empty line")
    return password


def run_secret_command(command: str, option: str, timeout: float) -> str:
    """The first line ``command`` prints, run by the shell; ``option`` names it in errors.

    At most ``_OUTPUT_LIMIT`` octets of output are kept (the rest is read and
    dropped, so the command is never blocked on a full pipe).
    """
    try:
        proc = subprocess.Popen(  # noqa: S602 - a shell command line, by design (mpop)
            command,
            shell=True,
            stdout=subprocess.PIPE,
        )
    except OSError as exc:
        raise CliError(f"{option}: cannot run the command: {exc.strerror or exc}") from None
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    out = b""
    try:
        with proc.stdout, selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(command, timeout)
                if selector.select(left):
                    chunk = os.read(proc.stdout.fileno(), 65536)
                    if not chunk:
                        break
                    out += chunk[: _OUTPUT_LIMIT - len(out)]
        proc.wait(max(deadline - time.monotonic(), 0.001))
    except subprocess.TimeoutExpired:
        # Kill the shell; a program it started that outlives it no longer has our pipe.
        proc.kill()
        proc.wait()
        raise CliError(f"{option}: the command did not finish within {timeout:g} seconds") from None
    except BaseException:
        with contextlib.suppress(OSError):
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        raise
    if proc.returncode != 0:
        status = (
            f"was killed by signal {-proc.returncode}"
            if proc.returncode < 0
            else f"exited with status {proc.returncode}"
        )
        raise CliError(f"{option}: the command {status}")
    try:
        secret = _first_line(out.decode("utf-8"))
    except UnicodeDecodeError:
        raise CliError(f"{option}: the command's output is not UTF-8") from None
    if not secret:
        raise CliError(f"{option}: the command printed an empty first line")
    return secret


def _from_keyring(service: str, user: str) -> str:
    try:
        import keyring
        from keyring.errors import KeyringError
    except ImportError:
        raise CliError(
            "--password-keyring needs the keyring package: pip install 'pop3-sansio[keyring]'"
        ) from None
    try:
        password = keyring.get_password(service, user)
    except KeyringError as exc:
        raise CliError(f"--password-keyring: the keyring failed: {exc}") from None
    if not password:
        raise CliError(
            f"--password-keyring: no password for {user} under {service!r} in the keyring "
            f"(store one with: keyring set {service} {user})"
        )
    return password


class SecretSource:
    """The secret of one account; ``credentials()`` is called before each login.

    Creating it checks the options and asks for a terminal password if no
    source is given (``UsageError`` when there is no terminal to ask on).
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        given = [name for name in _SOURCES if getattr(args, name, None) is not None]
        token_auth = args.auth in TOKEN_AUTH_METHODS
        if token_auth and args.oauth2_token_command is None:
            raise UsageError(f"--auth {args.auth} needs --oauth2-token-command")
        if args.oauth2_token_command is not None and args.auth not in (None, *TOKEN_AUTH_METHODS):
            raise UsageError(f"--auth {args.auth} needs a password, not --oauth2-token-command")
        self._prompted: str | None = None
        if not given:
            if not _stdin_is_a_terminal():
                raise UsageError(
                    "no password source: give --password-env, --password-file, "
                    "--password-command, --password-keyring or --oauth2-token-command "
                    "(or run on a terminal to be asked)"
                )
            try:
                self._prompted = getpass.getpass(f"Password for {args.user}@{args.host}: ")
            except EOFError:
                raise CliError("no password was typed") from None
            if not self._prompted:
                raise CliError("no password was typed")

    def credentials(self) -> Credentials:
        """The password or token to log in with now (commands are run again each time)."""
        args = self._args
        mechanism = None if args.auth is None else args.auth.upper()
        if args.oauth2_token_command is not None:
            token = run_secret_command(
                args.oauth2_token_command, "--oauth2-token-command", SECRET_COMMAND_TIMEOUT
            )
            return Credentials(token=token, mechanism=mechanism)
        if self._prompted is not None:
            password = self._prompted
        elif args.password_command is not None:
            password = run_secret_command(
                args.password_command, "--password-command", SECRET_COMMAND_TIMEOUT
            )
        elif args.password_keyring is not None:
            password = _from_keyring(args.password_keyring, args.user)
        else:
            password = read_password(args)
        return Credentials(password=password, mechanism=mechanism)


def _stdin_is_a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        return False
