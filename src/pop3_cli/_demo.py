"""The demo maildrop of ``pop3 serve`` with no arguments: a few messages that show the edge cases.

The messages are written the way a mail delivery agent writes them, with LF
line ends; the server sends them with CRLF line ends and dot-stuffing. They
cover a line starting with a dot, a message without a final newline, and a
multipart message with a binary attachment.
"""

from __future__ import annotations

import email.policy
import os
import time
from email.message import EmailMessage
from email.utils import formatdate

__all__ = ["DEMO_PASSWORD", "DEMO_USER", "demo_messages", "write_demo_maildir"]

DEMO_USER = "demo"
DEMO_PASSWORD = "demo"  # noqa: S105 - the demo's published password


def _headers(number: int, subject: str, when: float) -> str:
    return (
        "From: POP3 demo <demo@pop3.invalid>\n"
        "To: demo <demo@localhost>\n"
        f"Subject: {subject}\n"
        f"Date: {formatdate(when, localtime=False)}\n"
        f"Message-ID: <demo-{number}@pop3.invalid>\n"
        "MIME-Version: 1.0\n"
    )


def demo_messages(now: float | None = None) -> list[bytes]:
    """The demo messages, oldest first, as an MDA stores them (LF line ends)."""
    when = time.time() if now is None else now
    welcome = (
        _headers(1, "Welcome to the pop3-sansio demo", when - 300)
        + "Content-Type: text/plain; charset=utf-8\n"
        + "Content-Transfer-Encoding: 8bit\n"
        + "\n"
        + "Hello!\n"
        + "\n"
        + "This maildrop lives in a temporary directory and disappears when the\n"
        + "server stops. Nothing you delete here matters.\n"
        + "\n"
        + "Grüße, 👋\n"
    ).encode()
    dots = (
        _headers(2, "Lines that start with a dot", when - 240)
        + "Content-Type: text/plain; charset=us-ascii\n"
        + "\n"
        + "POP3 ends a message with a line holding a single dot, so the server\n"
        + "doubles a leading dot (RFC 1939 section 3). The next lines survive:\n"
        + ".\n"
        + ".. two dots\n"
        + ".hidden? no, shown\n"
        + "end\n"
    ).encode("ascii")
    no_newline = (
        _headers(3, "No newline at the end", when - 180)
        + "Content-Type: text/plain; charset=us-ascii\n"
        + "\n"
        + "This message's last line has no line end; the server adds CRLF."
    ).encode("ascii")
    multipart = EmailMessage(policy=email.policy.default)
    for line in _headers(4, "A message with an attachment", when - 120).splitlines():
        name, _, value = line.partition(": ")
        if name != "MIME-Version":
            multipart[name] = value
    multipart.set_content("The attachment holds every byte value 0-255, four times.\n")
    multipart.add_attachment(
        bytes(range(256)) * 4,
        maintype="application",
        subtype="octet-stream",
        filename="bytes.bin",
    )
    attached = multipart.as_bytes(policy=email.policy.default.clone(linesep="\n"))
    return [welcome, dots, no_newline, attached]


def write_demo_maildir(root: str, now: float | None = None) -> list[str]:
    """Create a Maildir at ``root`` holding ``demo_messages()``; return the files, in order."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)
    when = int(time.time() if now is None else now)
    paths = []
    messages = demo_messages(now)
    for index, message in enumerate(messages):
        # "<seconds>.<unique>.<host>": the seconds order the messages.
        seconds = when - 10 * (len(messages) - index)
        name = f"{seconds}.M{index}P{os.getpid()}.pop3-demo"
        path = os.path.join(root, "new", name)
        with open(path, "xb") as f:
            f.write(message)
        paths.append(path)
    return paths
