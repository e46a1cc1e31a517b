"""Gathering concurrent work into batches: what the transformers backend (prompts) and the tagger
(windows) share. One worker takes the first waiting item, then whatever arrives within the wait,
up to the batch size."""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def gather_batch(queue: asyncio.Queue[T], max_size: int, wait_s: float) -> list[T]:
    """The next batch: waits for one item, then takes more until ``max_size`` or ``wait_s`` passed."""
    loop = asyncio.get_running_loop()
    batch = [await queue.get()]
    deadline = loop.time() + wait_s
    while len(batch) < max_size:
        try:
            batch.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(queue.get(), left))
        except TimeoutError:
            break
    return batch
