"""``edge-agent bench ingest --dashboard``: the ingest drain with the dashboard open and
streaming against the same drain without it, in one run, plus the resident memory of a real
``edge-agent run`` with and without the dashboard.

"Open and streaming" is what a person with the Series page open costs: ``PAGES`` clients (in a
process of their own, as a browser is) each read the server-sent event stream and, at every
event, fetch the series chart's data and the decisions table, as the page's script does. The
dashboard is started once before anything is timed, so the timed drains compare a running
dashboard with none rather than its first start.
"""

from __future__ import annotations

import json
import multiprocessing
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml

from agent.bench.ingest import EXAMPLE, Run, agent_run, baseline, bench_config
from agent.broker import Mosquitto
from agent.config import WebSection
from agent.errors import AgentError
from agent.service.runtime import Agent
from agent.web.server import WebServer

PAGES = 2  # open browser tabs
TARGET = 0.95  # the issue: within 5% of the drain without the dashboard


class OpenPage:
    """One open Series page: the event stream, and at each event the chart's and table's data."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token
        self.events = 0
        self.fetches = 0
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="open-page", daemon=True)

    def start(self) -> OpenPage:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _get(self, path: str, timeout: float = 10.0) -> bytes:
        req = urllib.request.Request(self.url + path, headers={"X-Edge-Token": self.token})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body: bytes = r.read()
            return body

    def _run(self) -> None:
        try:
            req = urllib.request.Request(self.url + "/api/stream",
                                         headers={"X-Edge-Token": self.token})
            with urllib.request.urlopen(req, timeout=10) as stream:
                for line in stream:
                    if self._stop.is_set():
                        return
                    if line.startswith(b"data:"):
                        self.events += 1
                        self._page_data()
        except (urllib.error.URLError, OSError):
            if not self._stop.is_set():
                self.errors += 1

    def _page_data(self) -> None:
        try:
            series = json.loads(self._get("/api/series"))
            if series:
                first = series[0]
                self._get(f"/api/series/{first['device']}/{first['quantity']}?window=600")
            self._get("/api/decisions")
            self.fetches += 1
        except (urllib.error.URLError, OSError, ValueError):
            self.errors += 1


def refresh_cpu_ms(server: WebServer, times: int = 5) -> float:
    """CPU milliseconds of one page refresh (overview event, series list, a 10 min chart with
    features, the decisions table) over the drained database, uncached: the median of ``times``."""
    views = server.views
    spent = []
    for _ in range(times):
        start = time.thread_time()
        views.overview()
        series = views.series_list()
        if series:
            views.series(series[0]["device"], series[0]["quantity"], 600.0)
        views.decisions(100)
        spent.append((time.thread_time() - start) * 1000)
    return sorted(spent)[times // 2]


class Browser:
    """``PAGES`` open pages in a process of their own, as a browser is: their reading and
    parsing never competes with the agent for its interpreter. Started before the timed drain
    (a Python process starting is not what an open page costs); ``open`` points it at the
    dashboard."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._target: multiprocessing.Queue[tuple[str, str]] = ctx.Queue()
        self._counts: multiprocessing.Queue[tuple[int, int, int]] = ctx.Queue()
        self._ready = ctx.Event()
        self._proc = ctx.Process(target=_browse, daemon=True,
                                 args=(self._target, self._ready, self._stop, self._counts))
        self._proc.start()
        if not self._ready.wait(120):
            raise AgentError("the browser process did not start")
        self.events = self.fetches = self.errors = 0

    def open(self, url: str, token: str) -> None:
        self._target.put((url, token))

    def stop(self) -> None:
        self._stop.set()
        try:
            self.events, self.fetches, self.errors = self._counts.get(timeout=15)
        except queue.Empty:
            self.errors += 1
        self._proc.join(5)


def _browse(target: Any, ready: Any, stop: Any, counts: Any) -> None:
    ready.set()
    url, token = target.get()
    pages = [OpenPage(url, token).start() for _ in range(PAGES)]
    stop.wait()
    for page in pages:
        page.stop()
    counts.put((sum(p.events for p in pages), sum(p.fetches for p in pages),
                sum(p.errors for p in pages)))


def warm_up(cfg_dir: Path, broker: Mosquitto) -> None:
    """Serve once before anything is timed: the first start imports and loads what a running
    dashboard already has (uvicorn's protocols, Starlette, the templates)."""
    agent = Agent(bench_config(broker, cfg_dir, "bench-warm-up"))
    server = WebServer(agent, WebSection(port=0))
    server.start()
    urllib.request.urlopen(server.url + "api/access", timeout=10).read()
    server.stop()
    agent.store.close()


def with_dashboard(pages: list[Browser], costs: list[float]
                   ) -> Callable[[Agent], Callable[[], None]]:
    """The ``beside`` hook of :func:`agent_run`: serve the dashboard and open the pages."""

    def start(agent: Agent) -> Callable[[], None]:
        server = WebServer(agent, WebSection(port=0))
        server.start()
        browser = pages[-1]  # started before the drain
        browser.open(server.url, server.token)

        def stop() -> None:
            browser.stop()
            costs.append(refresh_cpu_ms(server))
            server.stop()
        return stop

    return start


