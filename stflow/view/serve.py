"""Open a view in the browser (from disk: the page needs no server) or serve it on
localhost, for a browser on another machine through an SSH tunnel."""

from __future__ import annotations

import functools
import http.server
import logging
import webbrowser
from pathlib import Path

from stflow.errors import input_error

log = logging.getLogger(__name__)


def check_view(folder: Path) -> Path:
    page = folder / "index.html"
    if not page.is_file():
        raise input_error(folder, "is not a view (no index.html)",
                          "build it first: stflow view SLIDE.h5ad --out FOLDER")
    return page


def open_view(folder: Path) -> None:
    """Open ``index.html`` in the default browser (file://)."""
    page = check_view(folder)
    log.info("opening %s", page.resolve().as_uri())
    webbrowser.open(page.resolve().as_uri())


def serve_view(folder: Path, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``folder`` on http://host:port/ until interrupted (Ctrl-C)."""
    check_view(folder)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as err:
        raise input_error(f"port {port}", f"cannot be served on ({err.strerror})",
                          "choose another port with --serve PORT") from None
    log.info("serving %s on http://%s:%d/ (Ctrl-C stops)", folder, host, server.server_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
