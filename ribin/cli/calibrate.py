"""``ribin calibrate``: fit and validate score-to-LR models on a lab's own test fires."""

from __future__ import annotations

from pathlib import Path

import click

from ribin.cli._common import echo_json, user_errors
from ribin.cli._options import advance, progress_bar


@click.command()
@click.argument("store", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--truth",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="CSV of exhibit_id (or file) and firearm for the known test fires.",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Default: STORE/calibration.json.")
@click.option("--source", help="What the test fires are, for the record (default: the CSV's name).")
@click.option("--name", help="Name quoted with every LR of this calibration (default: --source).")
@click.option("--scanner", help="Instrument and settings of the scans, for the record.")
@click.option(
    "--method",
    type=click.Choice(["logistic", "kde", "isotonic"]),
    default="logistic",
    show_default=True,
    help="lir score-to-LR calibrator.",
)
@click.option(
    "--html",
    "html_out",
    type=click.Path(dir_okay=False),
    help="Validation page (default: beside --out, .html).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@user_errors
def calibrate(
    store: str,
    truth: str,
    out: str | None,
    source: str | None,
    name: str | None,
    scanner: str | None,
    method: str,
    html_out: str | None,
    as_json: bool,
) -> None:
    """Fit and validate the log10 likelihood-ratio calibration of STORE from known test fires.

    Every pair of the known exhibits is compared; one lir model per region and modality
    is fitted on all pairs and validated leaving one firearm out at a time. Prints and
    stores Cllr, Cllr_min, the rates of misleading evidence and the ELUB bounds, and
    writes an HTML validation page.
    """
    from ribin.calibrate import calibrate_store, read_truth
    from ribin.calibration import CALIBRATION_FILE, save_models
    from ribin.store import SignatureStore
    from ribin.validation_report import decisions, held_out, write_validation_html

    labels = read_truth(truth)
    with SignatureStore.open(store, "r") as opened:
        with progress_bar("comparing", 1) as bar:
            models = calibrate_store(
                opened,
                labels,
                source=source or Path(truth).name,
                name=name or "",
                scanner=scanner or "",
                method=method,
                progress=advance(bar),
            )
    target = Path(out) if out else Path(store) / CALIBRATION_FILE
    save_models(target, models)
    page = Path(html_out) if html_out else target.with_suffix(".html")
    write_validation_html(page, models, command="ribin calibrate")
    if as_json:
        echo_json(
            {
                "calibration": str(target),
                "validation_page": str(page),
                "models": {k: m.to_dict() for k, m in models.items()},
            }
        )
        return
    click.echo(f"{bar.length} pairs compared; calibration written to {target}")
    click.echo(f"validation page: {page}")
    for key, model in sorted(models.items()):
        label, _, _, figures = held_out(model)
        click.echo(
            f"{key}: {model.n_match} same-source / {model.n_nonmatch} different-source pairs, "
            f"lir {model.method}, ELUB log10 LR in [{model.lower:+.2f}, {model.upper:+.2f}]"
        )
        click.echo(f"  validated on {label}:")
        for row in decisions(figures):
            value = row["result"]
            shown = "-" if value is None else f"{value:.3f}"
            click.echo(
                f"    {row['metric']:<28} {shown:>7}  (criterion {row['criterion']}: "
                f"{row['decision']})"
            )
