"""``edgewise-agent-launcher``: runs the agent from one of two slots and switches between them.

An agent self-update is a new agent (a prepared virtualenv, as a tar archive with its sha256)
unpacked into the standby slot, started, and kept only if it reports healthy within a
probation window; otherwise the previous agent is started again. The pure decisions are in
:mod:`edge_agent.launcher.plan`, the journal and the ``current`` symlink in
:mod:`edge_agent.launcher.slots`, the supervisor and its command line in
:mod:`edge_agent.launcher.main` (docs/deploy.md, "Agent self-update").
"""
