"""Data sources: each turns its published layout into the common ingest form.

``get_source(name)`` gives a :class:`Source`: its ``download(raw_dir, **options)``, the
``download_options`` that takes, ``read_options(sample, IngestOptions)`` (the ingest options
it takes, refusing the others), ``list_samples(raw_dir, config)`` and
``read_sample(raw_dir, sample, **options) -> IngestedSample``; ``write_st`` writes the result.
The stages dispatch through it, never on the source's name.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stflow.catalogue import SOURCES
from stflow.data.sources.ingest_form import IngestedSample, write_samples_tsv, write_st
from stflow.data.sources.options import IngestOptions
from stflow.errors import input_error


@dataclass(frozen=True)
class Source:
    """The entry points every source module provides."""

    name: str
    download: Callable[..., Any]
    download_options: frozenset[str]  # the keywords its download takes
    read_options: Callable[[str, IngestOptions], dict]
    list_samples: Callable[..., list[str]]
    read_sample: Callable[..., IngestedSample]


def get_source(name: str) -> Source:
    """The source registered under ``name``."""
    if name not in SOURCES:
        raise input_error("--source", f"unknown source {name!r}", f"choose one of {list(SOURCES)}")
    module = importlib.import_module(f"stflow.data.sources.{name}")
    options = frozenset(list(inspect.signature(module.download).parameters)[1:])
    return Source(name=name, download=module.download, download_options=options,
                  read_options=module.read_options, list_samples=module.list_samples,
                  read_sample=module.read_sample)


__all__ = ["SOURCES", "IngestOptions", "IngestedSample", "Source", "get_source", "write_samples_tsv", "write_st"]
