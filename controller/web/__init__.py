"""Fleet health views: the web dashboard's pages, ``/metrics`` for Prometheus, and the figures over
time behind them and behind the fleet's and models' view endpoints (:mod:`.health`).

Above every feature: the views add up what the fleet, monitoring and models features store.
Who may read is decided app-wide by :mod:`controller.security.auth` (``dashboard_public``, read
tokens). docs/dashboard.md describes the pages.
"""
