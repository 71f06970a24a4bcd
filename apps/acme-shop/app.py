"""ACME's shop: a small web app with a health check, standard library only."""

import errno
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRODUCTS = [
    {"sku": "anvil-01", "name": "Anvil", "price_cents": 4999},
    {"sku": "rocket-skates", "name": "Rocket skates", "price_cents": 12999},
]


def route(path):
    """Returns (status, content type, body) for a request path."""
    if path == "/health":
        return 200, "text/plain", b"ok"
    if path == "/api/products":
        return 200, "application/json", json.dumps(PRODUCTS).encode()
    if path == "/":
        items = "".join(f"<li>{p['name']}: {p['price_cents'] / 100:.2f}</li>" for p in PRODUCTS)
        env = os.environ.get("APP_ENV", "unknown")
        return 200, "text/html", f"<h1>ACME shop ({env})</h1><ul>{items}</ul>".encode()
    return 404, "text/plain", b"not found"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        status, content_type, body = route(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
    server = bind_server(bind, port, Handler)
    if os.environ.get("PIDFILE"):
        announce_and_watch(os.environ["PIDFILE"])
    server.serve_forever()
