"""Page load times of the review web app (``ribin serve``) on a large store.

    python benchmarks/bench_serve.py               # 10^4 exhibits (~2 min to build)
    python benchmarks/bench_serve.py --exhibits 1000 --pairs 3

The store is built as ``bench_search_speed.py`` builds its large stores: a few full-size
exhibits (the default signature size at 12.5 um, 3 shots per firearm) and thin 16 x 16 px
ones for the rest, written segment by segment, 9 countries. The real app is served by
waitress on 127.0.0.1 in this process and fetched over HTTP (``http.client``), so the times
include the server, the routing, the store reads, the comparison and the drawing. Measured:

- exhibit page: the HTML, then both signature images (what the page shows at once);
- compare view, which is the lead page's body (the lead page adds one SQLite read of the
  lead and of the queue): the HTML (reads both exhibits and compares them, both regions),
  then the four overlay layers; cold (a pair never shown) and warm (shown before, or drawn
  ahead while the previous lead was examined); the eight report figures below the fold,
  which load as the examiner scrolls, are timed on their own;
- search page: the form, and a search by stored exhibit over the network scope.

Times are medians over ``--pairs`` pairs; the Numba kernels are compiled (or loaded from
their cache) before anything is timed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from _common import (
    direct_exhibit,
    direct_firearm,
    direct_metadata,
    machine,
    thin_exhibit,
    write_direct_store,
)
from results import record

from ribin import prefilter
from ribin.web.server import THREADS

SHOTS = 3
SEGMENT = 1000
THIN_SCALE = 0.25


def build(path: Path, n: int, pool_size: int) -> list[str]:
    """A store of ``n`` exhibits; returns the labels (CC/ID) of the full-size ones."""
    pool = []
    for number in range(pool_size):
        if number % SHOTS == 0:
            firearm = direct_firearm(number // SHOTS)
        pool.append(direct_exhibit(number, firearm, number))
    vectors = [{k: prefilter.features(s) for k, s in e.signatures().items()} for e in pool]

    def groups():
        for first in range(0, n, SEGMENT):
            yield [
                (pool[i] if i < pool_size else thin_exhibit(i), direct_metadata(i))
                for i in range(first, min(first + SEGMENT, n))
            ]

    def features(exhibit):
        number = int(exhibit.exhibit_id[2:])
        source = vectors[number % pool_size]
        if number < pool_size:
            return source
        return {k: (v * THIN_SCALE).astype(np.float32) for k, v in source.items()}

    write_direct_store(path, groups(), features)
    return [f"{direct_metadata(i)['country']}/{pool[i].exhibit_id}" for i in range(pool_size)]


class Client:
    """One keep-alive HTTP connection, as a browser tab uses."""

    def __init__(self, port: int):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.cookie = ""

    def get(self, url: str) -> tuple[float, bytes]:
        start = time.perf_counter()
        self.connection.request("GET", url, headers={"Cookie": self.cookie})
        response = self.connection.getresponse()
        body = response.read()
        if response.getheader("Set-Cookie"):
            self.cookie = response.getheader("Set-Cookie").split(";")[0]
        if response.status != 200:
            raise SystemExit(f"GET {url}: HTTP {response.status}: {body[:300]!r}")
        return time.perf_counter() - start, body

    def post(self, url: str, fields: dict[str, str]) -> tuple[float, bytes]:
        start = time.perf_counter()
        headers = {"Cookie": self.cookie, "Content-Type": "application/x-www-form-urlencoded"}
        self.connection.request("POST", url, body=urlencode(fields), headers=headers)
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"POST {url}: HTTP {response.status}: {body[:300]!r}")
        return time.perf_counter() - start, body


def images(html: bytes, pattern: str) -> list[str]:
    found = re.findall(rb'src="(' + pattern.encode() + rb'[^"]*)"', html)
    return [u.decode().replace("&amp;", "&") for u in found]


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exhibits", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=5, help="pairs timed (pages per kind)")
    parser.add_argument("--keep", type=Path, help="build the store here and keep it")
    args = parser.parse_args()
    pool_size = SHOTS * (args.pairs + 1)
    root = Path(tempfile.mkdtemp(prefix="ribin-bench-serve-"))
    try:
        store = args.keep or root / "store"
        start = time.perf_counter()
        if not (store / "manifest.json").is_file():
            labels = build(store, args.exhibits, pool_size)
        else:
            labels = [f"{direct_metadata(i)['country']}/D-{i:07d}" for i in range(pool_size)]
        print(f"{machine()}\nstore of {args.exhibits} exhibits ready in "
              f"{time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        run(store, labels, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(store: Path, labels: list[str], args) -> None:
    from ribin.compare import compare
    from ribin.web import ServeConfig, create_app
    from ribin.web.server import bound_port, make_server

    warm = direct_exhibit(0, direct_firearm(0), 0)
    compare(warm.breech_face, warm.breech_face)  # compile or load the kernels first
    app = create_app(ServeConfig(store=store, port=0))
    server = make_server(app, "127.0.0.1", 0, app.config["MAX_CONTENT_LENGTH"])
    threading.Thread(target=server.run, daemon=True).start()
    client = Client(bound_port(server))
    load_before = os.getloadavg()[0]
    try:
        first_ms = client.get("/search")[0]
        opening = first_page_per_thread(bound_port(server), labels[-1])
        print(f"first request: {first_ms * 1000:.0f} ms; first exhibit page of each server "
              f"thread (its store object indexes the {args.exhibits} exhibits once): "
              f"{opening * 1000:.0f} ms", flush=True)  # fmt: skip
        rows = measure(client, labels, args.pairs)
        rows.insert(0, ["first exhibit page of each server thread (opens the store)",
                        round(opening * 1000, 1), THREADS])  # fmt: skip
    finally:
        server.close()
    load = (load_before, os.getloadavg()[0])
    print(f"load average (1 min) {load[0]:.1f} before, {load[1]:.1f} after the pages")
    for row in rows:
        print(f"  {row[0]:<58} {row[1]:>8.1f} ms  (n={row[2]})")
    record(
        "serve",
        f"Review web app page loads, store of {args.exhibits} exhibits",
        ["page (what is timed)", "median ms", "pages"],
        rows,
        notes="Real app behind waitress on 127.0.0.1, fetched over HTTP in the same machine "
        "(server and client share its cores); the compare view is the lead page's body. "
        "Cold: a pair never shown before; warm: drawn ahead. Target: under 1000 ms. "
        f"Load average of the machine (1 min): {load[0]:.1f} before, {load[1]:.1f} after.",
    )


def first_page_per_thread(port: int, label: str) -> float:
    """Median time of the first page served by each waitress thread (all at once)."""
    country, exhibit_id = label.split("/", 1)
    seconds: list[float] = []

    def fetch() -> None:
        seconds.append(Client(port).get(f"/exhibits/{country}/{exhibit_id}")[0])

    workers = [threading.Thread(target=fetch) for _ in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return statistics.median(seconds)


def measure(client: Client, labels: list[str], pairs: int) -> list[list]:
    times: dict[str, list[float]] = {}

    def note(name: str, seconds: float) -> None:
        times.setdefault(name, []).append(seconds)

    for label in labels[:pairs]:
        country, exhibit_id = label.split("/", 1)
        html_s, html = client.get(f"/exhibits/{country}/{exhibit_id}")
        image_s = sum(client.get(u)[0] for u in images(html, "/exhibit/signature.png"))
        note("exhibit page: HTML", html_s)
        note("exhibit page: HTML + both signature images", html_s + image_s)
    for number in range(pairs):
        a, b = labels[SHOTS * number], labels[SHOTS * number + 1]
        url = "/compare?" + urlencode({"a": a, "b": b})
        html_s, html = client.get(url)
        layers = images(html, "/pair/layer.png")
        layer_s = sum(client.get(u)[0] for u in layers)
        note("compare/lead page, cold: HTML (both exhibits compared)", html_s)
        note("compare/lead page, cold: HTML + 4 overlay layers", html_s + layer_s)
        figures = images(html, "/pair/figure.png")
        note("compare/lead page, cold: 8 report figures (below the fold)",
             sum(client.get(u)[0] for u in figures))  # fmt: skip
        # shown again: what a lead drawn ahead (while the previous one was examined) costs
        html_s, html = client.get(url)
        layer_s = sum(client.get(u)[0] for u in layers)
        note("compare/lead page, warm: HTML + 4 overlay layers", html_s + layer_s)
    html_s, html = client.get("/search")
    note("search page: form", html_s)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', html).group(1).decode()
    seconds, _ = client.post("/search", {"csrf_token": token, "exhibit": labels[0],
                                         "scope": "network", "top": "20"})  # fmt: skip
    note("search page: search by stored exhibit, scope network", seconds)
    return [[name, median_ms(values), len(values)] for name, values in times.items()]


if __name__ == "__main__":
    main()
