"""``storemon assets``: the dashboard's charting library, fetched once from the npm registry.

The dashboard draws its charts with uPlot (MIT licence, about 50 KB, no dependencies). The
project does not carry a copy: this command downloads the pinned release tarball, checks it
against the registry's published SHA-512 integrity value, and keeps the browser build, its
stylesheet and its licence in ``$XDG_CACHE_HOME/storemon/assets/uplot-<version>/`` (or
``STOREMON_ASSETS_DIR``), where the API serves them from. ``scripts/setup`` runs it. Without
them the dashboard still shows every number and the heatmap, only the charts are missing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

UPLOT_VERSION = "1.6.32"
UPLOT_TARBALL = f"https://registry.npmjs.org/uplot/-/uplot-{UPLOT_VERSION}.tgz"
UPLOT_INTEGRITY = "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw=="
# file in the tarball -> name served under /dashboard/assets/vendor/
VENDOR_FILES = {
    "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "package/dist/uPlot.min.css": "uPlot.min.css",
    "package/LICENSE": "uPlot.LICENSE.txt",
}
DOWNLOAD_TIMEOUT_S = 60


class AssetError(RuntimeError):
    pass


def vendor_dir() -> Path:
    override = os.environ.get("STOREMON_ASSETS_DIR")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storemon" / "assets" / f"uplot-{UPLOT_VERSION}"


def vendor_ready(folder: Path | None = None) -> bool:
    folder = folder or vendor_dir()
    return all((folder / name).is_file() for name in VENDOR_FILES.values())


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise unless ``data`` matches an npm ``sha512-<base64>`` integrity value."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(f"tarball integrity mismatch: got sha512-{actual}")


def unpack(data: bytes, folder: Path) -> None:
    """Write the wanted files of the tarball into ``folder`` (names fixed, never taken from
    the archive, so nothing lands outside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member_name, target in VENDOR_FILES.items():
            try:
                member = archive.extractfile(member_name)
            except KeyError:
                member = None
            if member is None:
                raise AssetError(f"{member_name} missing from the tarball")
            partial = folder / f".{target}.part"
            partial.write_bytes(member.read())
            partial.replace(folder / target)


def fetch(folder: Path | None = None) -> Path:
    folder = folder or vendor_dir()
    if vendor_ready(folder):
        return folder
    try:
        with urllib.request.urlopen(UPLOT_TARBALL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except OSError as error:
        raise AssetError(f"cannot download {UPLOT_TARBALL}: {error}") from error
    check_integrity(data, UPLOT_INTEGRITY)
    unpack(data, folder)
    return folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="only say whether they are there")


def run(args: argparse.Namespace) -> int:
    if args.check:
        ready = vendor_ready()
        print(f"{vendor_dir()}: {'ready' if ready else 'missing'}")
        return 0 if ready else 1
    try:
        folder = fetch()
    except AssetError as error:
        print(f"storemon assets: {error}", file=sys.stderr)
        return 1
    print(folder)
    return 0
