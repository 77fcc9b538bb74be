"""The composition root: the Controller that builds every store and service, the FastAPI
app with every router, the server and its lease, and the ``edgewise`` command."""
