"""The VMs' side of second chance's ``duplicate`` (docs/deployment.md, section 5): one nftables
table whose rule drops TCP segments without SYN that conntrack sees as new or invalid, so that a
VM sent a duplicated segment of a connection it does not hold drops it silently instead of
answering RST.  One copy, used by the demo's double-change scenario and the integration test;
the deployment guide's block is checked against it (tests/docs/test_deployment_guide.py)."""

from __future__ import annotations

VM_RULE_TABLE = "inet lockstep"
VM_DROP_RULE = (
    "add table inet lockstep { chain input { type filter hook input priority filter; "
    "tcp flags & syn == 0 ct state new,invalid counter drop; }; }"
)
VM_DROP_COMMAND = f"nft '{VM_DROP_RULE}'"  # as a shell line (the guide's)
