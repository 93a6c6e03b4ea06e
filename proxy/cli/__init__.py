"""The ``baton`` command line: one module per command, thin over the library.

Each command parses its arguments, calls one library function and renders
the result. What commands share lives in one place each: option groups in
``options.py``, user errors and their exit code (2) in ``errors.py``. A new
command is a new module here, added to ``main`` below.
"""

from __future__ import annotations

import click

from baton.proxy.cli.addon_path import addon_path
from baton.proxy.cli.diff import diff
from baton.proxy.cli.export import export
from baton.proxy.cli.import_ import import_
from baton.proxy.cli.lint import lint
from baton.proxy.cli.record import record
from baton.proxy.cli.repair import repair
from baton.proxy.cli.replay import replay
from baton.proxy.cli.show import show
from baton.proxy.cli.textconv import textconv

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="baton-replay", prog_name="baton")
def main() -> None:
    """Record HTTP traffic between services into cassettes, and use them.

    \b
    Record:  baton record -o api.cassette --mode reverse:http://127.0.0.1:8000
    Replay:  baton replay api.cassette --listen-port 9000
    Drift:   baton diff api.cassette --target http://127.0.0.1:8000
    Look:    baton show api.cassette
    Mend:    baton repair api.cassette
    """


for _command in (record, replay, diff, import_, export, textconv, lint, show, repair, addon_path):
    main.add_command(_command)
