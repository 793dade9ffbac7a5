"""The base of every error caused by what a user gave (a file, a name, a flag), as opposed to a bug.

The command line prints these as one line, ``error: <message>``, without a traceback; each message says what was
wrong and what to do.
"""


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unknown name, a bad binding or flag."""


class BatchError(UserError, ValueError):
    """A batch of token rows and lengths that the model would score wrongly, or fail on deep inside."""


class LengthsError(BatchError):
    """Sentence lengths that do not fit the batch they come with."""

    def __init__(self, lengths: list[int], width: int):
        super().__init__(f"sentence lengths must lie between 1 (the end-of-sentence token) and the batch's {width} "
                         f"columns; got {lengths if lengths else 'no sentences'}")
