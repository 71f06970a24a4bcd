"""Globex's site: static files plus /health, standard library only."""

import errno
import os
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SITE = Path(__file__).resolve().parent / "site"


class Handler(SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


def make_handler():
    return partial(Handler, directory=str(SITE))


def announce_and_watch(path):
    """Locally (the sandbox's pid file): written once the port is bound, so that the file names the
    process that really listens (one that could not bind never writes it); then exit once the file
    no longer names this process, because stop.sh removed it or the sandbox itself is gone, so that
    nothing is left running behind."""
    with open(path + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(path + ".tmp", path)

    def watch():
        while True:
            time.sleep(1)
            try:
                with open(path) as f:
                    if f.read().strip() != str(os.getpid()):
                        os._exit(0)
            except OSError:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def bind_server(bind, port, handler):
    """The server on its port, tried for a few seconds while the port is still held (an app being
    stopped lets it go a moment later)."""
    deadline = time.monotonic() + 3
    while True:
        try:
            return ThreadingHTTPServer((bind, port), handler)
        except OSError as e:
            if e.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    bind = os.environ.get("BIND", "0.0.0.0")
    server = bind_server(bind, port, make_handler())
    if os.environ.get("PIDFILE"):
        announce_and_watch(os.environ["PIDFILE"])
    server.serve_forever()
