"""``edge-agent bench federated``: federated decision heads against one trained on pooled data.

Simulated homes differ in climate (how often the room is too hot, too cold or fine), in the
people (the band they want) and in how their sensors are named; each labels its own examples
from its own policy (:func:`agent.policy.examples.generate`) and keeps them. Features are
the bundled model's real embeddings of each situation's digest, computed once and cached in
memory.

In one run, on one common held-out set (every home's kind of situations, unseen by all),
and on situations whose sensors are named in ways no home uses (how far each head
generalises):

- pooled: :meth:`SoftmaxHead.fit` on all homes' training data in one place (the baseline);
- local: each home's head trained on its own data only (why federate);
- federated: R rounds of FedAvg driven through :mod:`agent.peers.rounds` (the real messages,
  so their sizes are the bytes on the wire), plain, with secure aggregation, and with
  differential privacy; target: within 2 points of pooled on the common set. Bytes per round
  per agent are the sizes of the update (up) and round (down) payloads.

Every figure is printed; a low one is never hidden.
"""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.config import Config, PolicyConfig, parse_config
from agent.inference.locate import locate
from agent.inference.model import Model
from agent.inference.threads import pick_threads
from agent.peers import fedavg as fa
from agent.peers.coordinator import Coordinator, FlSettings, RoundStats
from agent.peers.member import DpSettings, Member
from agent.policy import examples as gen
from agent.policy.head import SoftmaxHead

Echo = Callable[[str], None]
Array = npt.NDArray[np.float64]

BENCH_CONFIG = """
sensors:
  temperature: {unit: C, range: [-40, 85]}
  humidity: {unit: "%", range: [0, 100]}
policies:
  - name: climate
    inputs: [livingroom-1/temperature, livingroom-1/humidity]
    targets: {livingroom-1/temperature: [20, 24]}
    actuators:
      - {device: livingroom-hvac, actuator: hvac, actions: [cool, heat, off]}
    peers: {group: house, method: mean, quorum: 1, deadline: 5s}
"""


@dataclass(frozen=True, slots=True)
class Home:
    name: str
    band: tuple[float, float]  # what the people living there want
    styles: tuple[str, ...]  # how their sensors are named
    climate: dict[str, float]  # zone -> how often a generated situation of that zone is kept
    shift_bands: bool = False  # people who keep changing their mind


HOMES = (
    Home("cold-north", (19.0, 23.0), ("device",), {"below": 1.0, "inside": 0.5, "above": 0.2}),
    Home("hot-south", (23.0, 27.0), ("room",), {"above": 1.0, "inside": 0.5, "below": 0.2}),
    Home("city-flat", (20.0, 24.0), ("plain",), {"above": 1.0, "inside": 1.0, "below": 1.0}, True),
    Home(
        "farmhouse", (17.0, 21.0), ("device", "plain"), {"inside": 1.0, "above": 0.6, "below": 0.6}
    ),
)


def home_policy(policy: PolicyConfig, home: Home) -> PolicyConfig:
    key = next(iter(policy.targets))
    return policy.model_copy(update={"targets": {key: home.band}})


def home_examples(
    config: Config, policy: PolicyConfig, home: Home, n: int, seed: int
) -> list[gen.Example]:
    """``n`` situations of this home: its band and names, its climate's mix of zones."""
    rng = random.Random(seed * 7919 + 1)
    candidates = gen.generate(
        config,
        home_policy(policy, home),
        8 * n,
        seed=seed,
        styles=home.styles,
        shift_bands=home.shift_bands,
    )
    kept = [e for e in candidates if rng.random() < home.climate[e.zone]]
    return kept[:n]


@dataclass
class HomeData:
    home: Home
    train: list[gen.Example]
    heldout: list[gen.Example]  # the home's own check before adopting new weights
    test: list[gen.Example]  # its share of the common held-out set

    def counts(self) -> str:
        mix = Counter(e.action for e in self.train)
        return ", ".join(f"{a} {n}" for a, n in sorted(mix.items()))


def make_homes(
    config: Config,
    policy: PolicyConfig,
    homes: Sequence[Home],
    train: int,
    heldout: int,
    test: int,
) -> list[HomeData]:
    out = []
    for i, home in enumerate(homes):
        out.append(
            HomeData(
                home,
                home_examples(config, policy, home, train, seed=1000 + i),
                home_examples(config, policy, home, heldout, seed=2000 + i),
                home_examples(config, policy, home, test, seed=3000 + i),
            )
        )
    return out


