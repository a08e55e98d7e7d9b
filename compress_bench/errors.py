"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it, in one line."""


class ConfigError(UserError):
    """An invalid configuration value (ratio out of range, zero workers, ...)."""


class DataError(UserError):
    """A dataset is missing, cannot be downloaded, or fails verification."""


class InternalError(Exception):
    """An unexpected failure (a bug): the CLI prints one line naming the file that holds the
    traceback, and exits 1."""

    def __init__(self, message: str, traceback_file: str | None = None):
        super().__init__(message)
        self.traceback_file = traceback_file


class Interrupted(BaseException):
    """The run was stopped by a signal (SIGTERM, SIGINT, SIGHUP). A BaseException, like
    KeyboardInterrupt, so that ``except Exception`` (Hydra's job runner included) lets it
    through and the whole command stops."""

    def __init__(self, sig):
        super().__init__(sig.name)
        self.signal = sig

    def __reduce__(self):  # a launcher's worker process (joblib) sends it back pickled
        return type(self), (self.signal,)

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signal)  # the shell's convention for death by signal


class PassThrough(BaseException):
    """Carries an error past Hydra, which catches Exception in its job runner (logging its
    own "Error executing job" line) and in its callbacks (turning it into a warning). A
    BaseException gets through; ``compress_bench.cli.main`` unwraps ``error`` and reports it."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error

    def __reduce__(self):  # as Interrupted
        return type(self), (self.error,)
