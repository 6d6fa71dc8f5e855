"""One session of Twisted's POP3 client (``AdvancedPOP3Client``), for the interoperability tests.

Run as ``python twisted_pop3_client.py PORT USER PASSWORD [DELETE...] [--tls MODE --ca FILE]``:
it connects to 127.0.0.1:PORT, logs in with ``login`` (APOP when the greeting has a
timestamp, else USER/PASS, allowed in the clear here), reads CAPA, STAT, LIST and UIDL,
retrieves every message, marks the message numbers given as DELETE (1-based), QUITs, and
prints the results as one JSON object on stdout. With ``--tls implicit`` the connection is
TLS from the start; with ``--tls starttls`` the client sends STLS (Twisted's ``startTLS``)
before it logs in. Either way the server's certificate must be signed by the CA in
``--ca FILE`` and name ``localhost``. Each message is printed as its lines, as Twisted
gives them (dot-unstuffed, line ends removed), each hex-encoded. On any error it prints the
error to stderr and exits with status 1; the whole session is limited to 20 seconds.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from twisted.internet import defer, endpoints, interfaces, protocol, ssl, task
from twisted.mail.pop3 import AdvancedPOP3Client


class Client(AdvancedPOP3Client):
    allowInsecureLogin = True  # noqa: N815 - Twisted's name
    timeout = 20

    def serverGreeting(self, greeting: bytes) -> None:
        super().serverGreeting(greeting)
        self.factory.greeted.callback(greeting)

    def connectionLost(self, reason: Any) -> None:
        if not self.factory.greeted.called:  # e.g. a failed TLS handshake: fail now
            self.factory.greeted.errback(reason)
        super().connectionLost(reason)


async def session(reactor: Any, args: argparse.Namespace) -> Any:
    user, password, delete = args.user.encode(), args.password.encode(), args.delete
    factory = protocol.ClientFactory.forProtocol(Client)
    factory.greeted = defer.Deferred()
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", args.port, timeout=10)
    options = None
    if args.tls is not None:
        with open(args.ca, "rb") as ca:
            trust = ssl.Certificate.loadPEM(ca.read())
        options = ssl.optionsForClientTLS("localhost", trustRoot=trust)
    if args.tls == "implicit":
        endpoint = endpoints.wrapClientTLS(options, endpoint)
    client = await endpoint.connect(factory)
    greeting = await factory.greeted
    caps_before = await client.capabilities(useCache=False)
    if args.tls == "starttls":
        await client.startTLS(options)  # STLS, then CAPA again
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
    tls = interfaces.ISSLTransport(client.transport, None) is not None
    await client.quit()
    return {
        "greeting": greeting.decode(),
        "apop": client.serverChallenge is not None,
        "tls": tls,
        "capabilities_before_tls": sorted(key.decode() for key in caps_before),
        "capabilities": sorted(key.decode() for key in caps),
        "login": login.decode(),
        "stat": list(stat),
        "sizes": sizes,
        "uids": [uid.decode() for uid in uids],
        "messages": messages,
    }


def main(reactor: Any) -> defer.Deferred[None]:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("delete", type=int, nargs="*")
    parser.add_argument("--tls", choices=["implicit", "starttls"])
    parser.add_argument("--ca", help="the CA certificate (PEM) to trust, with --tls")
    args = parser.parse_args()
    result = defer.ensureDeferred(session(reactor, args))
    result.addTimeout(20, reactor)
    return result.addCallback(lambda out: print(json.dumps(out), flush=True))


if __name__ == "__main__":
    task.react(main)
