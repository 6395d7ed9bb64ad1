"""``edge-agent demo``: the whole system on one machine, with no set-up.

A private Mosquitto on a free loopback port, a simulated home (``firmware_sim``) running a
scenario faster than real time, and an agent with the bundled model and the example home
policies. A live view shows each room against its band, the agent's last decision and reason,
the commands sent, accepted and rejected, the series and actuators diagnosis finds faulty (marked
on their room, explained below) and the policies it paused; the summary compares the time each
room spent in its band with the same scenario left alone, and ``--report`` charts it.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.broker import Mosquitto
from agent.config import Config, WebSection, load_config
from agent.errors import AgentError
from agent.policy.signing import generate_key_file, load_key
from agent.service.health import HealthService, safe_action
from agent.service.runtime import Agent
from agent.web.server import serve_dashboard
from firmware_sim.house import House, Snapshot
from firmware_sim.report import summary_lines

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / "config" / "home.example.yaml"
Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoResult:
    in_band: dict[str, float]  # room -> share of time inside its band, with the agent
    baseline: dict[str, float]  # the same scenario and simulated time with no agent
    sim_seconds: float
    commands_sent: int
    accepted: int
    rejected: int
    errors: int


def demo_config(
    base: Config, data_dir: Path, broker: Mosquitto, key_file: Path, speed: float
) -> Config:
    """The home config pointed at the private broker, deciding on the accelerated clock."""
    tick = max(1.0, 240.0 / speed)  # a decision every 4 simulated minutes (at least 1 s)
    policies = [
        p.model_copy(
            update={
                "every": tick,
                "safety": p.safety.model_copy(
                    update={"min_interval": tick / 2, "min_dwell": tick, "max_per_hour": 3600}
                ),
            }
        )
        for p in base.policies
    ]
    d = base.diagnosis
    # the actuators' timing is in the agent's (real) seconds: scaled like the home's clock
    diagnosis = d.model_copy(update={
        "check_every": max(0.5, d.check_every * 60 / speed),
        "effect_after": d.effect_after / speed,
        "fight_window": d.fight_window / speed,
        "fight_memory": d.fight_memory / speed,
    })
    return base.model_copy(
        update={
            "diagnosis": diagnosis,
            "agent": base.agent.model_copy(update={"data_dir": data_dir, "status_interval": 2.0}),
            "mqtt": base.mqtt.model_copy(update={"host": broker.host, "port": broker.port}),
            "security": base.security.model_copy(update={"command_key_file": key_file}),
            "policies": policies,
            "web": base.web or WebSection(port=0),  # a free loopback port
        }
    )


def prepare_data_dir(data_dir: Path) -> Path:
    """A fresh database each run; trained heads and the key are kept, so a second run starts
    deciding with the model at once."""
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in ("edge-agent.db", "edge-agent.db-wal", "edge-agent.db-shm"):
        (data_dir / name).unlink(missing_ok=True)
    key_file = data_dir / "command.key"
    if not key_file.exists():
        generate_key_file(key_file)
    return key_file


def last_decisions(db: Path) -> dict[str, dict[str, Any]]:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return {}
    try:
        rows = conn.execute(
            "SELECT policy, engine, action, value, verdict, digest, command_id FROM audit "
            "WHERE id IN (SELECT max(id) FROM audit GROUP BY policy)"
        ).fetchall()
        sent = dict(
            conn.execute(
                "SELECT json_extract(payload, '$.device'), count(*) FROM outbox GROUP BY 1"
            ).fetchall()
        )
    except sqlite3.Error:
        return {}
    finally:
        conn.close()
    out = {}
    for policy, engine, action, value, verdict, digest, command_id in rows:
        out[policy] = {
            "engine": engine,
            "action": action,
            "value": value,
            "verdict": verdict,
            "digest": digest,
            "command": command_id,
        }
    out["_sent"] = sent
    return out


def bar(value: float, band: tuple[float, float], width: int = 24) -> str:
    lo, hi = band[0] - 4, band[1] + 4
    cells = []
    for i in range(width):
        t = lo + (hi - lo) * (i + 0.5) / width
        cells.append("=" if band[0] <= t <= band[1] else "-")
    pos = int(max(0, min(width - 1, (value - lo) / (hi - lo) * width)))
    cells[pos] = "#"
    return "".join(cells)


def _mark(health: HealthService | None, key: str | None) -> str:
    """`` FAULTY stuck`` after a room whose thermometer is not ok; nothing when it is."""
    found = {k: h for _, k, h in health.problems()} if health is not None and key else {}
    h = found.get(key or "")
    return "" if h is None else f"  !! {h.state.upper()} {h.fault}"


def health_lines(health: HealthService, width: int = 110) -> list[str]:
    """What diagnosis found and which policies it paused, one line each."""
    lines = [f"  ! {h.state:<7} {key}: {h.explanation}"[:width]
             for _, key, h in health.problems()]
    policies = {p.name: p for p in health.config.policies}
    for name, key in sorted(health.paused.items()):
        act = policies[name].actuators[0] if name in policies else None
        goes = "" if act is None else (
            f"; {act.device}/{act.actuator} -> {safe_action(health.config, policies[name])}")
        lines.append(f"  paused: {name} does not act on {key}{goes}"[:width])
    return lines


def health_news(health: HealthService, seen: set[tuple[str, ...]]) -> list[str]:
    """Lines for what changed since ``seen`` (updated): a fault found, a policy paused or
    resumed, a series healthy again."""
    now: dict[tuple[str, ...], str] = {
        ("health", key, h.state, str(h.fault)): f"{key} {h.state}: {h.explanation}"
        for _, key, h in health.problems()}
    now.update({("paused", name, key): f"policy {name} is paused until {key} is healthy again"
                for name, key in health.paused.items()})
    out = [now[k] for k in sorted(set(now) - seen)]
    still = {k[:2] for k in now}  # a suspect turned faulty is not healthy again
    for gone in sorted({k[:2] for k in seen} - still):
        out.append(f"{gone[1]} is healthy again" if gone[0] == "health"
                   else f"policy {gone[1]} resumes")
    seen.clear()
    seen.update(now)
    return out


def view(snap: Snapshot, agent: Agent | None, scenario: str, speed: float) -> list[str]:
    lines = [
        f"edge-agent demo: scenario {scenario}, {snap.clock} (x{speed:g}), outside "
        f"{snap.outside:.1f} C, broker {'up' if snap.connected else 'DOWN'}"
    ]
    decisions = {} if agent is None else last_decisions(agent.config.db_path)
    policies = (
        {}
        if agent is None
        else {p.actuators[0].device: p for p in agent.config.policies if p.targets}
    )
    for room in snap.rooms.values():
        if room.target is None:
            continue
        hvac = (
            "-"
            if room.hvac is None
            else (room.hvac.action + ("" if room.hvac.value is None else f" {room.hvac.value:g}"))
        )
        device = next((d for d, p in policies.items() if d.startswith(room.name)), None)
        policy = policies.get(device) if device else None
        thermometer = next(iter(policy.targets), None) if policy else None
        lines.append(
            f"  {room.name:<11} {room.temperature:5.1f} C [{bar(room.temperature, room.target)}] "
            f"{room.target[0]:g}-{room.target[1]:g}  hvac {hvac:<8} in band "
            f"{room.in_band_fraction or 0:4.0%}"
            f"{_mark(agent.health if agent else None, thermometer)}"
        )
        d = decisions.get(policy.name) if policy else None
        if d:
            reason = d["verdict"] if d["verdict"] != "ok" else "sent"
            lines.append(
                f"      last decision [{d['engine']}]: {d['action']} -> {reason}; "
                f"{str(d['digest'])[:90]}"
            )
    sent = sum(decisions.get("_sent", {}).values()) if decisions else 0
    lines.append(
        f"  commands: {sent} sent by the agent, {snap.accepted} accepted and "
        f"{snap.rejected} rejected by the actuators"
    )
    if agent is not None:
        engines = ", ".join(
            f"{n}: {s.engine.name}"
            for n, s in (agent.decisions.states.items() if agent.decisions else [])
        )
        lines.append(
            f"  agents online: {agent.id} ({engines}); readings stored "
            f"{agent.ingestor.rows_total}, rejected {agent.ingestor.counters.rejected}"
        )
        lines += health_lines(agent.health)
    return lines


def baseline(scenario: str, sim_seconds: float, key: bytes, speed: float) -> dict[str, float]:
    """The same scenario with nobody acting, ticked offline to the same simulated time."""
    house = House.from_scenario(scenario, "127.0.0.1", 1, key=key, speed=speed)
    while house.sim_time < sim_seconds:
        house.tick()
    return {
        r.name: r.in_band_fraction or 0.0
        for r in house.snapshot().rooms.values()
        if r.target is not None
    }


def chart(house: House, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    snap = house.snapshot()
    rooms = [r for r in snap.rooms.values() if r.target is not None]
    fig, axes = plt.subplots(
        len(rooms), 1, figsize=(10, 2.6 * len(rooms)), sharex=True, squeeze=False
    )
    device_room = house.room_of
    for ax, room in zip(axes[:, 0], rooms, strict=True):
        pts = [(s.t / 3600, s.temperature) for s in house.series if s.room == room.name]
        assert room.target is not None
        ax.axhspan(room.target[0], room.target[1], color="tab:green", alpha=0.15, label="band")
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="tab:blue", label="temperature")
        colours = {"heat": "tab:red", "cool": "tab:cyan", "off": "tab:gray"}
        for c in house.commands:
            if device_room.get(f"{c.device}/{c.actuator}") == room.name and c.actuator == "hvac":
                ax.axvline(c.t / 3600, color=colours.get(c.action, "black"), alpha=0.6, lw=1)
                ax.annotate(
                    c.action,
                    (c.t / 3600, room.target[1] + 0.3),
                    fontsize=7,
                    color=colours.get(c.action, "black"),
                )
        ax.set_ylabel(f"{room.name} (C)")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("simulated hours")
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_demo(
    *,
    config_path: Path | None = None,
    scenario: str = "normal-day",
    duration: float = 120.0,
    speed: float = 120.0,
    data_dir: Path | None = None,
    report: Path | None = None,
    with_agent: bool = True,
    live: bool | None = None,
    echo: Echo = print,
) -> DemoResult:
    live = sys.stdout.isatty() if live is None else live
    data_dir = data_dir or ROOT / "data" / "demo"
    key_file = prepare_data_dir(data_dir)
    key = load_key(key_file)
    base = load_config(config_path or HOME)
    with Mosquitto() as broker:
        cfg = demo_config(base, data_dir, broker, key_file, speed)
        echo(
            f"demo: Mosquitto on {broker.host}:{broker.port}; scenario {scenario} at x{speed:g}; "
            f"data in {data_dir}"
        )
        agent = Agent(cfg) if with_agent else None
        house = House.from_scenario(scenario, broker.host, broker.port, key=key, speed=speed)
        web = None
        if agent is not None:
            agent.start()
            web = serve_dashboard(agent)
            if web is not None:
                echo(f"demo: dashboard at {web.url}?token={web.token}")
        house.start()
        try:
            _watch(house, agent, broker, scenario, duration, speed, live, echo)
        except KeyboardInterrupt:
            echo("demo: interrupted")
        finally:
            house.stop()
            if web is not None:
                web.stop()
            if agent is not None:
                agent.stop()
        return _summary(house, agent, scenario, key, speed, report, echo)


def _watch(
    house: House,
    agent: Agent | None,
    broker: Mosquitto,
    scenario: str,
    duration: float,
    speed: float,
    live: bool,
    echo: Echo,
) -> None:
    started = time.monotonic()
    last_print = 0.0
    end = house.scenario.duration
    seen: set[tuple[str, ...]] = set()
    while time.monotonic() - started < duration and house.sim_time < end:
        time.sleep(0.5)
        if house.error is not None:
            raise AgentError(f"the simulated home stopped: {house.error}")
        outage = house.in_outage()
        if outage and broker.proc is not None:
            echo("demo: the scenario cuts the broker now")
            broker.stop()
        elif not outage and broker.proc is None:
            echo("demo: the broker is back")
            broker.start()
        if agent is not None and not live:  # the live view shows them itself
            for line in health_news(agent.health, seen):
                echo(f"demo: {house.snapshot().clock}: {line}")
        now = time.monotonic()
        if live or now - last_print >= 10:
            last_print = now
            lines = view(house.snapshot(), agent, scenario, speed)
            if live:
                sys.stdout.write("\x1b[H\x1b[2J")
            echo("\n".join(lines))


def _summary(
    house: House,
    agent: Agent | None,
    scenario: str,
    key: bytes,
    speed: float,
    report: Path | None,
    echo: Echo,
) -> DemoResult:
    snap = house.snapshot()
    in_band = {
        r.name: r.in_band_fraction or 0.0 for r in snap.rooms.values() if r.target is not None
    }
    alone = baseline(scenario, snap.sim_time, key, speed)
    echo("")
    echo(f"summary after {snap.sim_time / 3600:.1f} simulated hours ({snap.clock}):")
    echo("\n".join(summary_lines(snap)))
    for room, share in in_band.items():
        echo(
            f"  {room:<11} in band {share:5.1%} with the agent, {alone.get(room, 0.0):5.1%} "
            f"left alone"
        )
    sent = errors = 0
    if agent is not None:
        sent = agent.outbox.delivered + agent.outbox.depth if agent.outbox else 0
        errors = agent.ingestor.counters.rejected
        engines = json.dumps(
            {n: s.status() for n, s in (agent.decisions.states.items() if agent.decisions else [])}
        )
        echo(
            f"  agent: {agent.decisions.decisions if agent.decisions else 0} decisions, "
            f"{sent} commands sent, {errors} bad sensor messages rejected; engines {engines}"
        )
    if report is not None:
        chart(house, report, f"edge-agent demo: {scenario}")
        echo(f"  chart written to {report}")
    return DemoResult(in_band, alone, snap.sim_time, sent, snap.accepted, snap.rejected, errors)
