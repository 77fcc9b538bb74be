"""The thread pool for the update path's small blocking calls, owned by whoever runs agents.

Journal writes, pointer switches and file checks are small but come ~10 times per update, one
after the other. On the loop's default executor they would queue behind the heavy work of other
updates (hashing artifacts, building onnxruntime sessions): with a thousand simulated agents
that multiplied an update's wall time. They get threads of their own, shared by every agent on
the loop: the simulator's fleet creates one pool for all its agents (and shuts it down when it
stops), an agent started alone creates its own. The threads start only when used.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

SMALL_IO_WORKERS = 4

T = TypeVar("T")


def small_io_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=SMALL_IO_WORKERS, thread_name_prefix="edgewise-update-io")


async def run_small_io(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)
