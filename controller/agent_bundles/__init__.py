"""Agent bundles: prepared agent archives registered like model artifacts, for the devices'
``edgewise-agent-launcher`` to stage (``edgewise agent push``)."""
