"""Command-line options declared once: from the fields of a config dataclass and the
``Attributes:`` section of its docstring (the same words as the API reference).

Every option of every command is declared this way: a run's config
(``kipd.runs.KipConfig``, ``LabelSolveConfig``), where blocks run
(``kipd.compute.ExecutorConfig``), how a distilled set is read back
(``kipd.runs.DatasetOptions``, ``EvaluateOptions``), ``kipd.transfer.TransferOptions``
and the analyses' (``kipd.analysis.ContextOptions``, ``BaselineOptions``, each registered
analysis's).

A field ``images_per_class: int = 1`` documented as ``images_per_class: support images
per class`` becomes ``--images-per-class N`` with that help and ``(default: 1)``; a
``bool | None`` field becomes ``--x / --no-x``; a ``tuple[float, ...]`` a comma list
(:func:`comma_list`). A field's ``metadata["cli"]`` may set ``flag``, ``metavar``,
``choices`` and ``action``, ``positive`` (an integer >= 1, refused by the parser),
``group`` (the title of the help section it is listed in), or ``skip`` (a field the run
records but the user never gives). Options the user does not give stay ``None`` in the
namespace, so the dataclass applies its own default (one place for every default).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

_ATTRIBUTE = re.compile(r"^(\s*)([a-z_][a-z0-9_, ]*):\s*(.*)$")


def _plain(text: str) -> str:
    """Docstring markup as plain text: roles and double backticks dropped; ``%``
    escaped for argparse."""
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)
    text = text.replace("``None``", "unset").replace("``", "")
    return text.rstrip(".").replace("%", "%%")


def documented_attributes(*classes: type) -> dict[str, str]:
    """``{name: help}`` from the ``Attributes:`` sections of the classes' docstrings
    (the first class that documents a name wins).

    Example:
      >>> class A:
      ...     '''Doc.
      ...
      ...     Attributes:
      ...       size: images per class, e.g.
      ...         ``10``.
      ...     '''
      >>> documented_attributes(A)
      {'size': 'images per class, e.g. 10'}
    """
    found: dict[str, str] = {}
    for cls in classes:
        lines = inspect.cleandoc(cls.__doc__ or "").splitlines()
        if "Attributes:" not in lines:
            continue
        indent, current = None, None
        for line in lines[lines.index("Attributes:") + 1 :]:
            if not line.strip():
                continue
            depth = len(line) - len(line.lstrip())
            if indent is None:
                indent = depth
            if depth < indent:
                break  # the next section
            match = _ATTRIBUTE.match(line)
            if depth == indent and match:
                names = [n.strip() for n in match.group(2).split(",")]
                # "a, b: as in X" documents nothing new; a name documented earlier keeps that
                current = names[0] if len(names) == 1 and names[0] not in found else None
                if current is not None:
                    found[current] = match.group(3).strip()
            elif current is not None:
                found[current] = f"{found[current]} {line.strip()}"
    return {name: _plain(text) for name, text in found.items()}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def finite(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """argparse type: ``parse(text)`` (a number or a tuple of them), refused where a number
    is inf or nan. Every float option goes through it: a non-finite value passes most range
    checks (``inf > 0``) and would fail only later, deep inside the run.

    Example:
      >>> finite(float)("0.5")
      0.5
      >>> finite(float)("inf")  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      argparse.ArgumentTypeError: expected a finite number, got 'inf': inf and nan are refused...
    """

    def parse_finite(text: str) -> Any:
        value = parse(text)
        values = value if isinstance(value, tuple) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(
                f"expected a finite number, got {text!r}: inf and nan are refused; give an "
                "ordinary number"
            )
        return value

    return parse_finite


_PLURALS: dict[Any, str] = {int: "integers", float: "numbers", str: "names"}


def comma_list(kind: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """argparse type: comma-separated ``kind`` values (at least one; blanks around a comma
    ignored). The one parser of every comma list (kernels, fractions, grids, rows).

    Example:
      >>> comma_list(float)("0.5, 1,2")
      (0.5, 1.0, 2.0)
      >>> comma_list(int)("1,two")
      Traceback (most recent call last):
      argparse.ArgumentTypeError: expected comma-separated integers, got '1,two'
    """
    what = _PLURALS.get(kind, "values")

    def parse(text: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(v.strip()) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one of the {what}")
        return values

    return parse


def _shown(default: Any) -> Any:
    """A default as ``--help`` shows it: a tuple as its comma list (``0.5,1,2``)."""
    if isinstance(default, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in default)
    return default


def _base_type(hint: Any) -> Any:
    """``int`` for ``int | None``, ``tuple[str, ...]`` stays as it is."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return hint


def add_config_options(
    parser: argparse.ArgumentParser | Any,
    config_class: type,
    *,
    skip: Iterable[str] = (),
    docs: Iterable[type] = (),
) -> None:
    """Adds one ``--option`` per field of ``config_class`` (a dataclass) to ``parser``;
    a field with a ``group`` goes to that section of the parser's help.

    Args:
      parser: a parser, or an argument group (for fields without a ``group``).
      config_class: the dataclass.
      skip: field names left out.
      docs: more classes whose ``Attributes:`` document fields ``config_class`` does not.
    """
    helps = documented_attributes(*config_class.__mro__, *docs)  # a base documents its own
    hints = typing.get_type_hints(config_class)
    skipped = set(skip)
    groups: dict[str, Any] = {}
    for field in dataclasses.fields(config_class):
        if field.name in skipped:
            continue
        cli = dict(field.metadata.get("cli", {}))
        if cli.pop("skip", False):  # recorded by the run, never given on the command line
            continue
        flag = cli.pop("flag", "--" + field.name.replace("_", "-"))
        kind = _base_type(hints[field.name])
        text = helps.get(field.name, "")
        if field.default is not None and field.default is not dataclasses.MISSING:
            text = f"{text} (default: {_shown(field.default)})"
        options: dict[str, Any] = {"dest": field.name, "default": None, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            options["type"] = finite(comma_list(typing.get_args(kind)[0]))
        elif cli.pop("positive", False):
            options["type"] = positive_int
        else:
            options["type"] = finite(kind) if kind is float else kind
        title = cli.pop("group", None)
        if title is not None and title not in groups:
            groups[title] = parser.add_argument_group(title)
        options.update(cli)
        (parser if title is None else groups[title]).add_argument(flag, **options)


def config_options(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` given on the command line (``None``: not given)."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config_class)
        if getattr(args, field.name, None) is not None
    }


def options_from(args: argparse.Namespace, options_class: type) -> Any:
    """``options_class`` (a dataclass) with the fields given on the command line, the
    rest at their defaults."""
    return options_class(**config_options(args, options_class))
