"""The one exception type users see.

Every error caused by user input (a config value, a data file, a checkpoint, a CLI argument)
is raised as :class:`NCSNError` with a message that names the file, field or value at fault and
what was expected. The CLI prints the message and exits with status 2, without a traceback.
"""


class NCSNError(Exception):
    """A user-facing error: bad config, bad data file, bad checkpoint, bad argument."""
