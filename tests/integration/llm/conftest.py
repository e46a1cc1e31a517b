"""Real servers on loopback for the LLM service tests: a free port, uvicorn in a thread for
in-process apps, ``omoai-llm serve`` as a subprocess, and a tiny random model on disk.
Every server is stopped when its fixture ends."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from tests.support.processes import free_port, running_process


@contextlib.contextmanager
def serve_in_thread(app, *, timeout_s: float = 60.0) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def serve_process(args: list[str], env: dict[str, str] | None = None, *, timeout_s: float = 180.0) -> Iterator[str]:
    """``omoai-llm serve ARGS`` on a free port, ready (``/readyz`` 200) before yielding its URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("omoai-llm")
    # One OpenMP thread: on a busy shared CPU, thread teams spin on barriers and a tiny model
    # runs 30-100x slower.
    full_env = {**os.environ, "OMOAI_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1", **(env or {})}
    url = f"http://127.0.0.1:{port}"
    with running_process(
        [str(exe), "serve", *args, "--host", "127.0.0.1", "--port", str(port)],
        name="omoai-llm serve",
        env=full_env,
        ready_url=f"{url}/readyz",
        timeout_s=timeout_s,
    ):
        yield url


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_llm.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-llm"), seed=0)


@pytest.fixture(scope="session")
def tiny_model_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from omoai_llm.testing import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-llm-b"), seed=1, chat_template=False)


@pytest.fixture(scope="session")
def servers():
    import types

    return types.SimpleNamespace(process=serve_process, thread=serve_in_thread, free_port=free_port)
