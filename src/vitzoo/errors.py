"""Exceptions raised for problems a user can cause and fix.

Every error derives from :class:`VitzooError`; where a standard exception fits as well
(``ValueError``, ``KeyError``, ``TypeError``) it is a second base, so ``except ValueError``
code written against other libraries keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DuplicateModelError",
    "ImageSizeError",
    "UnknownModelError",
    "UnknownOverrideError",
    "UnknownTagError",
    "VitzooError",
]


class VitzooError(Exception):
    """Base class of every error vitzoo raises for user input."""


class ConfigError(VitzooError, ValueError):
    """A model configuration value is invalid."""


class UnknownOverrideError(ConfigError, TypeError):
    """A configuration override names a field that does not exist."""


class ImageSizeError(VitzooError, ValueError):
    """An input image does not have the size or channel count the model was built for."""


class DuplicateModelError(VitzooError, ValueError):
    """A model name is registered twice."""


class _KeyLookupError(VitzooError, KeyError):
    # KeyError's str() is the repr of its argument; show the message as written instead.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownModelError(_KeyLookupError):
    """A model name is neither a registered architecture nor an alias."""


class UnknownTagError(_KeyLookupError):
    """A pretrained tag is not known for the architecture."""
