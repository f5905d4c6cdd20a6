"""``python -m ryu_app --config FILE --gateway NAME``: same as ``lockstep-gateway``."""

import sys

from ryu_app.shell.launcher import main

sys.exit(main())
