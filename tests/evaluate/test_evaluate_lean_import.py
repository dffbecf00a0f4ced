import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_is_cheap():
    code = (
        "import sys, compressor.evaluate, compressor.report\n"
        "heavy = [m for m in ('torch', 'transformers', 'numpy', 'sklearn', 'onnxruntime',"
        " 'tabulate') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
