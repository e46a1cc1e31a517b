"""OMOAI LLM service: turns a raw ASR transcript (segments with times) into punctuated text, a
summary and timestamped topics, on top of a vLLM, transformers or OpenAI-compatible backend.
"""

__version__ = "0.1.0"
