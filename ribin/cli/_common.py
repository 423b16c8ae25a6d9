"""Shared helpers of the click commands: error translation and JSON output."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ribin.errors import RibinError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn library errors into one-line click errors (exit code 1, no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RibinError as exc:
            raise click.ClickException(str(exc).splitlines()[0] if str(exc) else repr(exc)) from exc

    return wrapper  # type: ignore[return-value]


def echo_json(value: Any) -> None:
    """Print one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))
