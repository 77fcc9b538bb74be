"""The collected data back out: predictions as a training set (:mod:`.export`), and how long
telemetry is kept (:mod:`.retention`)."""
