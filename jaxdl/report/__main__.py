"""python -m jaxdl.report DIR... [--out DIR_OR_FILE.md] [--metric test/accuracy]"""
from __future__ import annotations

import argparse
import shlex
import sys

from jaxdl.report import make_report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jaxdl.report",
        description="Write report.md (+ PNG figures) from run dirs: a Hydra multirun dir, a population run, "
                    "or several dirs. Reads files only; selects on validation, never on test.")
    ap.add_argument("dirs", nargs="+", help="run dirs, multirun dirs, or folders of them")
    ap.add_argument("--out", default=None, help="a directory for report.md, or a path ending in .md "
                                                "(default: the one DIR given, or the common parent of several)")
    ap.add_argument("--metric", default=None, help="the test metric to report, e.g. test/loss "
                                                   "(default: the runs' headline); selection reads its val/ twin")
    a = ap.parse_args(argv)
    command = "python -m jaxdl.report " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[1:]))
    try:
        md, report = make_report(a.dirs, a.out, a.metric, command)
    except (ValueError, FileNotFoundError) as err:
        print(f"[jaxdl.report] error: {err}", file=sys.stderr)
        return 2
    sel = report.selected
    print(f"[jaxdl.report] {len(report.configs)} config(s); "
          + (f"selected on {report.val_metric}: {report.label(sel)} ({report.metric} "
             f"{sel.stats[report.metric].mean:.4g})" if sel else "no selection: " + report.no_selection))
    print(f"[jaxdl.report] wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
