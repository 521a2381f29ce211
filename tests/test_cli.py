"""The `stflow` command line as a whole: one option name per concept in every subcommand,
a description and shown defaults on each, and a quick `--help` (no science stack imported)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from light_imports import HEAVY, top_level_modules_after

from stflow.cli import COMMAND_MODULES, build_parser

REPO = Path(__file__).resolve().parents[1]


def _commands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand's parser, from every module of COMMAND_MODULES."""
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options(command: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {name: action for action in command._actions for name in action.option_strings
            if name.startswith("--") and name not in ("--help", "--version")}


COMMANDS = _commands()


def _listed_commands() -> dict[str, set[str]]:
    """The commands the comments of COMMAND_MODULES (stflow/cli/__init__.py) say each module
    adds: ``"stflow.cli.data",  # simulate, download, ...`` and its continuation lines."""
    source = (REPO / "stflow" / "cli" / "__init__.py").read_text()
    block = source[source.index("COMMAND_MODULES = ["):]
    block = block[:block.index("]")]
    listed: dict[str, set[str]] = {}
    for line in block.splitlines()[1:]:
        code, _, comment = line.partition("#")
        if code.strip():
            module = code.strip().strip(",").strip('"')
            listed[module] = set()
        listed[module] |= {c.strip() for c in comment.split(",") if c.strip()}
    return listed


def test_every_command_module_adds_the_commands_it_lists_and_together_they_are_all():
    added = {}
    for name in COMMAND_MODULES:
        subparsers = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(name).register(subparsers)
        added[name] = set(subparsers.choices)
        assert added[name], f"{name} adds no command"
    assert sum(len(commands) for commands in added.values()) == len(COMMANDS)  # none twice
    assert set().union(*added.values()) == set(COMMANDS)
    assert added == _listed_commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_help_and_shown_defaults(name):
    command = COMMANDS[name]
    assert command.description and len(command.description) > 40, name
    assert issubclass(command.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
    for option, action in _options(command).items():
        assert action.help, f"stflow {name} {option} has no help"
    shown = command.format_help()
    for action in _options(command).values():
        if action.default not in (None, False, argparse.SUPPRESS) and action.help:
            assert f"(default: {action.default})" in " ".join(shown.split()), \
                f"stflow {name}: {action.option_strings} does not show its default"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_option_name_per_concept(name):
    options = _options(COMMANDS[name])
    where = f"stflow {name}"
    # every output is --out, whether a file or a folder
    assert not [o for o in options if o.startswith("--out") and o != "--out"], where
    # parallel readers are --threads, whatever they are (threads, or processes for embed)
    assert not {"--workers", "--num-workers", "--jobs", "--cores"} & set(options), where
    # microns per pixel is --um-per-px
    assert not {"--mpp", "--microns-per-pixel"} & set(options), where
    for option, action in options.items():
        text = (action.help or "").lower()
        # a model's folder is --model-dir; --model is always a registry name
        if option == "--model":
            assert "folder" not in text and "registry" in text, f"{where} --model: {text}"
        # an input folder is --<thing>-dir (--out aside, and --weights: a file or a folder)
        if ("folder" in text.split(":")[0] and option not in ("--out", "--weights")
                and " file " not in text):
            assert option.endswith("-dir"), f"{where} {option} names a folder: {text}"
        # a bare plural is a list of names, not a file or a count
        if option in ("--samples", "--genes") and action.nargs not in ("+", "*"):
            pytest.fail(f"{where} {option} must be a list (a file is {option}-tsv/-json, "
                        f"a count --n-{option[2:]})")
        # a count of things is --n-<things>
        if option in ("--patients", "--sections", "--folds") and action.type is int:
            pytest.fail(f"{where} {option} is a count: call it --n-{option[2:]}")


def test_each_option_takes_one_kind_of_value_in_every_command():
    """The same name is a number in one command only if it is that number in all (a count,
    a path or a name never share one); a path may be typed str or Path."""
    seen: dict[str, tuple[str, object]] = {}
    for name, command in COMMANDS.items():
        for option, action in _options(command).items():
            kind = None if action.type in (None, str, Path) else action.type
            if option in seen and seen[option][1] != kind:
                pytest.fail(f"{option} is {seen[option][1]} in stflow {seen[option][0]} "
                            f"but {kind} in stflow {name}")
            seen.setdefault(option, (name, kind))


def test_devices_are_checked_when_parsed():
    parser = build_parser()
    assert parser.parse_args(["embed", "--patches", "p", "--encoder", "e", "--out", "o",
                              "--device", "cuda:1"]).device == "cuda:1"
    with pytest.raises(SystemExit):
        parser.parse_args(["predict-slide", "s.svs", "--model-dir", "m", "--out", "o",
                           "--device", "tpu"])


def test_help_imports_no_science_stack():
    """`stflow --help` and every `stflow COMMAND --help` build these parsers: nothing heavy
    may load on the way (the library is imported when a command runs)."""
    loaded = top_level_modules_after("import stflow.cli; stflow.cli.build_parser()")
    assert not loaded & HEAVY, sorted(loaded & HEAVY)


def test_help_lists_every_command_and_a_command_shows_its_defaults():
    shown = subprocess.run([sys.executable, "-m", "stflow", "--help"], capture_output=True,
                           text=True, cwd=REPO, check=True).stdout
    assert all(name in shown for name in COMMANDS)
    train = subprocess.run([sys.executable, "-m", "stflow", "train", "--help"],
                           capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "(default: auto)" in train and "--model-dir" not in train
