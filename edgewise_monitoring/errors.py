"""Precise errors of the monitoring math.

All are ``ValueError`` subclasses: they describe bad input (a malformed reference profile, or
aggregates that cannot be added), never a transient condition worth retrying.
"""


class MonitoringError(ValueError):
    """Base class for errors raised by ``edgewise_monitoring``."""


class ProfileError(MonitoringError):
    """A reference profile that does not follow the manifest's profile format."""


class IncompatibleAggregates(MonitoringError):
    """Accumulators or window summaries that count different things and so cannot be added.

    Raised when bin edges, label sets, latency bucket schemes, reference profiles, tasks or drift
    settings differ: adding such counts would produce a number that means nothing.
    """
