"""Who may use the console and how its forms are protected.

Loopback by default. Listening on any other address needs a token: a browser presents it once on
the login page and gets a session cookie (HttpOnly, SameSite=Strict, signed with a key made at
start, so a restart asks again). Every state-changing request carries the session's CSRF token
(a hidden form field or the X-CSRF-Token header). The token is never printed or rendered."""
import hmac
import ipaddress
import secrets
import socket

from flywheel.errors import BadInput
from flywheel.schemas.secret import Secret

CSRF_HEADER = "X-CSRF-Token"
SECURITY_HEADERS = {
    # The report's section colours events with style attributes; nothing else is inline.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "script-src 'self'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class TokenRequired(BadInput):
    """The console was asked to listen beyond loopback without a token."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:                       # a host name: loopback only if every address it has is
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def check_bind(host: str, token: Secret) -> None:
    if not is_loopback(host) and not token:
        raise TokenRequired(f"the console listens on {host}, beyond this machine, only with a token: set [console] "
                            f"token_file (or FLYWHEEL_CONSOLE_TOKEN_FILE), or keep the default host 127.0.0.1")


def token_matches(token: Secret, offered: str) -> bool:
    return bool(token) and hmac.compare_digest(token.reveal().encode(), offered.encode())


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str | None, offered: str | None) -> bool:
    return bool(expected) and bool(offered) and hmac.compare_digest(expected.encode(), offered.encode())
