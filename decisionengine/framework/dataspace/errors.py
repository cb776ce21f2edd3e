"""Exceptions raised by the DataSpace.

They live in their own module so that every layer of the dataspace package (codecs,
data sources, the Reaper) can raise them without importing the DataSpace facade;
``decisionengine.framework.dataspace.dataspace`` re-exports them under their public path.
"""


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
