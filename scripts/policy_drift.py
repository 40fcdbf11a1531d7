"""Kept for the commands recorded in session 8: the analysis is now `python -m qflow.reporting.policy_drift`."""

import sys

from qflow.reporting.policy_drift import main

if __name__ == "__main__":
    sys.exit(main())