class EmbeddingCache:
    def __init__(self, embed: Callable[[str], npt.NDArray[np.floating]]) -> None:
        self.embed = embed
        self.vectors: dict[str, Array] = {}
        self.seconds = 0.0

    def __call__(self, examples: Sequence[gen.Example]) -> Array:
        for e in examples:
            if e.digest not in self.vectors:
                started = time.perf_counter()
                self.vectors[e.digest] = np.asarray(self.embed(e.digest), dtype=np.float64)
                self.seconds += time.perf_counter() - started
        return np.array([self.vectors[e.digest] for e in examples])


def bench_config() -> Config:
    return parse_config(BENCH_CONFIG, "<bench federated>")


TARGET_POINTS = 2.0
BENCH_SETTINGS = FlSettings(rounds=20, epochs=15, lr=0.5, deadline=30.0)
BENCH_DP = DpSettings(clip=1.0, sigma=0.5)


@dataclass(frozen=True, slots=True)
class Split:
    x: Array
    labels: list[str]


@dataclass
class Federation:
    name: str
    head: SoftmaxHead  # the final global
    members: list[Member]
    history: list[RoundStats]
    seconds: float


def simulate(
    name: str,
    splits: list[tuple[str, Split, Split, SoftmaxHead]],
    classes: list[str],
    settings: FlSettings,
    *,
    dp: DpSettings | None = None,
) -> Federation:
    """One federation, every message encoded and decoded as on the wire; every member
    answers in time (the deadline logic is exercised by the tests)."""
    started = time.perf_counter()
    members = []
    for i, (agent, train, heldout, local) in enumerate(splits):
        keys = fa.KeyPair.generate(random.Random(i).randbytes) if settings.secure else None
        members.append(
            Member(
                agent,
                train.x,
                train.labels,
                heldout.x,
                heldout.labels,
                head=local,
                dp=dp,
                rng=np.random.default_rng(100 + i),
                keys=keys,
            )
        )
    for m in members:  # the retained key messages
        for other in members:
            if other.keys is not None and other is not m:
                m.publics[other.agent_id] = other.keys.public
    names = sorted(m.agent_id for m in members)
    dim = splits[0][1].x.shape[1]
    coordinator = Coordinator(
        names[0], "house", "climate", classes, dim, settings, session=name.split()[0].lower()
    )
    now = 0.0
    message = coordinator.start(now, names)
    while True:
        payload = message.to_payload()
        for m in members:
            update = m.on_round(payload)
            if update is not None:
                reason = coordinator.on_update(update.to_payload(), now)
                if reason is not None:
                    raise AssertionError(f"update refused: {reason}")
        if message.stage == "final":
            break
        now += 1.0
        nxt = coordinator.tick(now, names)
        assert nxt is not None  # every member answered
        message = nxt
    return Federation(
        name, message.head(), members, coordinator.history, time.perf_counter() - started
    )


def accuracy(head: SoftmaxHead, split: Split) -> float:
    return 100.0 * head.accuracy(split.x, split.labels)


def report(fed: Federation, common: Split, unseen: Split, echo: Echo) -> float:
    acc = accuracy(fed.head, common)
    adopted = [accuracy(m.head, common) for m in fed.members if m.head is not None]
    training = [h for h in fed.history if h.stage == "train"]
    up = [b for h in training for b in h.up_bytes.values()]
    down = [h.down_bytes for h in training]
    echo(
        f"  federated, {fed.name}: global head {acc:5.1f}% on the common set, "
        f"{accuracy(fed.head, unseen):5.1f}% on unseen names; heads the homes kept "
        f"(adopt only if their held-out accuracy does not drop): mean "
        f"{statistics.mean(adopted):5.1f}%, min {min(adopted):5.1f}%; adopted "
        f"{sum(m.adopted for m in fed.members)}, kept own "
        f"{sum(m.kept for m in fed.members)} times"
    )
    echo(
        f"    {len(training)} training rounds; per round per agent: up "
        f"{statistics.mean(up):,.0f} bytes, down {statistics.mean(down):,.0f} bytes; in total "
        f"{sum(up) + sum(down) * len(fed.members):,} bytes for {len(fed.members)} agents; "
        f"{fed.seconds:.1f}s of compute"
    )
    return acc


