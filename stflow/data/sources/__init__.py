"""Data sources: each turns its published layout into the common ingest form.

``get_source(name)`` gives a :class:`Source` with ``list_samples(raw_dir, config)`` and
``read_sample(raw_dir, sample, **options) -> IngestedSample``; ``write_st`` writes the result.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from stflow.catalogue import SOURCES
from stflow.data.sources.common import IngestedSample, write_samples_tsv, write_st
from stflow.errors import input_error


@dataclass(frozen=True)
class Source:
    """The two entry points every source module provides."""

    name: str
    list_samples: Callable[..., list[str]]
    read_sample: Callable[..., IngestedSample]


def get_source(name: str) -> Source:
    """The source registered under ``name``."""
    if name not in SOURCES:
        raise input_error("--source", f"unknown source {name!r}", f"choose one of {list(SOURCES)}")
    module = importlib.import_module(f"stflow.data.sources.{name}")
    return Source(name=name, list_samples=module.list_samples, read_sample=module.read_sample)


__all__ = ["SOURCES", "IngestedSample", "Source", "get_source", "write_samples_tsv", "write_st"]
