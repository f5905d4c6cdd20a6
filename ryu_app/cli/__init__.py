"""The ``lockstep`` command: check / lookup / status / vip (``commands.py``), talking to
gateways over REST (``remote.py``) or computing from the config alone."""
