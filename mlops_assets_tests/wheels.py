"""Package indexes of the tests' own (folders uv reads with --find-links): wheels made by hand, and
the wheelhouse make fills with the real libraries the tests' projects lock (LightGBM, XGBoost):
a project's requirements resolve and install without leaving this machine."""

import base64
import hashlib
import zipfile
from pathlib import Path

# `make test` fetches these by hash (mlops_assets_tests/wheelhouse.txt) before the tests run.
WHEELHOUSE = Path(__file__).resolve().parents[1] / ".wheelhouse"


def make_wheel(folder: Path, name: str, version: str) -> Path:
    """A pure-Python wheel as a build backend would write it: a module, METADATA, WHEEL, RECORD."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }

    def record_line(path: str, text: str) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        return f"{path},sha256={digest},{len(text.encode())}"

    record = "\n".join(record_line(p, t) for p, t in files.items()) + f"\n{dist_info}/RECORD,,\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in {**files, f"{dist_info}/RECORD": record}.items():
            archive.writestr(path, text)
    return wheel
