import json
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import app  # noqa: E402


class RouteTest(unittest.TestCase):
    def test_health(self):
        self.assertEqual(app.route("/health"), (200, "text/plain", b"ok"))

    def test_products_are_json(self):
        status, content_type, body = app.route("/api/products")
        self.assertEqual((status, content_type), (200, "application/json"))
        self.assertEqual(len(json.loads(body)), 2)

    def test_unknown_path(self):
        self.assertEqual(app.route("/nope")[0], 404)


if __name__ == "__main__":
    unittest.main()
