"""The logic of each task on top of one backend: punctuation, summary and topics.

Each module is HTTP-free: it takes segments or text and a backend and returns frozen results.
"""
