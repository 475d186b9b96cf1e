"""Re-extract messages and merge them into every locale's catalog (`make translations`).

New strings arrive untranslated; the i18n browser test fails until they are translated.
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POT = ROOT / "translations" / "messages.pot"

subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", str(ROOT / "babel.cfg"), "-k", "_l",
                "-k", "lazy_gettext", "-o", str(POT), "--no-location", "--sort-output", "--width", "120", str(ROOT)], check=True)
subprocess.run([sys.executable, "-m", "babel.messages.frontend", "update", "-i", str(POT), "-d", str(ROOT / "translations"),
                "--no-fuzzy-matching", "--ignore-obsolete", "--width", "120"], check=True)