def run_dashboard_bench(count: int, *, devices: int, rounds: int,
                        echo: Callable[[str], None]) -> bool:
    if count < 1 or devices < 1 or rounds < 1:
        raise AgentError("readings, devices and rounds must be at least 1")
    echo(f"bench ingest --dashboard: {count} QoS 1 readings from {devices} devices, "
         f"{rounds} round(s) of: baseline, agent, agent with the dashboard and {PAGES} open "
         "pages streaming")
    plain: list[float] = []
    dashed: list[float] = []
    base: list[float] = []
    pages: list[Browser] = []
    costs: list[float] = []
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        warm_up(Path(tmp) / "warm-up", broker)
        for r in range(rounds):
            b = baseline(broker, count, devices, f"bench-baseline-{r}")
            before = len(pages)

            def one(kind: str, r: int = r) -> Run:
                beside = None
                if kind == "dash":
                    pages.append(Browser())
                    beside = with_dashboard(pages, costs)
                return agent_run(broker, count, devices, f"bench-{kind}-{r}",
                                 Path(tmp) / f"{kind}-{r}", beside=beside)

            if r % 2:  # the order alternates: neither run always has the warmer start
                d, a = one("dash"), one("agent")
            else:
                a, d = one("agent"), one("dash")
            base.append(b.rate)
            plain.append(a.rate)
            dashed.append(d.rate)
            events = sum(p.events for p in pages[before:])
            fetches = sum(p.fetches for p in pages[before:])
            echo(f"  round {r + 1}: baseline {b.rate:,.0f}/s, agent {a.rate:,.0f}/s, "
                 f"agent with dashboard {d.rate:,.0f}/s ({events} events, {fetches} page "
                 f"refreshes served during the drain), ratio {d.rate / a.rate:.2f}")
    ratio = max(dashed) / max(plain)
    errors = sum(p.errors for p in pages)
    echo(f"agent without the dashboard: {max(plain):,.0f} readings/s "
         f"(ratio to baseline {max(plain) / max(base):.2f})")
    echo(f"agent with the dashboard streaming to {PAGES} pages: {max(dashed):,.0f} readings/s "
         f"(ratio to baseline {max(dashed) / max(base):.2f})")
    per_round = sorted(d / a for d, a in zip(dashed, plain, strict=True))
    median = per_round[len(per_round) // 2]
    echo(f"ratio with/without dashboard: best against best {ratio:.3f}, median of the rounds "
         f"{median:.3f} (target >= {TARGET}); page errors: {errors}")
    echo(f"one page refresh costs {min(costs):.1f} ms of CPU ({count} readings stored; answers "
         "are shared by every open page for 1 s)")
    for line in memory_lines():
        echo(line)
    return errors == 0


def memory_lines(settle: float = 5.0) -> list[str]:
    """Resident memory of a real ``edge-agent run`` (ingest only, no model) without and with
    the dashboard, an open page streaming for ``settle`` seconds."""
    out = []
    with Mosquitto() as broker, tempfile.TemporaryDirectory(prefix="edge-rss-") as tmp:
        for web in (False, True):
            rss = _agent_rss(broker, Path(tmp) / ("web" if web else "plain"), web, settle)
            out.append(f"edge-agent run resident memory {'with' if web else 'without'} the "
                       f"dashboard: {rss:.1f} MB")
    return out


def _agent_rss(broker: Mosquitto, data_dir: Path, web: bool, settle: float) -> float:
    data_dir.mkdir(parents=True)
    cfg = yaml.safe_load(EXAMPLE.read_text())  # as bench_config, but as a file for `run`
    cfg["agent"].update(id="bench-rss", data_dir=str(data_dir), log_level="WARNING")
    cfg["mqtt"].update(port=broker.port)
    cfg["policies"], cfg["interlocks"] = [], []
    cfg["security"]["command_key_file"] = None
    port = 0
    if web:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cfg["web"] = {"host": "127.0.0.1", "port": port}
    path = data_dir / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(path)],
                            stdout=subprocess.DEVNULL, stderr=(data_dir / "agent.log").open("wb"))
    page = None
    try:
        token_file = data_dir / "web.token"
        deadline = time.monotonic() + 60
        while web and not token_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.0)
        if web:
            token = token_file.read_text().strip()
            page = OpenPage(f"http://127.0.0.1:{port}", token).start()
        time.sleep(settle)
        if proc.poll() is not None:
            raise AgentError("the agent measured for memory exited: "
                             + (data_dir / "agent.log").read_text()[-500:])
        return float(psutil.Process(proc.pid).memory_info().rss) / 1e6
    finally:
        if page is not None:
            page.stop()
        proc.terminate()
        proc.wait(15)
