"""Load testing raydesk with simulated customers and agents (``raydesk loadtest``).

Modules, one concern each: ``plan`` (what a run does, its bounds), ``texts`` (what
customers say), ``sim`` (a simulated connection), ``people`` (customers and agents),
``worker`` (one load-generating process), ``checker`` (exactly-once, in-order
bookkeeping), ``metrics`` (HdrHistogram latencies, per-window counts), ``procs`` (the
processes watched: CPU and PSS), ``accounts`` (agents, visitors, FAQ over REST),
``server`` (a server started for a run), ``run`` (the phases of a run), ``scenarios`` (the
named tests and their targets), ``report`` (progress bar, table, JSON, plots), ``cli``
(the command's options). docs/how-to/load-test.md is the operator's guide.
"""
