"""Which genes a map shows: pure Python, so slide prediction needs no plotting library."""

from __future__ import annotations

from collections.abc import Sequence


def choose_genes(wanted: Sequence[str], targets: Sequence[str]) -> tuple[list[str], str]:
    """The wanted genes that are targets, and a note on those skipped.

    When none of them is a target (e.g. simulated gene names), the first two targets are
    shown instead, so the figure still says something.
    """
    present = [g for g in wanted if g in targets]
    skipped = [g for g in wanted if g not in targets]
    note = f"not among the target genes, skipped: {', '.join(skipped)}" if skipped else ""
    if not present:
        present = list(targets[:2])
        note += f"; showing {', '.join(present)} instead"
    return present, note
