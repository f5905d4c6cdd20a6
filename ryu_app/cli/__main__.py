"""``python -m ryu_app.cli ...``: same as ``lockstep ...``."""

import sys

from ryu_app.cli.commands import main

sys.exit(main())
