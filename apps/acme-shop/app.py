"""ACME's shop: a small web app with a health check, standard library only."""

import json
import os
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


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
