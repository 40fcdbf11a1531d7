"""The one base of every error a user can cause or fix; the command line prints it as one line."""


class QFlowError(Exception):
    """Bad input, missing or corrupted files, a run that cannot go on: the message names the fix."""
