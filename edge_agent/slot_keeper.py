"""The two model slots and what serves from them: the pointer, on disk and in memory, and the
runtime the host serves. Every switch writes the whole pointer atomically (``active.json``,
:mod:`edge_agent.slots`) before the host serves the new runtime, so after a crash the pointer
never names less than what served.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from edge_agent.runtime import InferenceRuntime, load_runtime
from edge_agent.slots import Slot, SlotError, SlotPointer, SlotStore
from edge_agent.small_io import run_small_io
from edge_agent.update.ports import UpdateHost
from edgewise_wire import Manifest, ModelRef

log = logging.getLogger("edgewise.agent.update")


def ref_of(slot: Slot | None) -> ModelRef | None:
    return slot.ref if slot is not None else None


class SlotKeeper:
    def __init__(self, store: SlotStore, host: UpdateHost, small_io: Executor,
                 device_id: str) -> None:
        self.store = store
        self.host = host
        self.small_io = small_io
        self.device_id = device_id
        self.pointer = SlotPointer()

    def serve_at_start(self) -> str | None:
        """Serve what the pointer names: the active slot, or if its file fails the previous one
        (and point at it). Returns why something could not be served, else None."""
        error = None
        try:
            self.pointer = self.store.load()
        except SlotError as exc:
            error = f"the model pointer could not be read at start: {exc}"
            log.error("%s: %s", self.device_id, error)
            return error
        active, previous = self.pointer.active, self.pointer.previous
        if active is None:
            return None  # no model was desired (an unload): the previous slot stays unloaded
        for slot in (active, previous):
            if slot is None:
                continue
            try:
                runtime = load_runtime(self.store.verify(slot), slot.manifest)
            except Exception as exc:
                error = f"the model {slot.ref} could not be loaded at start: {exc}"
                log.error("%s: %s", self.device_id, error)
                continue
            if slot is not active:
                # the active slot is broken (disk error): the previous one is better than none
                self.pointer = SlotPointer(slot, None)
                self.store.switch(self.pointer)
                log.warning("%s: serving the previous slot %s instead", self.device_id, slot.ref)
            self.host.serve(slot, runtime)
            return error
        return error  # no slot could be loaded: the device serves nothing, and error says why

    async def has_verified(self, manifest: Manifest) -> bool:
        return await run_small_io(self.small_io, self.store.has_verified, manifest)

    async def activate(self, new: Slot, runtime: InferenceRuntime) -> None:
        """Switch to ``new`` (loaded and smoke-tested); what served becomes the previous slot."""
        self.pointer = SlotPointer(new, self.pointer.active)
        await self._switch()
        self.host.serve(new, runtime)  # the switch: one reference assignment

    async def unload(self, deployment_id: str) -> None:
        """Serve no model; what served becomes the previous slot."""
        self.pointer = SlotPointer(None, self.pointer.active)
        await self._switch()
        self.host.serve(None, None, deployment_id=deployment_id)

    async def point_at(self, slot: Slot | None, *, previous: Slot | None) -> None:
        """Switch the pointer to ``slot`` and serve it (loading it unless it serves already)."""
        runtime: InferenceRuntime | None = None
        if slot is not None:
            served = self.host.runtime
            if served is not None and served.manifest.artifact.sha256 == \
                    slot.manifest.artifact.sha256:
                runtime = served
            else:
                path = await asyncio.to_thread(self.store.verify, slot)
                runtime = await asyncio.to_thread(load_runtime, path, slot.manifest)
        self.pointer = SlotPointer(slot, previous)
        await self._switch()
        self.host.serve(slot, runtime)

    async def prune(self) -> None:
        """At rest only the two slots' files stay (a failed target's verified file goes)."""
        keep = {s.file for s in (self.pointer.active, self.pointer.previous) if s}
        await run_small_io(self.small_io, self.store.prune, keep)

    async def _switch(self) -> None:
        await run_small_io(self.small_io, self.store.switch, self.pointer)
