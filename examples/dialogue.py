"""Drive a pop3_sansio client and server against each other and print the dialogue.

No sockets: the bytes one side's ``send`` returns are fed to the other side's
``receive_data``. The server's maildrop is three messages held in memory.

Run it with ``make run`` (or ``python examples/dialogue.py`` where the package
is installed).
"""

from __future__ import annotations

import hmac
import secrets
import time

import pop3_sansio as p
from pop3_sansio.codec import (
    apop_digest,
    make_timestamp,
    message_size,
    parse_stat,
    parse_uid_listing,
)
from pop3_sansio.sasl import CheckPassword, LookupSecret
from pop3_sansio.server import (
    CloseConnection,
    CommitDeletions,
    MessageInfo,
    OpenMaildrop,
    ReadMessage,
    ServerSession,
)

USERS = {"demo": "demo"}
MAILDROP = [
    b"From: alice@example.org\nSubject: Hello\n\nHi there.\n",
    b"From: bob@example.org\nSubject: Dots\n\n.A line that starts with a dot\n.\nend\n",
    b"From: carol@example.org\nSubject: No final newline\n\nlast line",
]


def show(who: str, data: bytes) -> None:
    for line in data.splitlines(keepends=True):
        print(f"{who}: {line.decode('utf-8', 'replace').rstrip()}")


def serve(session: ServerSession) -> None:
    """Answer the session's requests until it needs more bytes from the client."""
    while True:
        request = session.next_request()
        if request is p.NEED_DATA or isinstance(request, CloseConnection):
            return
        if isinstance(request, CheckPassword):
            secret = USERS.get(request.username, "")
            session.password_checked(hmac.compare_digest(secret, request.password))
        elif isinstance(request, LookupSecret):
            session.secret_found(USERS.get(request.username))
        elif isinstance(request, OpenMaildrop):
            session.maildrop_opened(
                [MessageInfo(message_size(m), f"msg-{i}") for i, m in enumerate(MAILDROP, 1)]
            )
        elif isinstance(request, ReadMessage):
            message = MAILDROP[request.msg - 1]
            for i in range(0, len(message), 16):  # any chunking works
                if not session.message_data(message[i : i + 16]):
                    break
            session.message_end()
        elif isinstance(request, CommitDeletions):
            print(f"   (server removes messages {request.messages} for good)")
            session.deletions_committed(failed=())
        else:  # pragma: no cover - StartTls/CheckToken are not used here
            raise NotImplementedError(request)


def main() -> None:
    stamp = make_timestamp(secrets.token_hex(4), int(time.time()), "localhost")
    session = ServerSession(allow_plaintext=True, apop_timestamp=stamp)
    client = p.ClientConnection()

    def exchange(*commands: p.Command) -> list[p.Event]:
        wire = b"".join(client.send(c) for c in commands)
        show("C", wire)
        session.receive_data(wire)
        serve(session)
        answer = session.data_to_send()
        show("S", answer)
        client.receive_data(answer)
        events: list[p.Event] = []
        while (event := client.next_event()) is not p.NEED_DATA:
            events.append(event)
        return events

    greeting = session.data_to_send()
    show("S", greeting)
    client.receive_data(greeting)
    hello = client.next_event()
    assert isinstance(hello, p.Greeting) and hello.timestamp is not None

    digest = apop_digest(hello.timestamp, USERS["demo"])
    exchange(p.Capa())
    exchange(p.Apop("demo", digest))
    events = exchange(p.Stat(), p.Uidl(), p.Retr(2))  # pipelined
    stat, _uidl, *rest = events
    assert isinstance(stat, p.Ok)
    count, size = parse_stat(stat.text)
    bodies: list[bytes] = [b""]
    for event in rest:
        if isinstance(event, p.Data):
            bodies[-1] += event.data
        elif isinstance(event, p.EndOfResponse):
            bodies.append(b"")
    uids = parse_uid_listing(bodies[0])
    print(f"   (client: {count} messages, {size} octets, uids {sorted(uids.values())};")
    print(f"    message 2 is {len(bodies[1])} octets)")
    exchange(p.Dele(1), p.Quit())
    print(f"   (client state: {client.our_state.name}, server state: {session.state.name})")


if __name__ == "__main__":
    main()
