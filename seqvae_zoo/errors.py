"""The base of every error caused by what a user gave (a file, a name, a flag), as opposed to a bug.

The command line prints these as one line, ``error: <message>``, without a traceback; each message says what was
wrong and what to do.
"""

from typing import Any, Callable


class UserError(Exception):
    """Bad input: a missing or corrupt file, an unknown name, a bad binding or flag."""


class BatchError(UserError, ValueError):
    """A batch of token rows and lengths that the model would score wrongly, or fail on deep inside."""


class SizeError(UserError, ValueError):
    """A layer or latent size that is not a positive integer: torch would build a layer of no width (a latent of
    size 0 trains as a language model with a KL of 0) or fail with a message about tensors."""


def check_number(binding: str, value: object, integer: bool, valid: Callable[[Any], bool], wanted: str,
                 error: type[UserError] = UserError) -> None:
    """One clear ``error`` for a setting (``binding``, as gin names it) that is not a number (an integer where
    ``integer``) for which ``valid`` holds, which ``wanted`` states (">= 1 (epochs between decays)")."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not valid(value):
        raise error(f"{binding} must be {'an integer' if integer else 'a number'} {wanted}; got {value!r}")


def check_sizes(owner: str, hint: str = "", **sizes: int) -> None:
    """Refuse any of ``sizes`` that is not a positive integer, naming its binding (``owner.name``); ``hint`` says
    what to do instead, where there is more to say than "give a positive integer"."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SizeError(f"{owner}.{name} must be a positive integer; got {value!r}{hint and ': ' + hint}")


class LengthsError(BatchError):
    """Sentence lengths that do not fit the batch they come with."""

    def __init__(self, lengths: list[int], width: int):
        super().__init__(f"sentence lengths must lie between 1 (the end-of-sentence token) and the batch's {width} "
                         f"columns; got {lengths if lengths else 'no sentences'}")
