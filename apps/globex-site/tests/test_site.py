import sys
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import server  # noqa: E402


class SiteTest(unittest.TestCase):
    def test_index_exists(self):
        self.assertIn("Globex", (ROOT / "site" / "index.html").read_text())

    def test_handler_serves_the_site_folder(self):
        self.assertEqual(server.make_handler().keywords["directory"], str(ROOT / "site"))


if __name__ == "__main__":
    unittest.main()
