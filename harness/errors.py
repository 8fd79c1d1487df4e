"""The base of errors that are the user's to fix: the CLI prints their message, not a traceback."""


class UserError(Exception):
    """Bad input, named with what to do about it."""
