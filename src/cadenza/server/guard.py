"""Who may use the studio, and how much one request may send: two pure ASGI middlewares (no
BaseHTTPMiddleware: they add no task per request and never buffer a streamed response).

``Guard`` keeps any web page the user happens to visit from driving their local studio:

- Host: the studio answers only to its own names (localhost, 127.0.0.1, [::1], ``--host``, and
  ``--allow-host``), with or without the port. DNS rebinding sends ``Host: attacker.example`` to
  127.0.0.1; that is refused (400).
- Origin: a write (any method but GET and HEAD) whose ``Origin`` (or, without one, ``Referer``) is
  not the studio's own page is refused (403). A multipart POST needs no CORS preflight, so the
  browser would send it. With neither header (curl, scripts) the token decides.
- Token: every /api request shows the run's token, as header ``X-Cadenza-Token`` (or
  ``Authorization: token ...``), as cookie, or as ``?token=``; none is 401, a wrong one 403.
  ``GET /?token=...`` (the address ``cadenza serve`` prints, as Jupyter does) sets the cookie
  (HttpOnly, SameSite=Strict, so no other site's page ever sends it) and redirects to ``/``.

``BodyLimit`` counts a request's body while it arrives (with Content-Length or chunked) and answers
413 past its limit, before anything parses it or writes it to disk.
"""

from __future__ import annotations

import ipaddress
import json
import re
import secrets
import socket
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import cookie_parser

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
SAFE_METHODS = ("GET", "HEAD")
HOST_RE = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]/@\s]+)(?::(\d{1,5}))?")


# ------------------------------------------------------------------------------------- names
def bracketed(name: str) -> str:
    """An IPv6 address as it stands in a Host header: ``::1`` -> ``[::1]``."""
    return f"[{name}]" if ":" in name and not name.startswith("[") else name


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def machine_names() -> set[str]:
    """What other machines may call this one (for a studio listening on every address)."""
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return {n for n in names if n}


def host_names(host: str, extra: str = "") -> frozenset[str]:
    """The names the studio answers to: the loopback ones, ``host`` (on every address: this
    machine's own names), and the comma-separated ``extra``."""
    names = set(LOOPBACK_NAMES) | {host}
    if is_wildcard(host):
        names |= machine_names()
    names |= {x.strip() for x in extra.split(",") if x.strip()}
    return frozenset(bracketed(n).lower() for n in names if not is_wildcard(n))


def split_host(value: str) -> tuple[str, int | None] | None:
    """``"localhost:8000"`` -> ("localhost", 8000); ``"[::1]"`` -> ("[::1]", None); junk -> None."""
    m = HOST_RE.fullmatch(value.strip())
    return (m[1].lower(), int(m[2]) if m[2] else None) if m else None


# --------------------------------------------------------------------------------- responses
async def answer(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    """One JSON line, ``{"detail": ...}``, like every other error of the studio."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def refuse(scope, send, status: int, detail: str) -> None:
    if scope["type"] == "websocket":  # before accept: the server answers 403
        await send({"type": "websocket.close", "code": 1008, "reason": detail[:120]})
    else:
        await answer(send, status, detail)


# -------------------------------------------------------------------------------------- guard
class Guard:
    def __init__(self, app, names: frozenset[str], token: str | None):
        self.app, self.names, self.token = app, names, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        problem = self.host_problem(headers) or self.origin_problem(scope, headers) \
            or self.token_problem(scope, headers)
        if problem:
            return await refuse(scope, send, *problem)
        if self.token and scope["type"] == "http" and scope["path"] == "/" and self.query_token(scope):
            return await self.login(scope, headers, send)
        await self.app(scope, receive, send)

    # -- the checks: each None, or (status, one line) --------------------------------------------
    def host_problem(self, headers: Headers):
        value = headers.get("host", "")
        parts = split_host(value)
        if parts is None or parts[0] not in self.names:
            return 400, (f"host '{value[:100]}' is not this studio's (it answers to "
                         f"{', '.join(sorted(self.names))}; add a name with --allow-host)")
        return None

    def origin_problem(self, scope, headers: Headers):
        if scope["type"] == "http" and scope["method"] in SAFE_METHODS:
            return None
        source = headers.get("origin") or headers.get("referer")
        if source is None or self.same_origin(source, headers.get("host", ""), scope.get("scheme", "http")):
            return None
        return 403, f"cross-origin request refused: {source[:100]} is not this studio's page"

    def same_origin(self, source: str, host: str, scheme: str) -> bool:
        try:
            url = urlsplit(source)
            theirs = split_host(url.netloc) if url.scheme in ("http", "https") and url.netloc else None
        except ValueError:
            return False
        ours = split_host(host)
        if theirs is None or ours is None or theirs[0] not in self.names:
            return False
        default = {"http": 80, "https": 443}
        return (theirs[1] or default[url.scheme]) == (ours[1] or default.get(scheme.replace("ws", "http"), 80))

    def token_problem(self, scope, headers: Headers):
        if self.token is None or not scope["path"].startswith("/api"):
            return None
        given = self.header_token(headers) or self.query_token(scope) \
            or cookie_parser(headers.get("cookie", "")).get(self.cookie_name(headers))
        if not given:
            return 401, ("this studio asks for its token: open the address `cadenza serve` printed "
                         "(http://.../?token=...), or send it as the X-Cadenza-Token header")
        if not self.valid(given):
            return 403, "wrong token for this studio (each run has a new one: open the address it printed)"
        return None

    # -- the token ------------------------------------------------------------------------------
    def valid(self, given: str) -> bool:
        return secrets.compare_digest(given.encode("utf-8", "replace"), self.token.encode())

    @staticmethod
    def header_token(headers: Headers) -> str | None:
        if headers.get("x-cadenza-token"):
            return headers["x-cadenza-token"]
        kind, _, value = headers.get("authorization", "").partition(" ")
        return value.strip() if kind.lower() in ("token", "bearer") and value.strip() else None

    @staticmethod
    def query_token(scope) -> str | None:
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
        return values[0] if values else None

    @staticmethod
    def cookie_name(headers: Headers) -> str:
        """One cookie per port: cookies ignore ports, and two studios on one machine have two tokens."""
        parts = split_host(headers.get("host", ""))
        return f"cadenza_token_{parts[1] if parts and parts[1] else 80}"

    async def login(self, scope, headers: Headers, send) -> None:
        """``GET /?token=...``: the cookie, then the page without the token in its address."""
        if not self.valid(self.query_token(scope)):
            return await answer(send, 403, "wrong token for this studio (each run has a new one: "
                                           "open the address it printed)")
        cookie = f"{self.cookie_name(headers)}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", b"/"), (b"set-cookie", cookie.encode()), (b"content-length", b"0"),
                                (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b""})


# ---------------------------------------------------------------------------------- body limit
class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a body passes its limit (FastAPI answers it as a 413)."""

    def __init__(self, detail: str):
        super().__init__(413, detail)


class BodyLimit:
    """At most ``limit`` bytes of body per request (past it: 413 ``detail``); ``paths``:
    {path: (limit, detail)} for the paths with their own."""

    def __init__(self, app, limit: int, detail: str, paths: dict[str, tuple[int, str]] | None = None):
        self.app, self.limit, self.detail, self.paths = app, limit, detail, paths or {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit, detail = self.paths.get(scope["path"], (self.limit, self.detail))
        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > limit:  # said before a byte is read
            return await answer(send, 413, detail)
        seen, started = 0, False

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(detail)
            return message

        async def watched(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:  # raised where no handler turned it into the answer
            if started:
                raise
            await answer(send, 413, detail)
