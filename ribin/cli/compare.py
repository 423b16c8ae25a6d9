"""``ribin compare``: two exhibits side by side, region by region."""

from __future__ import annotations

from pathlib import Path

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._options import (
    extract_kwargs,
    extraction_options,
    is_casing_file,
    kernels_ready,
    kernels_soon,
)


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
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Also write a self-contained HTML report to this file.",
)
@click.option(
    "--png",
    "png_dir",
    type=click.Path(file_okay=False),
    help="Also write the report's figures as PNG files into this folder.",
)
@user_errors
def compare(first: str, second: str, store: str | None, **params) -> None:
    """Compare FIRST and SECOND (casing files, or exhibit IDs in --store)."""
    from dataclasses import asdict

    from ribin.calibration import model_key, models_for_store
    from ribin.compare import compare as compare_signatures
    from ribin.errors import InputError
    from ribin.ingest import extract_file
    from ribin.store import SignatureStore

    as_json = params.pop("as_json")
    report_path, png_dir = params.pop("report_path"), params.pop("png_dir")
    pixel_size = params.pop("pixel_size")
    options = extract_kwargs(params)
    if report_path:
        from ribin.report import check_writable

        check_writable(report_path)
    for name in (first, second):
        is_casing_file(name)  # a missing "x.x3p" is a missing file, not an exhibit ID
    kernels_soon()  # a first run compiles kernels while the casings are read
    opened = SignatureStore.open(store, "r") if store else None
    try:
        exhibits, metadata = [], []
        for name in (first, second):
            if Path(name).is_file():
                exhibits.append(extract_file(name, pixel_size_um=pixel_size, **options))
                metadata.append({})
            elif opened is not None:
                stored = opened.get(name)
                exhibits.append(stored.exhibit)
                metadata.append(asdict(stored.metadata))
            else:
                raise InputError(name, "no such file (pass --store to name a stored exhibit)")
    finally:
        if opened is not None:
            opened.close()
    models, calibration_source = models_for_store(store)
    kernels_ready()
    a, b = exhibits
    regions, results = {}, {}
    for region, sig_a in a.signatures().items():
        sig_b = b.signatures().get(region)
        if sig_b is None or sig_b.modality != sig_a.modality:
            continue
        result = compare_signatures(sig_a, sig_b)
        results[region] = result
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
            "calibration": (model.name or model_key(region, sig_a.modality)) if model else None,
        }
    if not regions:
        raise click.ClickException(
            f"{a.exhibit_id} and {b.exhibit_id} share no region of the same modality"
        )
    if report_path or png_dir:
        _write_report(
            a, b, results, models, calibration_source, metadata, report_path, png_dir,
            {"command": "ribin compare", "first": first, "second": second, "store": store,
             "pixel_size": pixel_size, **{k: str(v) for k, v in options.items()}},
        )  # fmt: skip
    if as_json:
        echo_json({"first": a.exhibit_id, "second": b.exhibit_id, "regions": regions})
        return
    click.echo(f"{a.exhibit_id} vs {b.exhibit_id}")
    for region, r in regions.items():
        lr = (
            f", log10 LR {r['log_lr']:+.2f} ({r['calibration']})"
            if r["log_lr"] is not None
            else ", uncalibrated (no LR: `ribin calibrate` on the lab's own test fires)"
        )
        click.echo(
            f"{region}: score {r['score']:.2f}, CMC {r['cmc_count']} of {r['cells']} cells, "
            f"rotation {r['rotation_deg']:.1f} deg, shift ({r['dx_um']:.0f}, {r['dy_um']:.0f}) um, "
            f"overall correlation {r['overall_corr']:.2f}{lr}"
        )


def _write_report(a, b, results, models, calibration_source, metadata, report_path, png_dir, args):
    """The HTML report and/or the figures of a comparison (nothing printed on stdout)."""
    from ribin import report

    pair = report.compare_pair(
        a,
        b,
        models,
        first_metadata=metadata[0],
        second_metadata=metadata[1],
        calibration_source=calibration_source,
        results=results,
    )
    figures = report.pair_figures(pair)
    if png_dir:
        report.write_figures(png_dir, figures)
        click.echo(f"figures written to {png_dir}", err=True)
    if report_path:
        document = report.compare_html(pair, parameters=args, figures=figures)
        report.write_report(report_path, document)
        click.echo(f"report written to {report_path}", err=True)
