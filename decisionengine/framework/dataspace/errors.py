"""Exceptions raised by the DataSpace.

They live in their own module so that every layer of the dataspace package (codecs,
data sources, the Reaper) can raise them without importing the DataSpace facade;
``decisionengine.framework.dataspace.dataspace`` re-exports them under their public path.
"""

from __future__ import annotations

import pickle


class DataSpaceError(Exception):
    """Errors related to database access"""


class DataSpaceConfigurationError(DataSpaceError):
    """Errors related to database access: the dataspace configuration is missing or invalid"""


class DataSpaceConnectionError(DataSpaceError):
    """Errors related to database access: the database cannot be reached"""


class DataSpaceExistsError(DataSpaceError):
    """Errors related to database access: the object already exists"""


class CorruptPayloadError(DataSpaceError):
    """A stored product could not be decoded.

    The message names the task manager, generation and key so that an operator knows
    exactly which product is damaged.
    """


class UntrustedPayloadError(DataSpaceError, pickle.UnpicklingError):
    """A stored product refers to a class or function that payloads may not use.

    Payloads are unpickled through an allow-list of data types (see
    :mod:`~decisionengine.framework.dataspace.unpickling`); anything else is refused
    before it is imported, so none of the payload's code runs.  ``refused`` is the
    ``module.name`` the payload asked for; ``where`` names the product (channel,
    generation, key) when the reader knows it.  Also a ``pickle.UnpicklingError``, for
    callers of ``zloads`` that catch that.
    """

    def __init__(self, refused: str, where: str | None = None) -> None:
        self.refused = refused
        self.where = where
        super().__init__(
            f"{where or 'the payload'} refers to {refused}, which stored data may not use: payloads are read "
            "through an allow-list of data types (builtins, the standard library's data types, numpy, pandas). "
            "If it is a class of a module you trust, list that module in dataspace.trusted_modules "
            "of the global configuration"
        )

    def __reduce__(self) -> tuple[type[UntrustedPayloadError], tuple[str, str | None]]:
        return type(self), (self.refused, self.where)


class OwnershipLost(DataSpaceError):
    """A write on behalf of a channel whose ownership has passed to another process.

    Every generation write carries the owner's *fence* (the channel and the epoch it was
    given when it took the channel) and the write checks it in its own transaction: a
    process that lost its lock (a network partition, a dropped connection) and does not
    know it yet can never commit another generation once a new owner has claimed the
    channel.  Nothing of the refused write is stored.
    """
