"""OMOAI operator: the TranscriptionJob custom resource driven through the ASR and LLM services.

Layers: ``spec`` (the resource), ``reconcile`` (pure state machine), ``queue`` (capacity, with
``fairness`` and ``namespaces`` for the order and the caps; ``placement``, ``slices``, ``probing`` and
``informer`` for the endpoints behind it), ``clients`` (HTTP to the services), ``storage`` + ``pipeline`` (idempotent stages, staged outputs),
``driver`` (one job's life, shared by the operator and ``omoai run``), ``handlers`` (kopf only).
"""

__version__ = "0.1.0"
