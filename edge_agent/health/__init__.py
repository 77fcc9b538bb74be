"""The agent's own health: what its process and its board use, sampled every few seconds and
summarised per window into ``health`` records (``edgewise_wire.health``); and the ring of its
recent log lines an operator fetches on demand."""
