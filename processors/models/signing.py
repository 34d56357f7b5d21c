"""HMAC-SHA256 signatures of ModelEvents, carried in a Kafka header.

The signature covers the record's key and value bytes exactly as produced, so a reader checks
it before decoding anything. With a key configured, writers sign every event and readers refuse
an event that is unsigned or whose signature does not match; without one, events are neither
signed nor checked (the artifact store still limits them to registered versions)."""
import hashlib
import hmac

from flywheel.schemas.secret import Secret

HEADER = "flywheel-signature"


class EventSigner:
    def __init__(self, key: Secret):
        self._key = key.reveal().encode()

    @classmethod
    def of(cls, key: Secret) -> "EventSigner | None":
        return cls(key) if key else None

    def sign(self, key: bytes | None, value: bytes) -> str:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        mac.update(len(key or b"").to_bytes(4, "big") + (key or b""))   # length-prefixed: no key/value shifting
        mac.update(value)
        return mac.hexdigest()

    def headers(self, key: bytes | None, value: bytes) -> list[tuple[str, bytes]]:
        return [(HEADER, self.sign(key, value).encode())]

    def refusal(self, key: bytes | None, value: bytes, headers) -> str | None:
        """None if the record is signed with this key; else the refusal reason."""
        found = [v for k, v in (headers or []) if k == HEADER]
        if not found:
            return "unsigned"
        if not hmac.compare_digest(found[-1] or b"", self.sign(key, value).encode()):
            return "bad_signature"
        return None