def run_bench(
    echo: Echo,
    *,
    config: Config | None = None,
    homes: Sequence[Home] = HOMES,
    train: int = 45,
    heldout: int = 10,
    test: int = 35,
    unseen: int = 40,
    settings: FlSettings = BENCH_SETTINGS,
    dp: DpSettings = BENCH_DP,
    model_spec: str = "bundled:smollm2-135m",
) -> bool:
    """Print every figure; True if federated accuracy is within 2 points of pooled."""
    config = config or bench_config()
    policy = next(p for p in config.policies if p.targets)
    classes = list(policy.actuators[0].actions)
    data = make_homes(config, policy, homes, train, heldout, test)
    names_set = gen.generate(
        config, policy, unseen, seed=4000, styles=gen.HELD_OUT_STYLES, shift_bands=True
    )
    model_file = locate(model_spec)
    threads = pick_threads(None)
    echo(
        f"bench federated: model {model_file.name} ({model_file.sha256[:12]}), {threads} "
        f"thread(s); {len(homes)} homes, {train} training + {heldout} held-out examples each;"
        f" common held-out set {test} per home + {unseen} with names no home uses"
    )
    for d in data:
        echo(
            f"  home {d.home.name:10}: band {d.home.band[0]:g}-{d.home.band[1]:g} C"
            f"{' (shifting)' if d.home.shift_bands else ''}, names {'/'.join(d.home.styles)},"
            f" its labels: {d.counts()}"
        )
    with Model(model_file.path, threads=threads, context=512, sha256=model_file.sha256) as model:
        embed = EmbeddingCache(model.embed)
        splits = [
            (
                d.home.name,
                Split(embed(d.train), labels(d.train)),
                Split(embed(d.heldout), labels(d.heldout)),
            )
            for d in data
        ]
        common = Split(
            embed([e for d in data for e in d.test]), labels([e for d in data for e in d.test])
        )
        unseen_split = Split(embed(names_set), labels(names_set))
    echo(
        f"  embeddings: {len(embed.vectors)} digests in {embed.seconds:.1f}s "
        f"({1000 * embed.seconds / max(1, len(embed.vectors)):.0f} ms each), dim "
        f"{common.x.shape[1]}"
    )
    pooled_x = np.concatenate([s[1].x for s in splits])
    pooled = SoftmaxHead.fit(pooled_x, [lb for s in splits for lb in s[1].labels], classes)
    pooled_acc = accuracy(pooled, common)
    echo(
        f"  pooled (all homes' data in one place): {pooled_acc:5.1f}% on the common set, "
        f"{accuracy(pooled, unseen_split):5.1f}% on unseen names"
    )
    locals_ = []
    for name, tr, ho in splits:
        head = SoftmaxHead.fit(tr.x, tr.labels, classes)
        locals_.append((name, tr, ho, head))
        echo(
            f"  local only, {name:10}: {accuracy(head, common):5.1f}% on the common set, "
            f"{accuracy(head, unseen_split):5.1f}% on unseen names"
        )
    echo(
        f"  settings: R={settings.rounds} rounds of E={settings.epochs} local epochs, "
        f"lr {settings.lr}; differential privacy: clip C={dp.clip}, noise sigma={dp.sigma} "
        f"(std sigma*C per coordinate per update)"
    )
    plain_fed = simulate("plain", locals_, classes, settings)
    plain = report(plain_fed, common, unseen_split, echo)
    secure = simulate(
        "secure aggregation",
        locals_,
        classes,
        FlSettings(settings.rounds, settings.epochs, settings.lr, settings.deadline, secure=True),
    )
    report(secure, common, unseen_split, echo)
    gap = float(np.abs(secure.head.proba(common.x) - plain_fed.head.proba(common.x)).max())
    echo(
        f"    secure vs plain global head: probabilities differ by at most {gap:.1e} on the "
        f"common set (fixed point with {fa.FIXED_BITS} fractional bits, float32 on the wire)"
    )
    report(
        simulate(f"DP sigma={dp.sigma}", locals_, classes, settings, dp=dp),
        common,
        unseen_split,
        echo,
    )
    diff = plain - pooled_acc
    ok = diff >= -TARGET_POINTS
    echo(
        f"federated - pooled: {diff:+.1f} points on the common set (target: within "
        f"{TARGET_POINTS:g} points) -> {'PASS' if ok else 'FAIL'}"
    )
    return ok


def labels(examples: Sequence[gen.Example]) -> list[str]:
    return [e.action for e in examples]
