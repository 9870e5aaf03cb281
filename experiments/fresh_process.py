"""Run a benchmark's worker in a fresh interpreter with the same environment and read
the JSON it prints last, so each measurement starts without another's thread pools,
heap or compiled programs."""
from __future__ import annotations

import json
import subprocess
import sys


def run_worker(script, *args):
    """`python script args...` in a new process -> the JSON value on its last stdout line."""
    out = subprocess.run([sys.executable, str(script), *map(str, args)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
