"""``ribin demo``: the whole job on the bundled synthetic casings."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ribin.cli._common import user_errors
from ribin.cli._options import advance, kernels_ready, progress_bar


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="ribin-demo",
    show_default=True,
    help="Folder for what the demo writes (the store, and the casings if regenerated).",
)
@click.option("--modality", type=click.Choice(["3d", "2d"]), default="3d", show_default=True)
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True)
@user_errors
def demo(out: str, modality: str, top: int) -> None:
    """Ingest the synthetic casings as Barbados, Belize and Jamaica; search at three scopes.

    The casings (data/synthetic_casings, regenerated under OUT when not found) are spread
    over the three countries, one shot of each firearm being a questioned casing. The first
    firearm's questioned casing is then searched within its own country, the BB/BZ/JM
    cluster, and the whole network.
    """
    from ribin.calibration import models_for_store
    from ribin.cli.search import format_table
    from ribin.demo import SCOPES, build_demo_store, questioned_casing
    from ribin.search import search
    from ribin.store import SignatureStore
    from ribin.synthetic import find_committed_set, locate_or_generate

    rows = locate_or_generate(out)
    casings = find_committed_set() or Path(out) / "synthetic_casings"
    store_path = Path(out) / "store"
    Path(out).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    chosen = sum(1 for r in rows if r["modality"] == modality)
    with progress_bar("ingesting", chosen) as bar:
        results = build_demo_store(
            casings,
            rows,
            store_path,
            modality=modality,
            progress=advance(bar),
        )
    added = sum(r.added for r in results)
    click.echo(
        f"store {store_path}: {len(results)} {modality} casings from {casings} "
        f"({added} new) in {time.perf_counter() - started:.1f} s"
    )
    query = questioned_casing(rows, modality)
    models, source = models_for_store(store_path)
    kernels_ready()  # the first run compiles the comparison kernels: say so, then do it
    with SignatureStore.open(store_path, "r") as store:
        for scope in SCOPES:
            click.echo("")
            result = search(store, query, scope=scope, top=top, calibration=models)
            click.echo(format_table(result))
    click.echo("")
    click.echo(
        f"calibration: {source}. A likelihood ratio supports the examiner's comparison "
        "under the microscope; it is not a conclusion."
    )
