"""A test hook that parks an update at a chosen point, so a test can kill the agent there.

Pure: the hook only says *where* to park. The updater does the parking (it writes
``{data_dir}/paused-in``, logs it and stops advancing the update); whoever runs the agent
decides whether there is a hook at all: tests pass one to :class:`~edge_agent.agent.EdgeAgent`,
and the daemon (:mod:`edge_agent.daemon`) builds one from its environment for the kill tests
that SIGKILL a real process (tests/update_e2e). A device never has one.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge_agent.update.state_machine import UpdateState


@dataclass(frozen=True)
class UpdatePause:
    """Park right after the step for ``state`` is journaled; with ``after_chunks`` (downloading
    only), once that many chunks are written instead."""

    state: UpdateState
    after_chunks: int | None = None

    @classmethod
    def parse(cls, spec: str) -> UpdatePause:
        """``"STATE"`` or ``"downloading:N"``; ValueError for anything else."""
        name, _, count = spec.partition(":")
        state = UpdateState(name)
        after = int(count) if count else None
        if after is not None and (state is not UpdateState.DOWNLOADING or after < 0):
            raise ValueError(f"{spec!r}: a chunk count is only for downloading, and not negative")
        return cls(state, after)

    def parks_at_step(self, state: UpdateState) -> bool:
        return self.state is state and self.after_chunks is None

    def parks_after_chunks(self, received: int) -> bool:
        return self.state is UpdateState.DOWNLOADING and self.after_chunks is not None \
            and received >= self.after_chunks

    def __str__(self) -> str:
        suffix = f":{self.after_chunks}" if self.after_chunks is not None else ""
        return self.state.value + suffix
