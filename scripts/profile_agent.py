#!/usr/bin/env python3
"""Profile a running agent (its own process) under `firmware-sim load` with py-spy.

Usage: scripts/profile_agent.py OUT.txt [RATE] [SECONDS]; then scripts/profile_top.py OUT.txt
(py-spy raw output: self and inclusive time per function, idle waits left out)."""
import subprocess, sys, time, tempfile, yaml, os
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))
from agent.broker import Mosquitto
PY = sys.executable
out = sys.argv[1]; rate = sys.argv[2] if len(sys.argv) > 2 else "5000"; dur = sys.argv[3] if len(sys.argv) > 3 else "15"
with Mosquitto() as b, tempfile.TemporaryDirectory() as tmp:
    data = yaml.safe_load(Path(ROOT / "config" / "agent.example.yaml").read_text())
    data["agent"].update(id="prof", data_dir=tmp, log_level="WARNING")
    data["mqtt"].update(port=b.port)
    data["sensors"]["temperature"].pop("deadband", None)
    data["policies"] = []; data["interlocks"] = []
    data["security"]["command_key_file"] = None
    cfgp = Path(tmp) / "c.yaml"; cfgp.write_text(yaml.safe_dump(data))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    agent = subprocess.Popen([PY, "-m", "agent", "run", "-c", str(cfgp)], cwd=ROOT, env=env)
    time.sleep(3)
    spy = subprocess.Popen([str(BIN / "py-spy"), "record", "-p", str(agent.pid), "-f", "raw", "-r", "200", "--threads", "-o", out, "-d", str(int(float(dur)) + 1)])
    t0 = os.times()
    load = subprocess.run([str(BIN / "firmware-sim"), "load", "--broker", f"127.0.0.1:{b.port}", "--devices", "20", "--rate", rate, "--duration", dur], capture_output=True, text=True)
    print(load.stdout.strip())
    spy.wait()
    import psutil
    p = psutil.Process(agent.pid); ct = p.cpu_times(); print("agent cpu user+sys", ct.user + ct.system, "rss MB", p.memory_info().rss/1e6)
    agent.terminate(); agent.wait(20)
