"""One session of Twisted's POP3 client (``AdvancedPOP3Client``), for the interoperability tests.

Run as ``python twisted_pop3_client.py PORT USER PASSWORD [DELETE...]``: it connects to
127.0.0.1:PORT, logs in with ``login`` (APOP when the greeting has a timestamp, else
USER/PASS, allowed in the clear here), reads CAPA, STAT, LIST and UIDL, retrieves every
message, marks the message numbers given as DELETE (1-based), QUITs, and prints the
results as one JSON object on stdout. Each message is printed as its lines, as Twisted
gives them (dot-unstuffed, line ends removed), each hex-encoded. On any error it prints the
error to stderr and exits with status 1; the whole session is limited to 20 seconds.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import defer, endpoints, protocol, task
from twisted.mail.pop3 import AdvancedPOP3Client


class Client(AdvancedPOP3Client):
    allowInsecureLogin = True  # noqa: N815 - Twisted's name
    timeout = 20

    def serverGreeting(self, greeting: bytes) -> None:
        super().serverGreeting(greeting)
        self.factory.greeted.callback(greeting)


async def session(reactor: Any, port: int, user: bytes, password: bytes, delete: list[int]) -> Any:
    factory = protocol.ClientFactory.forProtocol(Client)
    factory.greeted = defer.Deferred()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=10)
    client = await endpoint.connect(factory)
    greeting = await factory.greeted
    caps = await client.capabilities(useCache=False)
    login = await client.login(user, password)
    stat = await client.stat()
    sizes = await client.listSize()
    uids = await client.listUID()
    messages = []
    for index in range(len(sizes)):
        lines = await client.retrieve(index)
        messages.append([line.hex() for line in lines])
    for n in delete:
        await client.delete(n - 1)
    await client.quit()
    return {
        "greeting": greeting.decode(),
        "apop": client.serverChallenge is not None,
        "capabilities": sorted(key.decode() for key in caps),
        "login": login.decode(),
        "stat": list(stat),
        "sizes": sizes,
        "uids": [uid.decode() for uid in uids],
        "messages": messages,
    }


def main(reactor: Any) -> defer.Deferred[None]:
    port, user, password = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()
    delete = [int(n) for n in sys.argv[4:]]
    result = defer.ensureDeferred(session(reactor, port, user, password, delete))
    result.addTimeout(20, reactor)
    return result.addCallback(lambda out: print(json.dumps(out), flush=True))


if __name__ == "__main__":
    task.react(main)
