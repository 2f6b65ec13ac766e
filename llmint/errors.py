"""The exceptions llmint raises. Every error a user can cause is an `LlmintError`.

This module knows nothing about the rest of the library.
"""

from __future__ import annotations


class LlmintError(Exception):
    """Base class for every error llmint raises on purpose."""


class DataError(LlmintError, ValueError):
    """A data file or record is malformed; the message names the file and line."""


class UnknownIdError(LlmintError, KeyError):
    """A user, item or category id is not known to the catalogue or taxonomy."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class HistoryError(LlmintError, ValueError):
    """A history is empty where one is required, or longer than the configured limit."""


class RunFolderError(LlmintError, ValueError):
    """An output folder holds another run's files (other settings), or an unreadable record of one."""


class ModelError(LlmintError, RuntimeError):
    """A model, adapter or weight file cannot be found, verified or loaded."""


class IntegrityError(ModelError):
    """A file's SHA-256 does not match the expected digest."""
