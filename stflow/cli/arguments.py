"""What every subcommand shares: the help layout, the device option, JSON options.

Light on purpose (argparse and stflow.choices only): ``stflow --help`` builds every
subcommand's parser, so nothing here may import numpy, torch or scanpy.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from stflow.choices import DEVICES, device_name
from stflow.errors import input_error


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a flag off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Commands(argparse._SubParsersAction):
    """The ``stflow`` subcommands: every one shows its defaults, whichever module adds it."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs.setdefault("formatter_class", HelpFormatter)
        return super().add_parser(name, **kwargs)


def add_device(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same on every command that runs torch."""
    parser.add_argument("--device", type=device_name, default="auto",
                        help=f"where torch runs: {', '.join(DEVICES)} (not a model setting: "
                        "a model trained on cuda predicts on cpu)")


def json_object(text: str | None, option: str = "--params") -> dict[str, Any]:
    """A JSON object given on the command line (``{}`` when absent)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise input_error(option, f"not valid JSON ({err})",
                          "pass a JSON object, e.g. '{\"epochs\": 5}'") from err
    if not isinstance(value, dict):
        raise input_error(option, "is not a JSON object", "pass e.g. '{\"epochs\": 5}'")
    return value
