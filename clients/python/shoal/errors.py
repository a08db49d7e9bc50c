"""Errors as the node reports them: a stable code and a message."""

from __future__ import annotations


class ShoalError(Exception):
    """A request the cluster refused or a call that failed.

    ``code`` is one of the node's stable error codes (``unknown_function``,
    ``function_failed``, ``deadline_exceeded``, ``unavailable``,
    ``unauthorized``, …); ``status`` is the HTTP status, when there was one.
    """

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Unreachable(ShoalError):
    """No node in the client's list answered."""

    def __init__(self, message: str) -> None:
        super().__init__("unreachable", message)
