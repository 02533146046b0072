#!/usr/bin/env python3
"""Interleaved A/B of two settle-solver binaries on the suite.

usage: ab.py BASE_BIN NEW_BIN [ROUNDS] [MIN_TX]

Each round solves every instance with MIN_TX or more transactions with
BASE then NEW (`solve`, default budget); every solution is checked and
costed by NEW's `check` (the base binary may predate defer_usd). Prints per
(size, currencies, family) the aggregate gap to the suite's optimum and the
spread of solve_ms over the rounds, for both binaries.
"""
import json, subprocess, sys, collections, os, statistics

base, new = sys.argv[1], sys.argv[2]
rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
min_tx = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
here = os.path.dirname(os.path.abspath(__file__))
entries = [e for e in json.load(open(os.path.join(here, "optima.json"))) if e["transactions"] >= min_tx]
res = collections.defaultdict(lambda: {"cost": {}, "ms": collections.defaultdict(list), "valid": True})
for r in range(rounds):
    for e in entries:
        path = os.path.join(here, "instances", e["name"] + ".json")
        for tag, binary in (("base", base), ("new", new)):
            out = subprocess.run([binary, "solve", path], capture_output=True, text=True, check=True).stdout
            sol = json.loads(out)
            rec = res[(e["name"], tag)]
            rec["ms"][0].append(sol["solve_ms"])
            if r == 0:
                tmp = f"/tmp/ab-{tag}.json"
                open(tmp, "w").write(out)
                chk = subprocess.run([new, "check", path, tmp], capture_output=True, text=True)
                rep = json.loads(chk.stdout)
                rec["valid"] = rep["valid"]
                rec["cost"] = rep["cost"]["total"]

groups = collections.defaultdict(list)
for e in entries:
    for key in ((e["transactions"], e["currencies"], e["family"]), (e["transactions"], e["currencies"], "ALL"), (e["transactions"], 0, "ALL")):
        groups[key].append(e)
print("gap: aggregate % above the suite's optimum; ms: per-instance median over the rounds, min-max across instances and their median; valid: every solution of that binary passes check (base may predate defer_usd: it then claims wrong costs)")
print(f"{'tx':>6} {'ccy':>4} {'family':<14} {'n':>3} | {'base gap %':>10} {'base ms':>30} {'valid':>5} | {'new gap %':>10} {'new ms':>30} {'valid':>5}")
for key in sorted(groups):
    es = groups[key]
    line = f"{key[0]:>6} {key[1] if key[1] else 'all':>4} {key[2]:<14} {len(es):>3} |"
    for tag in ("base", "new"):
        cost = sum(res[(e['name'], tag)]["cost"] for e in es)
        opt = sum(e["optimum_usd"] for e in es)
        meds = [statistics.median(res[(e['name'], tag)]["ms"][0]) for e in es]
        valid = all(res[(e['name'], tag)]["valid"] for e in es)
        line += f" {100*(cost-opt)/opt:>10.3f} {min(meds):>8.2f}-{max(meds):<8.2f} med {statistics.median(meds):>8.2f} {'yes' if valid else 'NO':>5} |"
    print(line)
