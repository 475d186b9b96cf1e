"""Run every benchmark and print Markdown tables for docs/performance.md."""
import os
import shutil
import sys
import tempfile

from . import (addresses, boot, bulk, change_feed, cross_reports, duplicates, exports, formulas, history, home, imports,
               lists, lists_pickers, load, notify_delivery, ops, report_cache, reminders, reports, retention, rollups,
               round_trip)
from .common import pg_url

SUITES = {"boot": boot.run, "reports": reports.run, "imports": imports.run, "exports": exports.run,
          "pickers": lists_pickers.run, "lists": lists.run, "ops": ops.run, "load": load.run,
          "formulas": formulas.run, "rollups": rollups.run,
          "bulk": bulk.run, "history": history.run, "notify_delivery": notify_delivery.run,
          "reminders": reminders.run, "home": home.run,
          "report_cache": report_cache.run, "cross_reports": cross_reports.run, "addresses": addresses.run,
          "retention": retention.run, "duplicates": duplicates.run, "change_feed": change_feed.run,
          "round_trip": round_trip.run}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        sys.exit(f"usage: python -m bench [{' '.join(SUITES)}]  (unknown: {' '.join(unknown)})")
    # the suites' databases and files (tempfile.mkdtemp, ~0.5 GB a suite at 1M rows) go into one folder of this run,
    # removed at the end; PORTAL_BENCH_KEEP=1 keeps it (its path is printed) to look at what a run left
    run_dir = tempfile.mkdtemp(prefix="bench-run-")
    tempfile.tempdir = run_dir
    try:
        for name in chosen:
            print("\n".join(SUITES[name](pg_url())))
            print()
    finally:
        if os.environ.get("PORTAL_BENCH_KEEP"):
            print(f"kept: {run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
