"""HMAC-SHA256 signatures on containment commands, so responders can reject forged ones.

The Avro contract of a command is unchanged; the signature travels in the Kafka message
header ``mlsentry-signature`` with the value ``v1=<64 hex digits>``:

    HMAC-SHA256(key, b"mlsentry-command-v1\\n" + canonical(record))

where ``record`` is ``ContainmentCommand.to_record()`` (equivalently the decoded Avro
record) and ``canonical`` is its JSON with sorted keys, no spaces, UTF-8, no ASCII
escaping, integers as integers. The domain prefix keeps a command signature from ever
being valid for anything else signed with the same key. A responder decodes the Avro
value, reads the header and calls :func:`verify_command`; it must drop a command whose
signature is missing or wrong (and should also drop expired ones: ``expires_at``).

>>> record = {"command_id": "c1", "incident_id": "i1", "issued_at": 5, "action": "throttle",
...           "target_type": "principal", "target": "mallory", "params": {}, "mode": "dry_run",
...           "expires_at": 9, "reversible": True, "reason": "burst"}
>>> signature = sign_command(record, "k")
>>> verify_command(record, signature, "k"), verify_command({**record, "target": "alice"}, signature, "k")
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any, Mapping

SIGNATURE_HEADER = "mlsentry-signature"
_VERSION = "v1"
_DOMAIN = b"mlsentry-command-v1\n"


def _as_bytes(key: str | bytes) -> bytes:
    if not key:
        raise ValueError("an HMAC key must not be empty")
    return key.encode("utf-8") if isinstance(key, str) else key


def _plain(value: Any) -> Any:
    """Values as the Avro contract holds them (a decoder may hand back datetimes or tuples)."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, Mapping):
        return {str(name): _plain(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def canonical_command(record: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed for ``record``."""
    return json.dumps(_plain(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def sign_command(record: Mapping[str, Any], key: str | bytes) -> str:
    """The header value (``v1=<hex>``) signing ``record`` with ``key``."""
    digest = hmac.new(_as_bytes(key), _DOMAIN + canonical_command(record), hashlib.sha256).hexdigest()
    return f"{_VERSION}={digest}"


def verify_command(record: Mapping[str, Any], signature: str | bytes | None, key: str | bytes) -> bool:
    """True only if ``signature`` is a valid ``v1`` signature of ``record`` under ``key`` (constant-time compare)."""
    if not signature:
        return False
    text = signature.decode("ascii", errors="replace") if isinstance(signature, bytes) else signature
    return hmac.compare_digest(text, sign_command(record, key))


def signature_header(headers: Any) -> bytes | None:
    """The signature from a Kafka message's ``headers`` (aiokafka: a sequence of ``(name, bytes)``)."""
    for name, value in headers or ():
        if name == SIGNATURE_HEADER:
            return bytes(value)
    return None
