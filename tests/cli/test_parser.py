"""The kipd parser: every option of every command is a field of one of the command's
dataclasses (declared once, documented once), and each command's --help lists its
options."""

import argparse
import dataclasses

import pytest

from kipd.cli import _parser

# What a command is told besides the options of what it computes: how it reports
# (--json, --quiet, --yes), where its run or output is (--out) and whether to continue
# it (--resume) or only price it (--plan).
SWITCHES = {"help", "json", "quiet", "yes", "out", "resume", "plan"}

# The flags of each command (the command-line contract; --help is everywhere).
FLAGS = {
    "distill": "--dataset --data-dir --images-per-class --zca --no-zca --zca-regularization "
    "--seed --lambda0 --test-size --features --feature-kernel --preset --kernel --steps "
    "--target-batch-size "
    "--target-sampling --learn-labels --no-learn-labels --augment --lr --lr-schedule --init "
    "--checkpoint-every --eval-every --eval-size --keep-best --block-size --loss --init-from "
    "--init-accuracy --no-init-accuracy "
    "--out --resume --plan "
    "--executor --ray-address --workers --json --quiet --yes",
    "label-solve": "--dataset --data-dir --images-per-class --zca --no-zca "
    "--zca-regularization --seed --lambda0 --test-size --features --feature-kernel --preset "
    "--kernel "
    "--target-size "
    "--rcond --out --resume --executor --ray-address --workers --json --quiet --yes",
    "evaluate": "--dataset --data-dir --kernel --get --zca --no-zca --zca-regularization "
    "--executor --ray-address --workers --json --quiet --yes",
    "export": "--out --json --quiet",
    "transfer": "--protocol --network-seeds --epochs --soft-labels --arch --width --steps "
    "--lr-factors --l2 --loss --norm --eval-every --validation-size --baseline --dataset "
    "--data-dir --seed --zca --no-zca --zca-regularization --json --quiet --yes",
    "analyze figures": "--data-dir --out --json --quiet",
    "analyze dimension": "--data-dir --kernel --seed --executor --ray-address --workers "
    "--json --quiet",
    "analyze bands": "--data-dir --kernel --seed --test-size --bands --executor --ray-address "
    "--workers --json --quiet",
    "analyze subsample": "--data-dir --kernel --seed --test-size --fractions --draws "
    "--executor --ray-address --workers --json --quiet",
    "report": "--data-dir --kernel --seed --test-size --out --bands --fractions --draws "
    "--executor --ray-address --workers --json --quiet --yes",
    "baseline": "--dataset --data-dir --kernel --per-class --draws --test-size "
    "--pool-per-class --zca --no-zca --seed --executor --ray-address --workers --json --quiet "
    "--yes",
}


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _commands():
    """``(name, command, parser)`` of every command: ``analyze NAME`` for each analysis."""
    found = []
    for command, parser in _subparsers(_parser.build_parser()).choices.items():
        if command == "analyze":
            for name, sub in _subparsers(parser).choices.items():
                found.append((f"analyze {name}", command, sub))
        else:
            found.append((command, command, parser))
    return found


_CASES = [pytest.param(*case, id=case[0]) for case in _commands()]


def _options(parser):
    """The actions of a parser's options (not its positional arguments)."""
    return [a for a in parser._actions if a.option_strings]


def test_the_commands_are_those_pinned():
    assert {name for name, _, _ in _commands()} == set(FLAGS)


@pytest.mark.parametrize("name, command, parser", _CASES)
def test_every_option_is_a_field_of_the_commands_dataclasses(name, command, parser):
    classes = _parser.family(command).option_classes(command)
    fields = {f.name for cls in classes for f in dataclasses.fields(cls)}
    for action in _options(parser):
        assert action.dest in fields | SWITCHES, f"kipd {name} {action.option_strings[0]}"
        if action.dest in fields:  # the dataclass applies its own default
            assert action.default is None, f"kipd {name} {action.option_strings[0]}"
            assert action.help, f"kipd {name} {action.option_strings[0]} has no help"


@pytest.mark.parametrize("name, command, parser", _CASES)
def test_help_lists_the_commands_flags(name, command, parser):
    flags = {s for a in _options(parser) for s in a.option_strings} - {"-h", "--help"}
    assert flags == set(FLAGS[name].split())
    text = parser.format_help()
    for flag in flags:
        assert f"  {flag}" in text or f" {flag}," in text or f", {flag}" in text, flag
