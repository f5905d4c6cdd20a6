"""A simulator of a Lockstep fleet: many gateways behind an ECMP router, one VIP's backends, and
many concurrent TCP connections, driven through the project's own Maglev tables
(``ryu_app.core.maglev``), flow keys and hashes (``ryu_app.core.flowkey``) and, in the exact
mode, one real ``ryu_app.core.balancer.Balancer`` per gateway (issue 16).

It answers one question per event (a gateway removed, added or restarted; a backend failing,
drained, added or re-weighted; two gateways' health views briefly disagreeing; and the double
changes): how many established connections break, why, and what each candidate mechanism for
a TCP non-SYN packet that misses a gateway's flow table changes about it, at what cost.

Run ``python -m fleetsim --help``.  Modules:

- ``population``: the flows (5-tuples, keys, slots, router hashes, arrivals and lifetimes);
- ``ecmp``: the router (hash mod the live gateways, or resilient buckets);
- ``scenarios``: the events, compiled into one timeline of primitive changes;
- ``fleet``: each gateway's view, table and table history (numpy arrays of backend indices);
- ``rule``: the second-chance destination rule, vectorized (one function, ``destinations``);
- ``engine``: the vectorized engine (any size);
- ``exact``: the exact engine (one real ``Balancer`` per gateway; small fleets);
- ``outcome``: reasons, results and costs shared by both engines;
- ``resilience``: the Maglev paper's resilience curve with our tables;
- ``report``: markdown tables.
"""
