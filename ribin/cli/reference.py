"""The CLI reference (docs/cli.md), generated from the click commands so it cannot drift.

python -m ribin.cli.reference > docs/cli.md
"""

from __future__ import annotations

import click

HEADER = """\
# `ribin` command reference

Generated from the commands themselves by `python -m ribin.cli.reference > docs/cli.md`;
a test fails when this file and the commands disagree. Every command takes `-h/--help`.
Exit codes: 0 success, 1 a user error (one line on stderr), 2 a usage error.
"""


def render(group: click.Group | None = None) -> str:
    """Markdown reference of every command of ``group`` (default: ``ribin``).

    Parameters
    ----------
    group : click.Group, optional
        The command group to document.

    Returns
    -------
    str
        One section per command, sub-commands in order, each with its usage line, help
        text and options as ``--help`` prints them.
    """
    if group is None:
        from ribin.cli import main

        group = main
    sections = [HEADER]
    settings = {"terminal_width": 100, "max_content_width": 100, **group.context_settings}
    root = click.Context(group, info_name="ribin", **settings)
    for path, ctx in _walk(root):
        text = ctx.command.get_help(ctx)
        sections.append(f"## `{' '.join(path)}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(sections)


def _walk(ctx: click.Context):
    command = ctx.command
    yield _path(ctx), ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or sub.hidden:
                continue
            yield from _walk(click.Context(sub, info_name=name, parent=ctx))


def _path(ctx: click.Context) -> list[str]:
    names = []
    while ctx is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return names[::-1]


if __name__ == "__main__":
    click.echo(render(), nl=False)
