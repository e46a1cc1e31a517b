"""Fixtures of the operator integration tests. They live in ``operator_harness`` (with the helpers
the tests import), so that no test module imports ``conftest`` by name."""

from operator_harness import (  # noqa: F401 - re-exported for pytest
    data_dir,
    emulator,
    kube,
    kubeconfig,
    real_services,
    shared_root,
    stubs,
)
