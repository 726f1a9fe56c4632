"""The one error type users see."""

from __future__ import annotations


class DaedalusError(Exception):
    """A problem with the user's input, reported as `daeda: error: <where>: <problem>`.

    `where` is a file path or a command-line option, so the user knows what to fix.
    """

    def __init__(self, where: str | object, problem: str) -> None:
        self.where = str(where)
        self.problem = " ".join(str(problem).split())  # always one line
        super().__init__(f"{self.where}: {self.problem}")
