"""Device health: the agents' health windows stored with their history (``store``), the health
alerts judged from them (``rules``, pure), what the REST API and the CLI show (``views``,
``api``, ``cli``), and recent log lines fetched from a device on demand (``logs``).
docs/monitoring.md, "Device health"."""
