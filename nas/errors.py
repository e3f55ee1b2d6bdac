"""Re-export of the user-error type, which lives in the lowest part so every part can raise it."""

from nas.search_spaces.errors import UserError

__all__ = ["UserError"]
