"""OMOAI shared foundation: settings base, errors, metrics helpers and wire schemas.

Nothing here imports torch, vllm or kopf: every deployable (services and operator) may depend on it.
"""

__version__ = "0.1.0"
