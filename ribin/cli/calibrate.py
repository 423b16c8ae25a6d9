"""``ribin calibrate``: fit score-to-likelihood-ratio models on a lab's own test fires."""

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@user_errors
def calibrate(store: str, truth: str, out: str | None, source: str | None, as_json: bool) -> None:
    """Refit the log10 likelihood-ratio calibration of STORE from known test fires."""
    from ribin.calibrate import calibrate_store, read_truth
    from ribin.calibration import CALIBRATION_FILE, save_models
    from ribin.store import SignatureStore

    labels = read_truth(truth)
    with SignatureStore.open(store, "r") as opened:
        with progress_bar("comparing", 1) as bar:
            models = calibrate_store(
                opened, labels, source=source or Path(truth).name, progress=advance(bar)
            )
    target = Path(out) if out else Path(store) / CALIBRATION_FILE
    save_models(target, models)
    if as_json:
        echo_json(
            {"calibration": str(target), "models": {k: m.to_dict() for k, m in models.items()}}
        )
        return
    click.echo(f"{bar.length} pairs compared; calibration written to {target}")
    for key, model in sorted(models.items()):
        click.echo(
            f"{key}: {model.n_match} match / {model.n_nonmatch} non-match pairs, "
            f"log10 LR in [{model.lower:+.2f}, {model.upper:+.2f}]"
        )
