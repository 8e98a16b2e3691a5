"""Embedded synthetic traffic: a seeded generator of flow records, so mstr runs with no download.

Benign background: internal hosts talk to common services with a daily rhythm (more traffic by day).
Attack episodes come from one host each and last minutes to hours:
  dos          a flood of short HTTP connections, most half-open (S0)
  portscan     one host probing many ports, mostly rejected or unanswered
  bruteforce   repeated short SSH/FTP logins
  botnet       an infected internal host beaconing small HTTPS requests to its C2
  exfiltration an infected internal host uploading large volumes over long HTTPS sessions
Every attack flow looks like some benign flow on its own (benign traffic has failed connections,
short SSH sessions, small HTTPS requests and big uploads too), so per-feature thresholds fall short;
what gives an attack away is its context: the host's recent flows, which is what windows show.
Botnet and exfiltration hosts keep their benign traffic, so their windows mix both classes.

`python -m mstr.data.datasets.synthetic --flows 20000 --seed 7 --out traffic.csv` writes such traffic
as CSV (the columns a synthetic model reads), e.g. for `mstr.detect` with a model of the default data;
another seed than training's (data.source.seed, 0) gives traffic the model has never seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mstr.data.datasets import DatasetSplits, check_task, make_table
from mstr.data.splits import TIME, hold_out
from mstr.errors import ConfigError

DAY_S = 86_400.0
ATTACKS = ("dos", "portscan", "bruteforce", "botnet", "exfiltration")
NUMERIC = [
    "dst_port", "duration", "fwd_pkts", "bwd_pkts", "fwd_bytes", "bwd_bytes",
    "mean_fwd_pkt_size", "syn_count", "rst_count",
]
CATEGORICAL = ["proto", "service", "conn_state"]

# service -> (port, proto, share of benign flows, log-mean duration s, log-mean fwd bytes, log-mean bwd bytes)
_SERVICES = {
    "https": (443, "tcp", 0.46, 0.5, 7.0, 9.0),
    "http": (80, "tcp", 0.14, 0.0, 6.5, 8.5),
    "dns": (53, "udp", 0.22, -4.0, 4.2, 5.0),
    "ssh": (22, "tcp", 0.04, 3.0, 8.0, 8.5),
    "smtp": (25, "tcp", 0.05, 1.0, 8.5, 6.0),
    "ftp": (21, "tcp", 0.02, 2.0, 6.5, 9.5),
    "ntp": (123, "udp", 0.03, -3.0, 4.0, 4.0),
    "other": (8080, "tcp", 0.04, 1.0, 6.0, 7.0),
}
_STATES = np.array(["SF", "S0", "REJ", "RSTO"])
# (flows per episode min, max; span of an episode in seconds min, max)
_EPISODE = {
    "dos": (250, 700, 300, 1_200),
    "portscan": (150, 400, 600, 3_600),
    "bruteforce": (80, 250, 900, 3_600),
    "botnet": (40, 120, 7_200, 6 * 3_600),
    "exfiltration": (25, 70, 1_800, 7_200),
}


def _rhythmic_times(rng: np.random.Generator, n: int, span: float) -> np.ndarray:
    """n event times over `span` seconds with a daily rhythm (rejection sampling of a sine rate)."""
    out = np.empty(0)
    while out.size < n:
        t = rng.uniform(0.0, span, size=2 * n)
        rate = 0.55 + 0.45 * np.sin(2 * np.pi * (t / DAY_S - 0.3))
        out = np.concatenate([out, t[rng.uniform(size=t.size) < rate]])
    return np.sort(out[:n])


def _shape_flows(rng, service, state, dur_mu, fwd_mu, bwd_mu, spread=1.0) -> dict:
    """Packet and byte counts consistent with the connection state: no reply means no bwd bytes."""
    n = len(service)
    duration = np.exp(rng.normal(dur_mu, 1.2 * spread, n))
    fwd_bytes = np.exp(rng.normal(fwd_mu, 1.0 * spread, n))
    bwd_bytes = np.exp(rng.normal(bwd_mu, 1.1 * spread, n))
    fwd_pkts = np.maximum(1, np.round(fwd_bytes / rng.uniform(60, 900, n)))
    bwd_pkts = np.maximum(1, np.round(bwd_bytes / rng.uniform(60, 1400, n)))
    failed = state != "SF"
    duration[failed] = np.exp(rng.normal(-3.5, 1.5, failed.sum()))
    fwd_pkts[failed] = rng.integers(1, 4, failed.sum())
    fwd_bytes[failed] = fwd_pkts[failed] * rng.uniform(40, 80, failed.sum())
    no_reply = state == "S0"
    bwd_pkts[no_reply], bwd_bytes[no_reply] = 0, 0
    rejected = (state == "REJ") | (state == "RSTO")
    bwd_pkts[rejected] = 1
    bwd_bytes[rejected] = rng.uniform(40, 60, rejected.sum())
    return {
        "duration": duration,
        "fwd_pkts": fwd_pkts,
        "bwd_pkts": bwd_pkts,
        "fwd_bytes": np.round(fwd_bytes),
        "bwd_bytes": np.round(bwd_bytes),
        "syn_count": np.where(state == "S0", rng.integers(1, 4, n), 1),
        "rst_count": np.where(rejected, 1, (rng.uniform(size=n) < 0.03).astype(int)),
    }


def _benign(rng: np.random.Generator, n: int, span: float, hosts: np.ndarray) -> pd.DataFrame:
    names = np.array(list(_SERVICES))
    share = np.array([v[2] for v in _SERVICES.values()])
    service = rng.choice(names, size=n, p=share / share.sum())
    params = np.array([_SERVICES[s][3:] for s in service])
    state = rng.choice(_STATES, size=n, p=[0.9, 0.045, 0.035, 0.02])
    flows = _shape_flows(rng, service, state, params[:, 0], params[:, 1], params[:, 2], spread=1.1)
    # Big uploads happen in benign traffic too (backups, cloud sync): exfiltration is not one threshold.
    upload = (service == "https") & (rng.uniform(size=n) < 0.02) & (state == "SF")
    flows["fwd_bytes"][upload] = np.round(np.exp(rng.normal(14.0, 1.3, upload.sum())))
    flows["fwd_pkts"][upload] = np.maximum(1, np.round(flows["fwd_bytes"][upload] / 1200))
    flows["duration"][upload] = np.exp(rng.normal(4.0, 1.0, upload.sum()))
    activity = rng.zipf(1.6, size=len(hosts)).astype(float)
    frame = pd.DataFrame({
        "ts": _rhythmic_times(rng, n, span),
        "src_host": rng.choice(hosts, size=n, p=activity / activity.sum()),
        "service": service,
        "conn_state": state,
        "dst_port": np.array([_SERVICES[s][0] for s in service]),
        "proto": np.array([_SERVICES[s][1] for s in service]),
        **flows,
    })
    ephemeral = service == "other"
    frame.loc[ephemeral, "dst_port"] = rng.integers(1024, 65535, ephemeral.sum())
    frame["label"] = "benign"
    return frame


def _episode(rng: np.random.Generator, kind: str, start: float, host: str) -> pd.DataFrame:
    lo, hi, span_lo, span_hi = _EPISODE[kind]
    n = int(rng.integers(lo, hi))
    span = rng.uniform(span_lo, span_hi)
    if kind == "botnet":  # beacons: a fixed period with jitter
        ts = start + np.arange(n) * (span / n) + rng.normal(0, 3, n)
    else:
        ts = start + np.sort(rng.uniform(0, span, n))
    if kind == "dos":
        service = np.full(n, "http")
        state = rng.choice(_STATES, n, p=[0.35, 0.55, 0.05, 0.05])
        flows = _shape_flows(rng, service, state, -1.5, 5.5, 7.0, spread=0.8)
        port = np.full(n, 80)
    elif kind == "portscan":
        port = np.where(rng.uniform(size=n) < 0.8, rng.integers(1, 10_000, n), rng.choice([22, 80, 443, 8080], n))
        known = {p: s for s, (p, *_rest) in _SERVICES.items()}
        service = np.array([known.get(int(p), "other") for p in port])
        state = rng.choice(_STATES, n, p=[0.08, 0.37, 0.5, 0.05])
        flows = _shape_flows(rng, service, state, -2.0, 4.5, 5.0, spread=0.8)
    elif kind == "bruteforce":
        service = rng.choice(["ssh", "ftp"], n, p=[0.7, 0.3]) if rng.uniform() < 0.5 else np.full(n, "ssh")
        port = np.where(service == "ssh", 22, 21)
        state = rng.choice(_STATES, n, p=[0.85, 0.03, 0.02, 0.1])
        flows = _shape_flows(rng, service, state, 1.0, 7.3, 7.8, spread=0.5)
    elif kind == "botnet":
        service = np.full(n, "https")
        port = np.full(n, 443)
        state = rng.choice(_STATES, n, p=[0.93, 0.04, 0.0, 0.03])
        flows = _shape_flows(rng, service, state, -0.8, 6.0, 6.8, spread=0.35)
    else:  # exfiltration
        service = np.full(n, "https")
        port = np.full(n, 443)
        state = np.full(n, "SF")
        flows = _shape_flows(rng, service, state, 4.2, 13.5, 7.5, spread=0.7)
        flows["fwd_pkts"] = np.maximum(1, np.round(flows["fwd_bytes"] / 1200))
    frame = pd.DataFrame({
        "ts": ts, "src_host": host, "service": service, "conn_state": state, "dst_port": port,
        "proto": np.where(np.isin(service, ["dns", "ntp"]), "udp", "tcp"), **flows,
    })
    frame["label"] = kind
    return frame


def generate_flows(n_flows: int = 30_000, attack_share: float = 0.1, days: float = 2.0,
                   n_hosts: int = 60, seed: int = 0) -> pd.DataFrame:
    """A time-sorted table of about `n_flows` flows, `attack_share` of them attacks (5 kinds).

    Episodes of each attack kind are spread evenly over the span (with jitter), so that a split by
    time sees every kind on both sides.
    """
    check(n_flows=n_flows, attack_share=attack_share, days=days, n_hosts=n_hosts)
    rng = np.random.default_rng(seed)
    span = days * DAY_S
    hosts = np.array([f"10.0.{i // 250}.{i % 250 + 1}" for i in range(n_hosts)])
    mean_size = {k: (lo + hi) / 2 for k, (lo, hi, *_r) in _EPISODE.items()}
    budget = attack_share * n_flows / len(ATTACKS)  # flows per kind
    episodes = []
    for kind in ATTACKS:
        count = max(2, int(round(budget / mean_size[kind])))
        starts = (np.arange(count) + rng.uniform(0.1, 0.9, count)) * (span / count)
        for start in starts:
            internal = kind in ("botnet", "exfiltration")
            host = rng.choice(hosts) if internal else f"203.0.113.{int(rng.integers(1, 255))}"
            episodes.append(_episode(rng, kind, float(start), str(host)))
    attacks = pd.concat(episodes, ignore_index=True)
    benign = _benign(rng, max(1, n_flows - len(attacks)), span, hosts)
    frame = pd.concat([benign, attacks], ignore_index=True)
    frame = frame[(frame["ts"] >= 0) & (frame["ts"] < span)]
    frame["mean_fwd_pkt_size"] = frame["fwd_bytes"] / frame["fwd_pkts"]
    return frame.sort_values("ts", kind="stable").reset_index(drop=True)


def check(task: str = "binary", n_flows: int = 30_000, attack_share: float = 0.1, days: float = 2.0,
          n_hosts: int = 60, test_fraction: float = 0.3, **_ignored) -> None:
    """The settings, checked before any flow is generated (also by `mstr.preflight`, before a run starts)."""
    check_task(task)
    number = (int, float)
    for key, value, ok, expected in (
            ("n_flows", n_flows, isinstance(n_flows, int) and n_flows >= 500, "an integer >= 500 (the synthetic "
                                                                              "generator needs at least 500 flows)"),
            ("attack_share", attack_share, isinstance(attack_share, number) and 0.0 < attack_share < 0.9,
             "a number in (0, 0.9)"),
            ("days", days, isinstance(days, number) and 0.0 < days < float("inf"), "a number > 0"),
            ("n_hosts", n_hosts, isinstance(n_hosts, int) and n_hosts >= 1, "an integer >= 1"),
            ("test_fraction", test_fraction, isinstance(test_fraction, number) and 0.0 < test_fraction < 1.0,
             "a number in (0, 1)")):
        if isinstance(value, bool) or not ok:
            raise ConfigError(f"data.source.{key}={value!r}: must be {expected}")


def load(task: str = "binary", n_flows: int = 30_000, attack_share: float = 0.1, days: float = 2.0,
         n_hosts: int = 60, test_fraction: float = 0.3, seed: int = 0, **_ignored) -> DatasetSplits:
    """Generate flows and split them by time: the newest `test_fraction` is the test set."""
    check(task, n_flows, attack_share, days, n_hosts, test_fraction)
    frame = generate_flows(n_flows, attack_share, days, n_hosts, seed)
    notes = [f"synthetic traffic: {len(frame)} flows, seed {seed}, newest {test_fraction:.0%} is the test split"]
    share = float((frame["label"] != "benign").mean())
    if share > 1.5 * attack_share:  # every kind has at least two episodes of its full size
        notes.append(f"synthetic traffic: {share:.0%} of the {len(frame)} flows are attacks, not the "
                     f"{attack_share:.0%} asked (data.source.attack_share): each attack kind comes in at least two "
                     "whole episodes; about 20,000 flows or more give the share asked")
    table = make_table(frame, classes=frame["label"], is_benign=(frame["label"] == "benign").to_numpy(),
                       benign=("benign",), task=task, numeric=NUMERIC, categorical=CATEGORICAL,
                       source="synthetic", notes=notes, time_col="ts", group_col="src_host")
    train, test = hold_out(table, test_fraction, TIME, kept_source="synthetic[train]",
                           held_source="synthetic[test]")
    return DatasetSplits(train=train, tests={"synthetic": test}, holdout=TIME, notes=notes)


def main(argv: list[str] | None = None) -> int:
    import sys

    from mstr.cli_args import ArgumentParser, at_least
    from mstr.errors import MstrError, report_and_exit

    parser = ArgumentParser(prog="python -m mstr.data.datasets.synthetic",
                            description="Write synthetic flows as CSV (see the module doc).")
    parser.add_argument("--flows", type=at_least(500), default=20_000, help="about how many flows (default 20000: from "
                        "about 20,000 on, a tenth are attacks; fewer flows hold more)")
    parser.add_argument("--seed", type=int, default=7, help="the traffic's seed (training's default data: 0)")
    parser.add_argument("--out", default="-", help="CSV file, or - for stdout (default)")
    args = parser.parse_args(argv)
    try:
        frame = generate_flows(args.flows, seed=args.seed)
    except MstrError as err:
        report_and_exit(err)
    frame.to_csv(sys.stdout if args.out == "-" else args.out, index=False)
    if args.out != "-":
        print(f"{len(frame):,} flows ({(frame['label'] != 'benign').mean():.0%} attacks) -> {args.out}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
