"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""


class ConfigError(UserError):
    """An invalid configuration value (ratio out of range, zero workers, ...)."""


class DataError(UserError):
    """A dataset is missing, cannot be downloaded, or fails verification."""
