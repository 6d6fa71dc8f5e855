"""pop3_maildrop.UserDB: plain pairs, the passwd-like file, Dovecot's password schemes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from pop3_maildrop import UserDB

SALT = b"\x01salt\xff"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def dovecot(scheme: str, password: str) -> str:
    """The stored form, made the way Dovecot defines each scheme."""
    pw = password.encode()
    if scheme == "SHA256":
        return "{SHA256}" + b64(hashlib.sha256(pw).digest())
    if scheme == "SHA512":
        return "{SHA512}" + b64(hashlib.sha512(pw).digest())
    if scheme == "SSHA256":
        return "{SSHA256}" + b64(hashlib.sha256(pw + SALT).digest() + SALT)
    if scheme == "SSHA512":
        return "{SSHA512}" + b64(hashlib.sha512(pw + SALT).digest() + SALT)
    if scheme == "SHA256.HEX":
        return "{SHA256.HEX}" + hashlib.sha256(pw).hexdigest()
    if scheme == "SHA512-hex-guessed":
        return "{SHA512}" + hashlib.sha512(pw).hexdigest().upper()
    if scheme == "SSHA256.HEX":
        return "{SSHA256.hex}" + (hashlib.sha256(pw + SALT).digest() + SALT).hex()
    if scheme == "SSHA512.B64":
        return "{ssha512.b64}" + b64(hashlib.sha512(pw + SALT).digest() + SALT)
    if scheme == "PBKDF2":
        salt = "Ab3dEfGh1jKlMn0p"
        key = hashlib.pbkdf2_hmac("sha1", pw, salt.encode(), 1000, 20)
        return "{PBKDF2}$1$" + salt + "$1000$" + key.hex()
    if scheme == "PBKDF2-upper-empty-salt":
        key = hashlib.pbkdf2_hmac("sha1", pw, b"", 7, 20)
        return "{PBKDF2}$1$$7$" + key.hex().upper()
    if scheme == "PLAIN.B64":
        return "{PLAIN.B64}" + b64(pw)
    return "{" + scheme + "}" + password


HASHED = [
    "SHA256",
    "SHA512",
    "SSHA256",
    "SSHA512",
    "SHA256.HEX",
    "SHA512-hex-guessed",
    "SSHA256.HEX",
    "SSHA512.B64",
    "PBKDF2",
    "PBKDF2-upper-empty-salt",
]


@pytest.mark.parametrize("scheme", HASHED)
def test_hashed_schemes(scheme: str) -> None:
    db = UserDB.parse(f"alice:{dovecot(scheme, 'pässword')}\n")
    assert db.check_password("alice", "pässword")
    assert not db.check_password("alice", "password")
    assert not db.check_password("alice", "")
    assert db.secret("alice") is None  # only a hash: no APOP, CRAM-MD5, SCRAM
    assert scheme.split("-")[0].split(".")[0].upper() in repr(db._entries["alice"])


@pytest.mark.parametrize("scheme", ["PLAIN", "CLEAR", "plain", "PLAIN.B64", None])
def test_plain_schemes(scheme: str | None) -> None:
    stored = "s3cr" if scheme is None else dovecot(scheme, "s3cr")
    db = UserDB.parse(f"bob:{stored}")
    assert db.check_password("bob", "s3cr")
    assert not db.check_password("bob", "s3cr ")
    assert db.secret("bob") == "s3cr"


def test_file_format(tmp_path: Path) -> None:
    text = (
        "# users\n"
        "\n"
        "   \t\n"
        "  # indented comment\n"
        "alice:secret:/srv/mail/alice\r\n"
        "bob:{SHA256}" + b64(hashlib.sha256(b"pw#1").digest()) + "\n"
        "carol:with space and # hash:\n"
        "dave:pw:/path:with:colons"
    )
    path = tmp_path / "users"
    path.write_text(text, encoding="utf-8")
    db = UserDB.from_file(path)
    assert list(db) == ["alice", "bob", "carol", "dave"]
    assert len(db) == 4
    assert "alice" in db and "eve" not in db and 3 not in db
    assert db.maildir("alice") == "/srv/mail/alice"
    assert db.maildir("bob") is None
    assert db.maildir("carol") is None
    assert db.maildir("dave") == "/path:with:colons"
    assert db.maildir("eve") is None
    assert db.check_password("bob", "pw#1")
    assert db.check_password("carol", "with space and # hash")
    assert db.secret("eve") is None


def test_from_pairs_and_unknown_users() -> None:
    db = UserDB.from_pairs({"alice": "secret", "bob": "other"})
    assert db.check_password("alice", "secret")
    assert not db.check_password("alice", "other")
    assert not db.check_password("eve", "secret")
    assert db.secret("alice") == "secret"
    assert db.maildir("alice") is None
    assert not UserDB.from_pairs({}).check_password("eve", "")
    with pytest.raises(ValueError, match="empty password"):
        UserDB.from_pairs({"alice": ""})
    with pytest.raises(ValueError, match="user name"):
        UserDB.from_pairs({"a b": "x"})


def test_unknown_user_is_checked_against_the_costliest_entry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = UserDB.parse(
        "plain:pw\n"
        f"sha:{dovecot('SSHA512', 'pw')}\n"
        f"slow:{dovecot('PBKDF2', 'pw')}\n"
        f"sha256:{dovecot('SHA256', 'pw')}\n"
    )
    assert db._decoy.scheme == "PBKDF2" and db._decoy.rounds == 1000
    calls: list[tuple[str, int]] = []
    real = hashlib.pbkdf2_hmac

    def spy(name: str, password: bytes, salt: bytes, rounds: int, dklen: int) -> bytes:
        calls.append((name, rounds))
        return real(name, password, salt, rounds, dklen)

    monkeypatch.setattr(hashlib, "pbkdf2_hmac", spy)
    assert not db.check_password("nobody", "pw")
    assert calls == [("sha1", 1000)]
    db2 = UserDB.parse(f"a:{dovecot('SHA256', 'pw')}\nb:{dovecot('SSHA512', 'pw')}\nc:x")
    assert db2._decoy.scheme == "SSHA512"


def test_undecodable_passwords_are_checked_as_bytes() -> None:
    raw = b"caf\xe9"  # Latin-1 bytes, as a client might send them
    db = UserDB.parse("alice:{SHA256}" + b64(hashlib.sha256(raw).digest()))
    assert db.check_password("alice", raw.decode("utf-8", "surrogateescape"))
    assert not db.check_password("alice", "caf\ud800")  # a lone surrogate matches nothing


BAD_LINES = [
    ("no colon here", "expected name:password"),
    (":pw", "user name"),
    ("a b:pw", "user name"),
    ("alice:", "empty password"),
    ("alice::/maildir", "empty password"),
    ("alice:{PLAIN}", "empty password"),
    ("alice:{MD5}abc", "unknown password scheme {MD5}"),
    ("alice:{SHA256.ROT13}abc", "unsupported encoding"),
    ("alice:{PBKDF2.HEX}abc", "unsupported encoding"),
    ("alice:{SHA256}not*base64", "not valid base64"),
    ("alice:{SHA256.HEX}zz", "not valid hex"),
    ("alice:{SHA256}" + b64(b"short"), "wrong length"),
    ("alice:{SSHA256}" + b64(b"x" * 32), "too short"),
    ("alice:{PLAIN.B64}" + b64(b"\xff"), "not UTF-8"),
    ("alice:{PBKDF2}$1$salt$1000", "PBKDF2"),
    ("alice:{PBKDF2}$2$salt$1000$" + "0" * 40, "PBKDF2"),
    ("alice:{PBKDF2}$1$salt$0$" + "0" * 40, "PBKDF2"),
    ("alice:{PBKDF2}$1$salt$x$" + "0" * 40, "PBKDF2"),
    ("alice:{PBKDF2}$1$salt$10$" + "0" * 39, "PBKDF2"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_malformed_lines_name_the_line_not_the_secret(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^users\.txt, line 3: ") as info:
        UserDB.parse(f"# header\nok:pw\n{line}\n", source="users.txt")
    text = str(info.value)
    assert message in text
    secret = line.partition(":")[2].partition("}")[2]
    if len(secret) > 3:
        assert secret not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_duplicate_user() -> None:
    with pytest.raises(ValueError, match="<users>, line 2: user 'a' appears twice"):
        UserDB.parse("a:x\na:y\n")


def test_repr_shows_no_secret() -> None:
    db = UserDB.parse(f"alice:topsecret\nbob:{dovecot('SSHA256', 'pw')}\n")
    assert repr(db) == "<UserDB with 2 users>"
    for entry in db._entries.values():
        assert "topsecret" not in repr(entry)
        assert "salt" not in repr(entry)
