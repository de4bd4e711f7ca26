"""Sweep and run reports: `stats` (rows, seed means, paired gaps, comparisons), `tables`
(markdown and text), `plots` (matplotlib figures; import `focal.report.plots` explicitly,
so that code needing only numbers never imports matplotlib)."""
from focal.report.stats import (HEADLINE, SIGNAL, START_KEYS, STATIC, THRESHOLDS,
                                TIE_RTOL, comparisons, eval_curve, group_rows, mean_std,
                                paired_gap, start_mismatches, summarize_run, task_polarization,
                                write_csv)
from focal.report.tables import (GAIN_FRACTIONS, SUMMARY, category_table, clear_of_noise, format_report,
                                 gain_steps_table, results_table, signal_table, steps_table,
                                 summary_table, wins, wins_section)

__all__ = ["GAIN_FRACTIONS", "HEADLINE", "SIGNAL", "START_KEYS", "STATIC", "SUMMARY",
           "THRESHOLDS", "TIE_RTOL", "category_table", "clear_of_noise", "comparisons",
           "eval_curve", "format_report", "gain_steps_table", "group_rows", "mean_std",
           "paired_gap", "results_table", "signal_table", "start_mismatches", "steps_table",
           "summarize_run", "summary_table", "task_polarization", "wins", "wins_section",
           "write_csv"]
