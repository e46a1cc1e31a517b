"""Helpers shared by the test suites (imported as ``tests.support.*``; the repository root is on
``pythonpath`` in pyproject.toml)."""
