"""Command-line options declared once: from the fields of a config dataclass and the
``Attributes:`` section of its docstring (the same words as the API reference).

A field ``images_per_class: int = 1`` documented as ``images_per_class: support images
per class`` becomes ``--images-per-class N`` with that help and ``(default: 1)``; a
``bool | None`` field becomes ``--x / --no-x``; a ``tuple[str, ...]`` a comma list. A
field's ``metadata["cli"]`` may set ``flag``, ``metavar`` and ``choices``, or ``skip``
(a field the run records but the user never gives). Options the
user does not give stay ``None`` in the namespace, so the dataclass applies its own
default (one place for every default).
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


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


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
      >>> finite(float)("inf")
      Traceback (most recent call last):
      argparse.ArgumentTypeError: expected a finite number, got 'inf': inf and nan are refused; give an ordinary number
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


def numbers(kind: Callable[[str], Any], what: str) -> Callable[[str], tuple[Any, ...]]:
    """argparse type: comma-separated ``kind`` values (at least one)."""

    def parse(text: str) -> tuple[Any, ...]:
        try:
            values = tuple(kind(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {what}, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one of the {what}")
        return values

    return parse


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
    """Adds one ``--option`` per field of ``config_class`` (a dataclass) to ``parser``.

    Args:
      parser: a parser or an argument group.
      config_class: the dataclass.
      skip: field names left out.
      docs: more classes whose ``Attributes:`` document fields ``config_class`` does not.
    """
    helps = documented_attributes(config_class, *docs)
    hints = typing.get_type_hints(config_class)
    skipped = set(skip)
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
            default = field.default
            shown = ",".join(default) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})"
        options: dict[str, Any] = {"dest": field.name, "default": None, "help": text}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(kind) is tuple:
            options["type"] = _comma_list
        else:
            options["type"] = finite(kind) if kind is float else kind
        options.update(cli)
        parser.add_argument(flag, **options)


def config_options(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The fields of ``config_class`` given on the command line (``None``: not given)."""
    return {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(config_class)
        if getattr(args, field.name, None) is not None
    }
