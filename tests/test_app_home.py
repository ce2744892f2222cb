"""The home page renders without TensorFlow and shows the active design."""

import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]


def test_home_page_shows_the_classic_design():
    app = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    assert not app.exception
    assert app.title[0].value.endswith("CAE Studio")
    metrics = {metric.label: metric.value for metric in app.metric}
    assert metrics["Design"] == "classic"
    assert metrics["Latent code"] == "7x7x1"
    assert metrics["Parameters"] == "2,690"
    texts = " ".join(block.value for block in app.markdown)
    assert "Active run: **classic (default)**" in texts  # the shipped default run
    assert "PSNR 17.7 dB" in texts


def test_home_page_does_not_import_tensorflow():
    code = (
        "import sys; from streamlit.testing.v1 import AppTest; "
        f"app = AppTest.from_file({str(REPO / 'app.py')!r}, default_timeout=60).run(); "
        "assert not app.exception, app.exception; "
        "print('tensorflow' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("False"), result.stdout
