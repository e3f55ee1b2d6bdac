"""The one exception type that means "the user asked for something impossible".

It lives in the lowest part (``search_spaces``) so every part can raise it
without importing upward. Every part raises :class:`UserError` (or a subclass) for bad input; the CLI turns
it into a single ``error: ...`` line on stderr and exit status 2.
"""


class UserError(ValueError):
    """A mistake in what the user supplied: a name, a file, a value."""
