"""``ribin compare``: two exhibits side by side, region by region."""

from __future__ import annotations

from pathlib import Path

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._options import extract_kwargs, extraction_options


@click.command()
@click.argument("first")
@click.argument("second")
@click.option(
    "--store",
    type=click.Path(exists=True, file_okay=False),
    help="Store holding exhibits named by ID.",
)
@extraction_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@user_errors
def compare(first: str, second: str, store: str | None, **params) -> None:
    """Compare FIRST and SECOND (casing files, or exhibit IDs in --store)."""
    from ribin.calibration import model_key, models_for_store
    from ribin.compare import compare as compare_signatures
    from ribin.errors import InputError
    from ribin.ingest import extract_file
    from ribin.store import SignatureStore

    as_json = params.pop("as_json")
    pixel_size = params.pop("pixel_size")
    options = extract_kwargs(params)
    opened = SignatureStore.open(store, "r") if store else None
    try:
        exhibits = []
        for name in (first, second):
            if Path(name).is_file():
                exhibits.append(extract_file(name, pixel_size_um=pixel_size, **options))
            elif opened is not None:
                exhibits.append(opened.get(name).exhibit)
            else:
                raise InputError(name, "no such file (pass --store to name a stored exhibit)")
    finally:
        if opened is not None:
            opened.close()
    models, _ = models_for_store(store)
    a, b = exhibits
    regions = {}
    for region, sig_a in a.signatures().items():
        sig_b = b.signatures().get(region)
        if sig_b is None or sig_b.modality != sig_a.modality:
            continue
        result = compare_signatures(sig_a, sig_b)
        model = models.get(model_key(region, sig_a.modality))
        regions[region] = {
            "score": result.score,
            "cmc_count": result.cmc_count,
            "cells": result.forward.n_cells,
            "rotation_deg": result.registration.rotation_deg,
            "dx_um": result.registration.dx_um,
            "dy_um": result.registration.dy_um,
            "overall_corr": result.overall_corr,
            "log_lr": float(model.log10_lr(result.score)) if model else None,
        }
    if not regions:
        raise click.ClickException(
            f"{a.exhibit_id} and {b.exhibit_id} share no region of the same modality"
        )
    if as_json:
        echo_json({"first": a.exhibit_id, "second": b.exhibit_id, "regions": regions})
        return
    click.echo(f"{a.exhibit_id} vs {b.exhibit_id}")
    for region, r in regions.items():
        lr = f", log10 LR {r['log_lr']:+.2f}" if r["log_lr"] is not None else ""
        click.echo(
            f"{region}: score {r['score']:.2f}, CMC {r['cmc_count']} of {r['cells']} cells, "
            f"rotation {r['rotation_deg']:.1f} deg, shift ({r['dx_um']:.0f}, {r['dy_um']:.0f}) um, "
            f"overall correlation {r['overall_corr']:.2f}{lr}"
        )
