"""The tagger backend: punctuation and casing by a token-classification model (one label per word),
loaded by our own code from two official layouts. See :mod:`omoai_llm.tagger.labels` for what a
label may do and :mod:`omoai_llm.tagger.engine` for loading, windows and batching."""
