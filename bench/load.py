"""Peak load: 50 logged-in users on 1M labour entries, through the production gunicorn command.

`python -m bench.load [options]` (or `make bench-load`, or `python -m bench load`):
1. seeds PostgreSQL database `portal_load` once (bench/load_seed.py; skipped when already seeded);
2. starts the README's production command, `gunicorn --preload -w 2 -b 127.0.0.1:<port> run:app`, in the
   repo root (so ./gunicorn.conf.py applies when present), and the anchor (bench/load_anchor.py, a raw-SQL
   Flask page) under the same gunicorn settings;
3. runs locust headless (bench/load_locustfile.py): per run an anchor slice, then the portal mix; `--runs`
   times, interleaved, median and spread reported;
4. fetches the 1M-row CSV and XLSX exports through gunicorn (time to first byte, total, complete or cut);
5. prints a Markdown section for docs/performance.md and keeps raw results in var/bench-load/.
gunicorn and locust are always stopped at the end, also on Ctrl+C or an error. Traffic goes only to
127.0.0.1; every loop is bounded in count and time.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .load_seed import FIRM_KINDS, FIRMS, Sizes, database_url, ensure_seeded

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
TARGETS = {"errors": 0, "p95": 1.0, "p99": 2.0}  # printed beside the figures
PORTAL_REPORTS = ["labour_cost_by_month", "labour_by_project", "labour_by_worker"]
FOREMAN_REPORTS = ["labour_by_project", "labour_by_worker"]  # what SiteForeman may open (schemas/labour.yaml)
KILLED = re.compile(r"WORKER TIMEOUT \(pid:(\d+)\)|Worker \(pid:(\d+)\) was sent SIG")  # gunicorn's arbiter log
APP_ERRORS = re.compile(r"Exception on |Traceback \(most recent call last\)")


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("PORTAL_BENCH_PG") or os.environ.get("PORTAL_TEST_DATABASE_URL"),
                        help="URL of the bench PostgreSQL server (any database on it; default $PORTAL_BENCH_PG)")
    parser.add_argument("--database", default="portal_load", help="database to seed and serve (default portal_load)")
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2_000, help="Worker rows (not gunicorn workers)")
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--duration", type=int, default=60, help="seconds of portal load per run")
    parser.add_argument("--anchor-duration", type=int, default=20, help="seconds of anchor load per run")
    parser.add_argument("--warmup", type=int, default=10, help="seconds of light load (5 users) before run 1, not counted")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--wait-min", type=float, default=0.5, help="think time between a user's requests (s)")
    parser.add_argument("--wait-max", type=float, default=1.5)
    parser.add_argument("--request-timeout", type=float, default=60, help="locust's per-request timeout (s)")
    parser.add_argument("--port", type=int, default=18510, help="portal port; the anchor uses port + 1")
    parser.add_argument("--no-exports", dest="exports", action="store_false", help="skip the export phase")
    parser.add_argument("--export-timeout", type=float, default=600, help="give up on one export after this (s)")
    parser.add_argument("--no-preload", dest="preload", action="store_false",
                        help="diagnosis only: start gunicorn without --preload (the report says so)")
    parser.add_argument("--include-ramp", dest="steady", action="store_false",
                        help="count the ramp-up too (every user signing in within the first seconds); default: "
                             "statistics start once all users have spawned")
    parser.add_argument("--label", default="", help='shown in the heading, e.g. "before"')
    parser.add_argument("--out", default=str(ROOT / "var" / "bench-load"), help="raw results and logs")
    parsed = parser.parse_args(argv)
    if not parsed.pg:
        parser.error("no PostgreSQL: pass --pg or set PORTAL_BENCH_PG (make bench-load does)")
    if not 1 <= parsed.runs <= 20 or parsed.duration > 3600 or parsed.anchor_duration > 3600:
        parser.error("keep --runs in 1..20 and durations under an hour")
    return parsed


# -- processes ---------------------------------------------------------------------------------

class Gunicorn:
    """`gunicorn --preload -w 2 -b 127.0.0.1:<port> <target>` in its own process group, logging to a file."""

    def __init__(self, target: str, port: int, env: dict, log_path: Path, preload: bool = True) -> None:
        self.target, self.port, self.env, self.log_path, self.preload = target, port, env, log_path, preload
        self.process: subprocess.Popen | None = None

    @property
    def command(self) -> list[str]:
        preload = ["--preload"] if self.preload else []
        return [str(BIN / "gunicorn"), *preload, "-w", "2", "-b", f"{HOST}:{self.port}", self.target]

    def start(self, ready_path: str, timeout: float = 180) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.target} exited with {self.process.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}{ready_path}", timeout=10) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{self.target} did not answer on port {self.port} within {timeout:.0f} s")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def cpu_seconds(self) -> float:
        """CPU used so far by the master and its live workers (a killed worker's time is lost)."""
        import psutil
        try:
            master = psutil.Process(self.process.pid)
            processes = [master, *master.children(recursive=True)]
        except (psutil.Error, AttributeError):
            return 0.0
        total = 0.0
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def stop(self) -> None:
        _stop_group(self.process)


def _stop_group(process: subprocess.Popen | None, grace: float = 15) -> None:
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _postgres_cpu(database: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend serving `database` (title 'postgres: user db host ...')."""
    import psutil
    found = {}
    for process in psutil.process_iter(["cmdline"]):
        try:
            title = " ".join(process.info["cmdline"] or [])
            if title.startswith("postgres:") and f" {database} " in title:
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        except psutil.Error:
            pass
    return found


def _machine_busy_seconds() -> float:
    import psutil
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclass
class Phase:
    """One locust run: its stats rows (by endpoint and 'Aggregated'), failures and CPU split."""
    kind: str
    seconds: int
    load_average: float = 0.0
    stats: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    exceptions: int = 0
    cpu: dict = field(default_factory=dict)
    worker_kills: int = 0
    app_errors: int = 0

    @property
    def total(self) -> dict:
        return self.stats.get("Aggregated", {})


def run_locust(kind: str, classes: list[str], server: Gunicorn, users: int, spawn_rate: float, seconds: int,
               targets_path: Path, out: Path, tag: str, database: str, steady: bool = False) -> Phase:
    """`steady`: statistics start once every user has spawned (and signed in), as load tests usually measure."""
    prefix = out / f"{tag}"
    command = [str(BIN / "locust"), "-f", str(ROOT / "bench" / "load_locustfile.py"), "--headless",
               "-u", str(users), "-r", str(spawn_rate), "-t", f"{seconds}s", "--host", f"http://{HOST}:{server.port}",
               "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING", *(["--reset-stats"] if steady else []),
               *classes]
    env = {**os.environ, "LOAD_TARGETS": str(targets_path)}
    log_offset = server.log_size()
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before, machine_before = server.cpu_seconds(), _machine_busy_seconds()
    postgres_before = _postgres_cpu(database)
    with (out / f"{tag}.locust.log").open("wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            process.wait(timeout=seconds + 90)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _stop_group(process, grace=10)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    phase = Phase(kind, seconds)
    phase.cpu = {
        "locust": children_after.ru_utime + children_after.ru_stime - children_before.ru_utime - children_before.ru_stime,
        "gunicorn": server.cpu_seconds() - server_before,
        "postgres": sum(t - postgres_before.get(pid, 0.0) for pid, t in _postgres_cpu(database).items()),
        "machine": _machine_busy_seconds() - machine_before,
    }
    phase.load_average = os.getloadavg()[0]
    phase.stats = _read_stats(Path(f"{prefix}_stats.csv"))
    phase.failures = _read_csv(Path(f"{prefix}_failures.csv"))
    phase.exceptions = len(_read_csv(Path(f"{prefix}_exceptions.csv")))
    server_log = server.log_since(log_offset)
    phase.worker_kills = killed_workers(server_log)
    phase.app_errors = len(APP_ERRORS.findall(server_log))
    if not phase.stats:
        raise RuntimeError(f"locust wrote no stats; see {out / f'{tag}.locust.log'}")
    return phase


def killed_workers(server_log: str) -> int:
    """Workers the arbiter killed (timeout or signal), each counted once."""
    return len({pid for match in KILLED.findall(server_log) for pid in match if pid})


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _read_stats(path: Path) -> dict:
    result = {}
    for line in _read_csv(path):
        name = line["Name"]
        result[name] = {
            "method": line["Type"], "requests": int(line["Request Count"]), "failures": int(line["Failure Count"]),
            "rps": float(line["Requests/s"]),
            **{p: float(line[f"{p}%"] if line[f"{p}%"] != "N/A" else "nan") / 1000 for p in ("50", "95", "99")},
        }
    return result


# -- exports -----------------------------------------------------------------------------------

def fetch_export(server: Gunicorn, path: str, headers: dict, cookies, timeout: float) -> dict:
    """Stream one export; time to first byte, total, bytes, whether it ended cleanly, worker kills."""
    import requests

    log_offset = server.log_size()
    result = {"path": path, "status": None, "ttfb": None, "total": None, "bytes": 0, "lines": 0, "complete": False,
              "error": ""}
    tail = b""
    start = time.perf_counter()
    try:
        with requests.get(f"http://{HOST}:{server.port}{path}", headers=headers, cookies=cookies, stream=True,
                          allow_redirects=False, timeout=(10, min(timeout, 120))) as response:
            result["status"] = response.status_code
            for chunk in response.iter_content(1 << 16):
                if result["ttfb"] is None:
                    result["ttfb"] = time.perf_counter() - start
                result["bytes"] += len(chunk)
                result["lines"] += chunk.count(b"\n")
                tail = (tail + chunk)[-(1 << 16):]
                if time.perf_counter() - start > timeout:
                    result["error"] = f"stopped by the bench after {timeout:.0f} s"
                    break
            else:
                result["complete"] = response.status_code == 200
    except requests.RequestException as exc:
        result["error"] = f"{type(exc).__name__}: {str(exc)[:160]}"
    result["total"] = time.perf_counter() - start
    time.sleep(2)  # the arbiter logs a killed worker's SIGKILL a moment after the client saw the cut
    if path.endswith("xlsx") and result["complete"]:
        result["complete"] = b"PK\x05\x06" in tail[-1024:]  # the zip's end record: the file was finished
    server_log = server.log_since(log_offset)
    result["worker_kills"] = killed_workers(server_log)
    result["app_errors"] = len(APP_ERRORS.findall(server_log))
    return result


def _login(server: Gunicorn, username: str, password: str):
    """A browser session (form login with CSRF token) and a JWT for the API."""
    import requests

    base = f"http://{HOST}:{server.port}"
    with requests.Session() as session:
        page = session.get(f"{base}/login/", timeout=60).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]*)"', page)
        session.post(f"{base}/login/", data={"username": username, "password": password,
                                             "csrf_token": token.group(1) if token else ""},
                     allow_redirects=False, timeout=60)
        jwt = session.post(f"{base}/api/v1/security/login", timeout=60,
                           json={"username": username, "password": password, "provider": "db"}).json()["access_token"]
        return session.cookies, jwt


def run_exports(server: Gunicorn, username: str, password: str, timeout: float) -> list[dict]:
    """Each export on a freshly started gunicorn, so one export's killed worker cannot spoil the next."""
    results = []
    for path, by_api in (("/labour_entry/export/csv", False), ("/api/v1/labour_entry/export?format=xlsx", True)):
        server.stop()
        server.start("/login/")
        cookies, jwt = _login(server, username, password)
        headers = {"Authorization": f"Bearer {jwt}"} if by_api else {}
        results.append(fetch_export(server, path, headers, None if by_api else cookies, timeout))
    return results


# -- report ------------------------------------------------------------------------------------

def _median_spread(values: list[float], fmt: str = "{:.2f}") -> str:
    values = [v for v in values if v == v]  # drop NaN (no requests)
    if not values:
        return "–"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def _mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def report(args, seed: dict, portal: list[Phase], anchor: list[Phase], exports: list[dict],
           warmup: Phase | None = None) -> list[str]:
    label = f" — {args.label}" if args.label else ""
    sizes = seed["sizes"]
    lines = [f"## Peak load: {args.users} users, {sizes['entries'] / 1e6:g}M rows, gunicorn{label}", "",
             f"`python -m bench.load` ({len(portal)} runs of {args.duration} s, {args.users} users spawned at "
             f"{args.spawn_rate:g}/s, think time {args.wait_min:g}–{args.wait_max:g} s; each run preceded by a "
             f"{args.anchor_duration} s anchor slice; gunicorn is started afresh for every run; "
             + ("statistics count from the moment all users have spawned (locust --reset-stats), "
                "so most of the sign-in burst of the first seconds is not in the figures" if args.steady else
                "the ramp-up, with every user signing in within the first seconds, counts in each")
             + f"). Server: `{' '.join(['gunicorn', *(['--preload'] if args.preload else []), '-w', '2', '-b', f'{HOST}:{args.port}', 'run:app'])}`"
             f"{'' if args.preload else ' (diagnosis: NOT the production command, --preload left out)'}"
             f"{' + ./gunicorn.conf.py' if (ROOT / 'gunicorn.conf.py').exists() else ''}, PostgreSQL 15 database "
             f"`{args.database}`: {sizes['entries']:,} labour entries, {sizes['workers']:,} workers, "
             f"{sizes['customers']:,} customers, {sizes['projects']} projects, {sizes['tickets']:,} tickets. "
             f"Users: {args.users * 4 // 5} admins + {args.users - args.users * 4 // 5} row-scoped site foremen "
             "(form login with CSRF token for pages, JWT for the API). Figures: median of the runs (min–max).", ""]
    totals = [p.total for p in portal]
    anchor_rps = [a.total["rps"] for a in anchor]
    ratios = [p["rps"] / a for p, a in zip(totals, anchor_rps) if a]
    failures = [t["failures"] for t in totals]
    lines += ["| overall | portal | target | anchor (raw-SQL page) |", "| --- | --- | --- | --- |",
              f"| requests per run | {_median_spread([t['requests'] for t in totals], '{:.0f}')} |  | "
              f"{_median_spread([a.total['requests'] for a in anchor], '{:.0f}')} |",
              f"| failed requests per run | {_median_spread(failures, '{:.0f}')} "
              f"({_median_spread([100 * t['failures'] / max(t['requests'], 1) for t in totals], '{:.1f}')} %) | "
              f"0 {_mark(max(failures) == 0)} | {_median_spread([a.total['failures'] for a in anchor], '{:.0f}')} |",
              f"| requests/s | {_median_spread([t['rps'] for t in totals], '{:.1f}')} |  | "
              f"{_median_spread(anchor_rps, '{:.1f}')} |",
              f"| throughput / anchor | {_median_spread(ratios)} |  | 1.00 |"]
    for p in ("50", "95", "99"):
        target = TARGETS.get(f"p{p}")
        median = statistics.median(t[p] for t in totals)
        lines.append(f"| p{p} s | {_median_spread([t[p] for t in totals])} | "
                     f"{f'≤ {target:g} {_mark(median <= target)}' if target else ''} | "
                     f"{_median_spread([a.total[p] for a in anchor])} |")
    cpu = {k: [ph.cpu[k] / ph.seconds for ph in portal] for k in ("gunicorn", "postgres", "locust", "machine")}
    lines += [f"| worker kills / app errors logged | {sum(p.worker_kills for p in portal)} / "
              f"{sum(p.app_errors for p in portal)} (all runs) |  |  |",
              f"| CPU cores busy: gunicorn / PostgreSQL (this database) / locust / whole machine | "
              f"{_median_spread(cpu['gunicorn'])} / {_median_spread(cpu['postgres'])} / {_median_spread(cpu['locust'])} / "
              f"{_median_spread(cpu['machine'])} | of 2 |  |",
              f"| machine load average (1 min) at the end of each run | "
              f"{', '.join(f'{p.load_average:.1f}' for p in portal)} |  |  |"]
    if warmup:
        t = warmup.total
        lines.append(f"| warm-up before run 1 (5 users, {warmup.seconds} s, not in the figures above) | {t['requests']} "
                     f"requests, {t['failures']} failed, {warmup.app_errors} app errors logged |  |  |")
    lines.append("")

    names = sorted({n for p in portal for n in p.stats if n != "Aggregated"},
                   key=lambda n: (-statistics.median(p.stats.get(n, {}).get("requests", 0) for p in portal), n))
    lines += ["| endpoint | requests | failures | p50 s | p95 s | p99 s |", "| --- | --- | --- | --- | --- | --- |"]
    for name in names:
        rows = [p.stats[name] for p in portal if name in p.stats]
        lines.append(f"| {name} | {_median_spread([r['requests'] for r in rows], '{:.0f}')} | "
                     f"{_median_spread([r['failures'] for r in rows], '{:.0f}')} | "
                     + " | ".join(_median_spread([r[p] for r in rows]) for p in ("50", "95", "99")) + " |")
    errors: dict[str, dict[str, int]] = {}
    for phase in portal:
        for failure in phase.failures:
            kinds = errors.setdefault(failure["Name"], {})
            error = _short_error(failure["Error"])
            kinds[error] = kinds.get(error, 0) + int(failure["Occurrences"])
    if errors:
        lines += ["", "Failures by endpoint (all runs together):", "", "| endpoint | failures | errors |",
                  "| --- | --- | --- |"]
        for name, kinds in sorted(errors.items(), key=lambda e: -sum(e[1].values())):
            detail = ", ".join(f"{error} ×{count}" for error, count in sorted(kinds.items(), key=lambda k: -k[1]))
            lines.append(f"| {name} | {sum(kinds.values())} | {detail} |")
    if exports:
        lines += ["", f"Exports of all {sizes['entries']:,} labour entries as load_admin, one at a time, no other load, "
                  "each on a freshly started gunicorn (gunicorn's sync workers are killed after 30 s without a heartbeat "
                  "unless gunicorn.conf.py says otherwise):",
                  "", "| export | status | first byte s | total s | MB | complete | workers killed meanwhile |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for e in exports:
            ttfb = f"{e['ttfb']:.1f}" if e["ttfb"] is not None else "–"
            complete = "yes" if e["complete"] else f"no{': ' + e['error'] if e['error'] else ''}"
            if e["path"].endswith("csv"):
                complete += f" ({max(e['lines'] - 1, 0):,} rows)"
            lines.append(f"| `GET {e['path']}` | {e['status']} | {ttfb} | {e['total']:.1f} | {e['bytes'] / 1e6:.1f} | "
                         f"{complete} | {e['worker_kills']} |")
    lines += ["", "Each user waits its think time after every answer, so the offered load is at most about "
              f"{args.users / ((args.wait_min + args.wait_max) / 2):.0f} requests/s: the anchor comes close to that, so "
              "throughput / anchor reads as the share of the offered peak load the portal served. Locust runs on the "
              "same 2 cores as gunicorn and PostgreSQL (its share is in the CPU row); the rest of 'whole machine' is "
              "other work on the machine (the load average row shows how busy it was). Percentiles are locust's "
              "(rounded to 2 significant digits); failures are any status other than 2xx/3xx, a connection error, or a "
              "redirect to the login page."]
    return lines


def _short_error(error: str) -> str:
    error = re.sub(r"^CatchResponseError\('(.*)'\)$", r"\1", error)  # our own failure texts, unwrapped
    error = re.sub(r"0x[0-9a-f]+", "…", error)
    return error.replace("|", "/")[:120]


# -- main --------------------------------------------------------------------------------------

def _targets(args, seed: dict) -> dict:
    sizes = seed["sizes"]
    terms = [f"{FIRMS[i % len(FIRMS)]}{FIRM_KINDS[i // len(FIRMS) % len(FIRM_KINDS)]}{i:06d}"[:-2]
             for i in range(7, sizes["customers"], max(1, sizes["customers"] // 200))]
    return {"admin": "load_admin", "foreman": "load_foreman", "password": seed["password"],
            "entries": sizes["entries"], "customers": sizes["customers"], "workers": sizes["workers"],
            "projects": sizes["projects"], "foreman_projects": seed["foreman_projects"],
            "foreman_entries": seed["foreman_entries"], "reports": PORTAL_REPORTS, "foreman_reports": FOREMAN_REPORTS,
            "customer_terms": terms, "wait_min": args.wait_min, "wait_max": args.wait_max,
            "request_timeout": args.request_timeout}


def main(args) -> list[str]:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(entries=args.entries, workers=args.workers, customers=args.customers)
    seed = ensure_seeded(args.pg, args.database, sizes, log=lambda m: print(m, file=sys.stderr, flush=True))
    targets_path = out / "targets.json"
    targets_path.write_text(json.dumps(_targets(args, seed)), encoding="utf-8")

    env = {**os.environ, "DATABASE_URL": database_url(args.pg, args.database),
           "SECRET_KEY": "bench-load-" + os.urandom(8).hex(), "PORTAL_SCHEMA_DIR": str(ROOT / "schemas")}
    portal_server = Gunicorn("run:app", args.port, env, out / "gunicorn-portal.log", args.preload)
    anchor_server = Gunicorn("bench.load_anchor:app", args.port + 1, env, out / "gunicorn-anchor.log", args.preload)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    portal: list[Phase] = []
    anchor: list[Phase] = []
    exports: list[dict] = []
    warmup = None
    try:
        say(f"load: starting {' '.join(portal_server.command)} (cwd {ROOT})")
        anchor_server.start("/")
        if args.warmup:  # fills PostgreSQL's caches; its own gunicorn start, so run 1 starts like the others
            say(f"load: warm-up, 5 users for {args.warmup} s (reported apart)")
            portal_server.start("/login/")
            warmup = run_locust("warmup", ["AdminUser", "ForemanUser"], portal_server, 5, 5, args.warmup,
                                targets_path, out, "warmup", args.database)
            portal_server.stop()
        for n in range(1, args.runs + 1):
            say(f"load: run {n}/{args.runs}: anchor {args.anchor_duration} s")
            anchor.append(run_locust("anchor", ["AnchorUser"], anchor_server, args.users, args.spawn_rate,
                                     args.anchor_duration, targets_path, out, f"run{n}-anchor", args.database))
            say(f"load: run {n}/{args.runs}: portal {args.duration} s (fresh gunicorn)")
            portal_server.stop()
            portal_server.start("/login/")
            phase = run_locust("portal", ["AdminUser", "ForemanUser"], portal_server, args.users, args.spawn_rate,
                               args.duration, targets_path, out, f"run{n}-portal", args.database, steady=args.steady)
            portal.append(phase)
            t = phase.total
            say(f"load:   {t['requests']} requests, {t['failures']} failed, {t['rps']:.1f}/s, p50 {t['50']:.2f} s, "
                f"p95 {t['95']:.2f} s (anchor {anchor[-1].total['rps']:.1f}/s), "
                f"load average {phase.load_average:.1f}")
        anchor_server.stop()
        if args.exports:
            say("load: exports (CSV page, XLSX API) through gunicorn")
            exports = run_exports(portal_server, "load_admin", seed["password"], args.export_timeout)
    finally:
        portal_server.stop()
        anchor_server.stop()
    lines = report(args, seed, portal, anchor, exports, warmup)
    (out / "results.json").write_text(json.dumps({
        "args": vars(args), "seed": {k: v for k, v in seed.items() if k != "foreman_entries"},
        "warmup": warmup.__dict__ if warmup else None, "portal": [p.__dict__ for p in portal], "anchor": [a.__dict__ for a in anchor], "exports": exports,
    }, indent=1, default=str), encoding="utf-8")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(pg: str | None = None) -> list[str]:
    """Entry for `python -m bench load`; extra options from $PORTAL_LOAD_ARGS (e.g. "--runs 1 --entries 50000")."""
    argv = shlex.split(os.environ.get("PORTAL_LOAD_ARGS", ""))
    if not pg and "--pg" not in argv:
        return ["Peak load: skipped (needs PostgreSQL: PORTAL_BENCH_PG, as `make bench` sets)."]
    if pg and "--pg" not in argv:
        argv += ["--pg", pg]
    signal.signal(signal.SIGTERM, _interrupt)  # stop gunicorn and locust on `kill` too (finally blocks)
    return main(options(argv))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _interrupt)
    print("\n".join(main(options())))
