"""User-facing errors.

Every error a user can cause (a bad path, an unknown layer, a weight file of the wrong shape) is raised as an
:class:`InceptionismError` with a message that says what was wrong and what to do. The CLI prints the message as
one line on stderr and exits non-zero; the Python API lets it propagate.
"""

from __future__ import annotations


class InceptionismError(Exception):
    """An error caused by the user's input, with a message they can act on."""


class ImageError(InceptionismError):
    """An input image that cannot be read, or an output that cannot be written."""


class ConfigError(InceptionismError, ValueError):
    """An invalid setting: a number out of range, an unknown layer, model or preset."""


class WeightsError(InceptionismError):
    """Model weights that cannot be found or do not fit the model."""
