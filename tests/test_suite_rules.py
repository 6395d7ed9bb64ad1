"""The suite's own rules: an assertion that fails in another thread (a paho callback, a worker)
fails the test that started it, instead of becoming a warning nobody reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

FAILS_IN_A_THREAD = '''
import threading

def test_a_callback_thread_asserts():
    def callback():
        assert 1 == 2, "asserted in a callback thread"
    t = threading.Thread(target=callback)
    t.start()
    t.join()
'''


def test_an_assertion_in_a_thread_fails_the_test(tmp_path: Path) -> None:
    test_file = tmp_path / "test_in_thread.py"
    test_file.write_text(FAILS_IN_A_THREAD)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(ROOT / "setup.cfg"), "--rootdir", str(tmp_path), str(test_file)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout and "asserted in a callback thread" in proc.stdout
