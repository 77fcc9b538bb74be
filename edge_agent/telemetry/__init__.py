"""The agent's telemetry on its way out: records encoded for the outbox (:mod:`.records`), the
pure core that decides which batches go and which acknowledgements count (:mod:`.sender`), and
the shell that publishes and calls the outbox (:mod:`.uplink`). The outbox itself is
:mod:`edge_agent.outbox`.
"""
