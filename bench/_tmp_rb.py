import json, sys, time, io
from bench.perf.workload import build_workload
from bench.perf import measure
from streams.settings import Settings
w = build_workload(200_000)
with open("/tmp/replay200k.jsonl", "w") as f:
    for r in w.records:
        f.write(json.dumps(r) + "\n")
s = Settings.load(environ={})
for i in range(2):
    print(measure.replay_throughput(w, s))
