"""``cadenza serve``: the studio under uvicorn, its address (with the token) printed, and a stop
that takes seconds, not minutes.

On SIGTERM or Ctrl+C the server first cancels every job and kills every child process (so event
streams and waiting requests end at once), then gives connections ``GRACE`` seconds, then closes
the app (workers are daemon threads, joined for at most 2 s).
"""

from __future__ import annotations

import sys

from cadenza.errors import CadenzaError
from cadenza.server.guard import bracketed, is_loopback, is_wildcard
from cadenza.server.settings import Settings

GRACE = 2  # seconds open connections get once the server stops


def address(settings: Settings, token: str | None) -> str:
    """The address to open: ``http://127.0.0.1:8000/?token=...`` (as Jupyter prints it)."""
    host = "127.0.0.1" if is_wildcard(settings.host) else bracketed(settings.host)
    return f"http://{host}:{settings.port}/" + (f"?token={token}" if token else "")


def exposure_warning(settings: Settings) -> str | None:
    """One line for stderr when other machines can reach the studio."""
    if is_loopback(settings.host):
        return None
    who = "anyone who can reach this machine" if settings.no_token else "anyone with its address (token)"
    return (f"cadenza: warning: --host {settings.host} lets other machines on the network reach the studio; "
            f"{who} can use it and read its takes (plain HTTP, unencrypted)")


def serve(settings: Settings) -> int:
    import uvicorn

    from cadenza.server.app import create_app

    app = create_app(settings)
    studio = app.state.studio

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            studio.stop()  # jobs and renderings end now: their streams and requests close
            await super().shutdown(sockets)

    warning = exposure_warning(settings)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"cadenza studio: {address(settings, app.state.token)}  (Ctrl+C to stop)", flush=True)
    server = Server(uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                                   timeout_graceful_shutdown=GRACE))
    server.run()
    if not server.started:
        raise CadenzaError(f"the studio did not start on {settings.host}:{settings.port} (see above)")
    return 0
