"""What the tests of every tier share: waiting for a condition, brokers and databases, agents
and controllers to run, models to serve, fleets to look at. One place, so a fixture or helper is
written once (``tests/conftest.py`` registers the fixtures)."""
