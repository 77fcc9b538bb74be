"""The controller's schema history as an Alembic environment: ``env.py`` (run by Alembic, holds
the replica-safe lock) and ``versions/``, one revision per schema change, ``mNNNN_name.py`` with
revision id ``"NNNN"`` and ``down_revision`` the one before, each with an ``upgrade()`` and a
``downgrade()``. :mod:`controller.storage.migrator` drives them; `edgewise db` is its command line.

A revision is never edited once released: it creates exactly what it always did, from explicit
DDL or frozen copies of the tables it made, never from :mod:`controller.storage.tables` (the
current shapes). A change to the schema is a new revision in ``versions/`` plus the new shape in
``tables``; ``tests/integration/controller/store/test_migrations.py`` fails while the two
disagree.

Adding one: ``versions/mNNNN_name.py`` with ``revision = "NNNN"`` and ``down_revision`` the
newest; ``upgrade()`` runs DDL valid on SQLite and PostgreSQL through ``op`` only (offline SQL
cannot run queries); ``downgrade()`` first calls :func:`.guards.refuse_loss` for the rows it
would delete, then undoes ``upgrade()``; the new shapes, indexes included, go in ``tables.py``.
"""

from pathlib import Path

SCRIPT_LOCATION = Path(__file__).parent
