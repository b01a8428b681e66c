"""The one exception type the CLI turns into a one-line message and a non-zero exit.

Raising `UsageError` means "the user gave us something we cannot use, and here is how to fix it";
anything else escaping to the CLI is a bug and keeps its traceback.
"""


class UsageError(ValueError):
    """Bad input from the user: a name, a value, a path or a store that cannot be used."""
