"""The scripts in mininet/ import each other as top-level modules (the folder has no __init__.py,
so that it can never shadow the Mininet library); the tests import them the same way."""

import sys
from pathlib import Path

MININET_SCRIPTS = Path(__file__).resolve().parents[2] / "mininet"
if str(MININET_SCRIPTS) not in sys.path:
    sys.path.insert(0, str(MININET_SCRIPTS))
