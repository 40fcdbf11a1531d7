"""Reports over finished runs: tables with bootstrap confidence intervals and learning curves."""

from qflow.reporting.report import ReportError, make_report

__all__ = ["ReportError", "make_report"]
