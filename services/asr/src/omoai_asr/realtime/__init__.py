"""Live transcription over a WebSocket, ``GET /v1/realtime?intent=transcription``, speaking OpenAI's
realtime transcription protocol: ``events`` (one pydantic model per event), ``audio`` (input formats
to 16 kHz), ``endpointing`` (server VAD), ``session`` (the state machine, transport-free), ``hub``
(the replica's live sessions and their limits), ``route`` (the thin WebSocket endpoint),
``metrics``, and ``client`` (the ``omoai-asr listen`` command's client).
"""
