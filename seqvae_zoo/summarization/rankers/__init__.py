"""Registered rankers, one module per ranker; ``base`` holds the interface.

``kl`` (the paper's: smallest KL between sentence and topic), ``query`` (KL to a mixture of the topic's question
and its documents), ``cosine``, and the representation-free baselines
``lead`` (first sentences, newest documents first) and ``random``.
"""
