"""A POP3 server made of Twisted's ``twisted.mail.pop3.POP3``, for the interoperability tests.

Run as ``python twisted_pop3_server.py MAILDIR USER PASSWORD [CERT KEY]``: it listens on a
free port of 127.0.0.1, prints ``PORT <n>`` on stdout once it does, and serves until it is
terminated. Given CERT and KEY (PEM files) it speaks implicit TLS (POP3S) with that
certificate; Twisted's POP3 server has no STLS. The protocol is Twisted's own, unchanged;
only the parts Twisted leaves to an application are written here:

- a mailbox over the files of ``MAILDIR``: the messages are the files in name order, a
  message's unique id is its file name, and its size is the file's size in octets, as
  Twisted's own ``MaildirMailbox`` reports it (so a message stored with LF line ends is
  announced with its LF size, not the CRLF size it has on the wire). DELE only marks a
  message; Twisted calls ``sync`` at QUIT, and that removes the marked files. Files are
  opened in binary mode (Twisted's own Maildir mailbox opens them as text, which stalls
  RETR under Python 3);
- a credentials checker for USER/PASS, APOP and AUTH CRAM-MD5 with one user (Twisted's
  APOP credentials compare a str digest with the bytes one, which never matches);
- a factory announcing CRAM-MD5 and an IMPLEMENTATION in CAPA.

Twisted's quirks are kept: ``+OK `` with a trailing space, ``PIPELINE`` in CAPA, LF sizes,
and its dot-stuffing of 16 KiB chunks. TCP_NODELAY is set so small answers are not held
back by Nagle's algorithm.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import sys
from pathlib import Path
from typing import Any, ClassVar

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, endpoints, protocol, reactor, ssl
from twisted.mail import pop3
from twisted.mail.interfaces import IServerFactoryPOP3
from zope.interface import implementer


@implementer(pop3.IMailbox)
class FileMailbox:
    """The files of one directory, numbered in name order (see the module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = sorted(path for path in root.iterdir() if path.is_file())
        self.deleted: set[int] = set()

    def listMessages(self, i: int | None = None) -> Any:
        if i is None:
            return [0 if n in self.deleted else p.stat().st_size for n, p in enumerate(self.paths)]
        if not 0 <= i < len(self.paths):
            raise ValueError(i)
        return 0 if i in self.deleted else self.paths[i].stat().st_size

    def getMessage(self, i: int) -> io.BufferedReader:
        return self.paths[i].open("rb")

    def getUidl(self, i: int) -> bytes:
        return self.paths[i].name.encode()

    def deleteMessage(self, i: int) -> None:
        self.deleted.add(i)

    def undeleteMessages(self) -> None:
        self.deleted.clear()

    def sync(self) -> None:
        for i in sorted(self.deleted):
            self.paths[i].unlink()
        self.deleted.clear()


@implementer(portal.IRealm)
class Realm:
    def __init__(self, root: Path) -> None:
        self.root = root

    def requestAvatar(self, avatar_id: bytes, mind: object, *interfaces: Any) -> Any:
        assert pop3.IMailbox in interfaces
        return pop3.IMailbox, FileMailbox(self.root), lambda: None


@implementer(checkers.ICredentialsChecker)
class Checker:
    """One user; USER/PASS, APOP and CRAM-MD5."""

    credentialInterfaces = (  # noqa: N815 - Twisted's name
        credentials.IUsernamePassword,
        credentials.IUsernameHashedPassword,
    )

    def __init__(self, user: bytes, password: bytes) -> None:
        self.user = user
        self.password = password

    def requestAvatarId(self, creds: Any) -> defer.Deferred[bytes]:
        if creds.username != self.user:
            return defer.fail(error.UnauthorizedLogin())
        if isinstance(creds, pop3.APOPCredentials):
            expected = hashlib.md5(creds.magic + self.password).hexdigest().encode()
            good = hmac.compare_digest(expected, creds.digest)
        elif isinstance(creds, credentials.UsernamePassword):
            good = hmac.compare_digest(creds.password, self.password)
        else:
            good = bool(creds.checkPassword(self.password))
        return defer.succeed(self.user) if good else defer.fail(error.UnauthorizedLogin())


class Protocol(pop3.POP3):
    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        super().connectionMade()


@implementer(IServerFactoryPOP3)
class Factory(protocol.ServerFactory):
    protocol = Protocol
    noisy = False
    challengers: ClassVar = {b"CRAM-MD5": credentials.CramMD5Credentials}

    def __init__(self, mail_portal: portal.Portal) -> None:
        self.portal = mail_portal

    def buildProtocol(self, addr: Any) -> Protocol:
        built = super().buildProtocol(addr)
        assert isinstance(built, Protocol)
        built.portal = self.portal
        return built

    def cap_IMPLEMENTATION(self) -> str:
        return "twisted-for-tests"

    def cap_EXPIRE(self) -> None:
        raise NotImplementedError

    def perUserExpiration(self) -> bool:
        return False

    def cap_LOGIN_DELAY(self) -> None:
        raise NotImplementedError

    def perUserLoginDelay(self) -> bool:
        return False


def main() -> None:
    root, user, password = Path(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()
    checker = Checker(user, password)
    mail_portal = portal.Portal(Realm(root), [checker])
    endpoint: Any
    if len(sys.argv) > 4:
        pem = Path(sys.argv[4]).read_bytes() + Path(sys.argv[5]).read_bytes()
        options = ssl.PrivateCertificate.loadPEM(pem).options()
        endpoint = endpoints.SSL4ServerEndpoint(reactor, 0, options, interface="127.0.0.1")
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")

    def listening(port: Any) -> None:
        print(f"PORT {port.getHost().port}", flush=True)

    endpoint.listen(Factory(mail_portal)).addCallbacks(listening, lambda f: reactor.stop())
    reactor.run()


if __name__ == "__main__":
    main()
