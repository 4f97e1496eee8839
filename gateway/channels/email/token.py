"""Signed reply-address tokens.

Every outgoing mail carries a Reply-To such as ``camp+7k.reg.mfrgg2lbnrxgk3dp@example.org``.
The part after ``+`` tells the gateway who is answering and in which conversation, so a
reply still routes when a client drops In-Reply-To or the person answers from an alias.

Format: ``<person_id base36>.<conversation>.<mac>``

* Only ``[a-z0-9.-]`` is used.  Some MTAs and clients lower-case local parts, so every
  component is lower-case by construction and verification lower-cases its input.
* Dots separate the fields; they are legal inside a dot-atom local part as long as they
  are neither leading, trailing nor doubled, which the format guarantees.
* ``mac`` is HMAC-SHA256 over a domain-separated encoding of the claims, truncated to
  80 bits and written in base32 (16 characters).  80 bits is far beyond what an attacker
  can brute-force through an SMTP server, and keeps the whole address well inside the
  64-octet local-part limit of RFC 5321.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass

__all__ = [
    "TokenClaims",
    "make_token",
    "reply_address",
    "token_from_address",
    "verify_token",
]

MAC_CHARS = 16  # 16 base32 characters = 80 bits
MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
_DOMAIN_SEPARATOR = b"gathering-gateway reply token v1\x00"
_CONVERSATION = re.compile(r"[a-z0-9][a-z0-9-]{0,15}")
_PERSON_ID = re.compile(r"(?:0|[1-9a-z][0-9a-z]{0,12})")
_MAC = re.compile(f"[a-z2-7]{{{MAC_CHARS}}}")


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: who answers, and to which conversation."""

    person_id: int
    conversation: str


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


def _mac(secret: bytes, person_id: int, conversation: str) -> str:
    message = _DOMAIN_SEPARATOR + f"{person_id}\x00{conversation}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def make_token(secret: bytes, person_id: int, conversation: str) -> str:
    """Sign ``(person_id, conversation)`` into a token usable after ``+`` in an address.

    ``conversation`` is a short slug (``[a-z0-9][a-z0-9-]{0,15}``): it travels inside the
    address, so it must be short and survive lower-casing.  Raises ValueError otherwise.
    """
    if not secret:
        raise ValueError("empty secret")
    if person_id < 0:
        raise ValueError("person_id must be >= 0")
    if not _CONVERSATION.fullmatch(conversation):
        raise ValueError(f"conversation must match {_CONVERSATION.pattern}: {conversation!r}")
    pid = _base36(person_id)
    if not _PERSON_ID.fullmatch(pid):
        raise ValueError("person_id too large")
    return f"{pid}.{conversation}.{_mac(secret, person_id, conversation)}"


def verify_token(secret: bytes, token: str) -> TokenClaims | None:
    """Return the claims of a genuine token, or None for anything forged or mangled."""
    if not secret or len(token) > MAX_LOCAL_PART:
        return None
    parts = token.strip().lower().split(".")
    if len(parts) != 3:
        return None
    pid, conversation, mac = parts
    if not (
        _PERSON_ID.fullmatch(pid) and _CONVERSATION.fullmatch(conversation) and _MAC.fullmatch(mac)
    ):
        return None
    person_id = int(pid, 36)
    if not hmac.compare_digest(mac, _mac(secret, person_id, conversation)):
        return None
    return TokenClaims(person_id=person_id, conversation=conversation)


def reply_address(base: str, token: str) -> str:
    """``camp@example.org`` + token -> ``camp+<token>@example.org``.

    Raises ValueError when the result would exceed the 64-octet local-part limit, which
    some MTAs enforce by rejecting the mail outright.
    """
    local, sep, domain = base.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an address: {base!r}")
    local = local.split("+", 1)[0]
    tagged = f"{local}+{token}"
    if len(tagged.encode()) > MAX_LOCAL_PART:
        raise ValueError(f"local part longer than {MAX_LOCAL_PART} octets: {tagged!r}")
    return f"{tagged}@{domain}"


def token_from_address(addr: str, base_addresses: set[str] | frozenset[str]) -> str | None:
    """The lower-cased token of ``local+token@domain`` when ``local@domain`` is ours.

    Only extracts; call verify_token before trusting it.  Comparison is case-insensitive
    because MTAs differ in whether they preserve the case of local parts.
    """
    local, sep, domain = addr.strip().strip("<>").lower().rpartition("@")
    if not sep or "+" not in local:
        return None
    base_local, _, token = local.partition("+")
    if not token or f"{base_local}@{domain}" not in {b.strip().lower() for b in base_addresses}:
        return None
    return token
