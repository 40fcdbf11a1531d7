"""The one base of every error a user can cause or fix; the command line prints it as one line."""


class QFlowError(Exception):
    """Bad input, missing or corrupted files, a run that cannot go on: the message names the fix."""


class TrainingDiverged(QFlowError, RuntimeError):
    """A loss or parameter became non-finite; the message says what was kept and how to retry."""
