"""``serve(..., **options)`` is typed: a misspelt option is a ``mypy --strict`` error.

Every binding's ``serve`` takes ``**options: Unpack[ServerKeywords]``, a TypedDict of the
fields of ``ServerOptions``. The TypedDict must name exactly those fields, with their
types; mypy, run on two small programs, must accept the right keywords and reject a
misspelt one and a wrong type in each binding.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from pop3_sansio.server import ServerKeywords, ServerOptions
from served import env

GOOD = """\
import ssl

import pop3_asyncio
import pop3_sync
import pop3_trio
from pop3_maildrop import Backend, MemoryStorage, UserDB


async def main(context: ssl.SSLContext) -> None:
    backend = Backend(UserDB.from_pairs({"alice": "pw"}), MemoryStorage())
    server = await pop3_asyncio.serve(backend, "127.0.0.1", 0, starttls_context=context)
    server.close()
    pop3_sync.serve(backend, "127.0.0.1", 0, max_sessions=10, allow_plaintext=None).close()
    await pop3_trio.serve(backend, "127.0.0.1", 0, login_timeout=30.0, mechanisms=["PLAIN"])
"""

BAD = """\
import pop3_asyncio
import pop3_sync
import pop3_trio
from pop3_maildrop import Backend, MemoryStorage, UserDB


async def main() -> None:
    backend = Backend(UserDB.from_pairs({"alice": "pw"}), MemoryStorage())
    await pop3_asyncio.serve(backend, "127.0.0.1", 0, autologut=600.0)
    pop3_sync.serve(backend, "127.0.0.1", 0, max_session=10)
    await pop3_trio.serve(backend, "127.0.0.1", 0, login_timeout="30")
"""


def _annotation(value: object) -> str:
    return str(getattr(value, "__forward_arg__", value))


def test_the_keywords_are_the_fields_of_server_options() -> None:
    fields = {field.name: str(field.type) for field in dataclasses.fields(ServerOptions)}
    keywords = {name: _annotation(value) for name, value in ServerKeywords.__annotations__.items()}
    assert keywords == fields
    assert not ServerKeywords.__required_keys__  # every option has a default


def test_mypy_rejects_a_misspelt_option_and_accepts_the_right_ones(tmp_path: Path) -> None:
    (tmp_path / "good.py").write_text(GOOD)
    (tmp_path / "bad.py").write_text(BAD)
    done = subprocess.run(
        [
            *(sys.executable, "-m", "mypy", "--strict", "--python-version", "3.11"),
            *("--cache-dir", str(tmp_path / "cache"), "good.py", "bad.py"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env(),
        timeout=300,
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert errors == [
        'bad.py:9: error: Unexpected keyword argument "autologut" for "serve"; '
        'did you mean "autologout"?  [call-arg]',
        'bad.py:10: error: Unexpected keyword argument "max_session" for "serve"; '
        'did you mean "max_sessions"?  [call-arg]',
        'bad.py:11: error: Argument "login_timeout" to "serve" has incompatible type "str"; '
        'expected "float"  [arg-type]',
    ], done.stdout + done.stderr
