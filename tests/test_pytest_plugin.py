"""The pytest plugin: installing the package gives tests ``pop3_server``, with no conftest.

The proof is a real pytest run in a subprocess (pytester), in a fresh directory
that holds only a test file: the fixtures can come from nowhere but the
``pytest11`` entry point of the installed distribution.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

import pop3_testing.plugin

pytest_plugins = ["pytester"]

USER_TESTS = """
import poplib
import pytest


def login(server):
    client = poplib.POP3(*server.address, timeout=10)
    client.user(server.user)
    client.pass_(server.password)
    return client


def test_deletes_the_first_message(pop3_server):
    first = pop3_server.add_message(b"Subject: one\\n\\nfirst\\n")
    second = pop3_server.add_message(b"Subject: two\\n\\nsecond\\n")
    client = login(pop3_server)
    client.dele(1)
    client.quit()
    assert pop3_server.deleted() == [first]
    assert pop3_server.messages() == [second]


def test_each_test_has_a_server_of_its_own(pop3_server):
    assert pop3_server.messages() == []


def test_expects_a_deletion_that_never_happened(pop3_server):
    pop3_server.add_message(b"Subject: kept\\n\\nkept\\n")
    client = login(pop3_server)
    client.dele(1)
    client.rset()  # the code under test changed its mind
    client.quit()
    assert pop3_server.deleted(), "the message was not deleted"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_from_asyncio(pop3_server):
    import pop3_asyncio

    pop3_server.add_message(b"Subject: a\\n\\nasync\\n")
    async with pop3_asyncio.connect(*pop3_server.address, tls=None) as client:
        await client.login(pop3_server.user, pop3_server.password)
        assert await client.stat() == (1, len(b"Subject: a\\r\\n\\r\\nasync\\r\\n"))


def test_implicit_tls(pop3_tls_server):
    client = poplib.POP3_SSL(
        "localhost", pop3_tls_server.port, context=pop3_tls_server.client_ssl_context()
    )
    client.user(pop3_tls_server.user)
    client.pass_(pop3_tls_server.password)
    assert client.stat() == (0, 0)
    client.quit()


def test_starttls(pop3_starttls_server):
    client = poplib.POP3(*pop3_starttls_server.address, timeout=10)
    client.stls(pop3_starttls_server.client_ssl_context())
    client.apop(pop3_starttls_server.user, pop3_starttls_server.password)
    client.quit()
"""


def test_the_entry_point_names_the_plugin() -> None:
    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "pop3"]
    assert entry.value == "pop3_testing.plugin"
    assert entry.load() is pop3_testing.plugin


def test_the_plugin_is_loaded_in_this_run(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.get_plugin("pop3") is pop3_testing.plugin


def test_the_plugin_loads_no_server_until_a_test_asks() -> None:
    code = (
        "import sys; import pytest; before = set(sys.modules); import pop3_testing.plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['pop3_testing', 'pop3_testing.plugin']"


def test_fixtures_without_a_conftest_pass_and_fail_as_they_should(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_user_code=USER_TESTS)
    assert sorted(p.name for p in pytester.path.iterdir()) == ["test_user_code.py"]  # alone
    # As strict as this project's own suite: python -bb, and warnings are errors
    # (a socket of the server left unclosed would fail here).
    result = pytester.run(
        *(sys.executable, "-bb", "-m", "pytest", "-p", "no:cacheprovider", "-W", "error", "-rA"),
        *("--basetemp", str(pytester.path / "basetemp")),
    )
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_expects_a_deletion_that_never_happened*",
            "*AssertionError: the message was not deleted*",
            "FAILED test_user_code.py::test_expects_a_deletion_that_never_happened*",
        ]
    )
    assert "PASSED test_user_code.py::test_deletes_the_first_message" in result.stdout.str()


def test_without_the_plugin_the_fixture_does_not_exist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user_code=USER_TESTS)
    # In this process (quicker): the entry points are loaded afresh for the run.
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-p", "no:pop3", "-k", "first_message"
    )
    result.assert_outcomes(errors=1, deselected=5)
    result.stdout.fnmatch_lines(["*fixture 'pop3_server' not found*"])
    # The same run with the plugin: only "-p no:pop3" made the difference.
    again = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-k", "first_message")
    again.assert_outcomes(passed=1, deselected=5)
