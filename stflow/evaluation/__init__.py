"""Evaluation and figures: the HEST metric, result tables, the paper's tables, plots."""
