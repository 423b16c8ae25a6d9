"""Builders of hostile and oversized inputs, shared by the tests and the memory benchmark.

Not a test module: ``tests/test_hostile_inputs.py`` and ``benchmarks/bench_memory_budget.py``
import it.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from ribin.io.x3p import X3P, write_x3p

_CHUNK = 1 << 22


def x3p_declaring(
    path: Path,
    size_x: int,
    size_y: int,
    *,
    data_type: str = "I",
    increment: str | None = None,
    fill: bytes | None = b"\0",
    noise: bool = False,
) -> Path:
    """An X3P whose header declares ``size_x x size_y`` points.

    ``fill`` repeats one byte over the whole point data (a zero-filled surface compresses
    about 1000-fold: a decompression bomb); ``noise`` writes random int16 points instead
    (a large legitimate-looking scan); ``fill=None`` writes no point data at all (the
    header alone). ``increment`` replaces the lateral increments' text.
    """
    small = path.with_suffix(".small.x3p")
    write_x3p(
        small,
        X3P(heights=np.full((4, 4), 1e-6), pixel_size_x_um=1.5, pixel_size_y_um=1.5),
        data_type=data_type,
    )
    with zipfile.ZipFile(small) as zf:
        xml = zf.read("main.xml").decode()
    small.unlink()
    xml = re.sub(r"<SizeX>\d+</SizeX>", f"<SizeX>{size_x}</SizeX>", xml)
    xml = re.sub(r"<SizeY>\d+</SizeY>", f"<SizeY>{size_y}</SizeY>", xml)
    xml = re.sub(r"\s*<MD5ChecksumPointData>\w+</MD5ChecksumPointData>", "", xml)
    if increment is not None:
        xml = xml.replace("<Increment>1.5e-06</Increment>", f"<Increment>{increment}</Increment>")
    body = xml.encode()
    itemsize = {"I": 2, "L": 4, "F": 4, "D": 8}[data_type]
    total = size_x * size_y * itemsize
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("main.xml", body)
        zf.writestr("md5checksum.hex", f"{hashlib.md5(body).hexdigest()} *main.xml\n")
        if fill is not None or noise:
            rng = np.random.default_rng(0)
            with zf.open("bindata/data.bin", "w", force_zip64=True) as member:
                left = total
                block = (fill or b"\0") * _CHUNK
                while left:
                    n = min(left, _CHUNK)
                    if noise:
                        member.write(rng.integers(-3000, 3000, n // 2, dtype="<i2").tobytes())
                    else:
                        member.write(block[:n])
                    left -= n
    return path


def measure(code: str, env: dict[str, str] | None = None, timeout: float = 600) -> dict:
    """Run ``code`` in a fresh interpreter; its last stdout line and peak RSS (MB), seconds.

    The peak is the child's own high-water mark (``VmHWM`` where /proc exists, else
    ``ru_maxrss``): on Linux ``ru_maxrss`` keeps the high-water mark of the process before
    ``exec``, i.e. the forked copy of a large parent (a pytest run holding 1 GB), so it
    would report the parent's size, not the input's.

    ``code`` runs inside a try block; a :class:`ribin.errors.RibinError` prints
    ``REFUSED <message>``, anything else escapes (a traceback fails the caller's check).
    """
    wrapper = (
        "import resource, sys, time\n"
        "from ribin.errors import RibinError\n"
        "start = time.perf_counter()\n"
        "try:\n"
        + "".join(f"    {line}\n" for line in code.strip().splitlines())
        + "    print('ACCEPTED')\n"
        "except RibinError as exc:\n"
        "    print('REFUSED', str(exc))\n"
        "seconds = time.perf_counter() - start\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "try:  # Linux: ru_maxrss also counts the parent's pages copied at fork; VmHWM not\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            peak = int(line.split()[1]) / 1024\n"
        "except OSError:\n"
        "    pass\n"
        "print(f'PEAK {peak:.0f} SECONDS {seconds:.2f}')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout, env=env
    )
    lines = out.stdout.strip().splitlines()
    result = {"returncode": out.returncode, "stderr": out.stderr, "stdout": out.stdout}
    if out.returncode == 0 and len(lines) >= 2:
        peak = lines[-1].split()
        result.update(
            outcome=lines[-2],
            peak_mb=float(peak[1]),
            seconds=float(peak[3]),
        )
    return result
