"""Reports: summary tables and plots of a race, read back from the results store."""

from trainlab.reports.markdown import write_report
from trainlab.reports.summary import SummaryRow, format_table, summarize

__all__ = ["SummaryRow", "format_table", "summarize", "write_report"]
