"""One error family for everything a user can get wrong.

Every message names the file, column or parameter at fault and says what to do, so the
text can be shown as-is in the CLI, in a step's stderr and in the Dagster UI.
"""


class BiodivError(Exception):
    """Base class: a problem with the user's data, names or configuration (never retried)."""


class DataContractError(BiodivError):
    """Input data breaks the data contract (missing column, bad values, too few rows...)."""


class ConfigError(BiodivError):
    """A configuration file or run parameter is invalid."""


class NotFoundError(BiodivError):
    """A data asset, version or file does not exist; the message lists what does."""


class InvalidNameError(BiodivError):
    """A site or species name cannot be used safely in paths, job names or endpoint names."""
