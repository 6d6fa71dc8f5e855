"""pop3_cli: the ``pop3`` command (also ``python -m pop3_cli``).

``pop3 serve`` runs a POP3 server on a Maildir (with no arguments, a demo
maildrop on 127.0.0.1:1110 for user ``demo``, password ``demo``);
``pop3 fetch`` downloads mail from a POP3 server into a Maildir, safely:
a message is deleted on the server only after it is stored and synced, and a
run that is killed neither loses nor duplicates mail. Standard library only.
"""

from __future__ import annotations

from ._main import main

__all__ = ["main"]
