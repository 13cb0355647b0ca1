import json, time, orjson, gc
from streams.codec import loads_json, event_from_record, _build_event, _DEFAULT_LIMITS
from streams.replay import parse_line, iter_events, ReplayReport
from streams.runtime import tune_garbage_collector
from streams.settings import Settings
tune_garbage_collector(Settings.load(environ={}).gc_young_threshold)
lines = open("/tmp/replay200k.jsonl").read().splitlines()[:50000]
n = len(lines)
def t(label, fn):
    best=9
    for _ in range(3):
        s = time.perf_counter(); fn(); best=min(best,(time.perf_counter()-s)/n*1e6)
    print(f"{label:30s} {best:.2f} us")
def loop_orjson():
    for l in lines: orjson.loads(l)
def loop_loads():
    for l in lines: loads_json(l)
recs = [orjson.loads(l) for l in lines]
evs=[(r["type"], r["event"]) for r in recs]
def loop_efr():
    for a,b in evs: event_from_record(a,b)
def loop_be():
    L=_DEFAULT_LIMITS
    for a,b in evs: _build_event(a,b,L)
def loop_parse():
    for l in lines: parse_line(l)
def loop_iter():
    for _ in iter_events(lines, ReplayReport()): pass
t("orjson.loads", loop_orjson); t("loads_json", loop_loads); t("event_from_record", loop_efr); t("_build_event", loop_be); t("parse_line", loop_parse); t("iter_events", loop_iter)
from streams.codec import read_wrapped_line
from streams import _avrofast
def loop_rw():
    for l in lines: read_wrapped_line(l)
t("read_wrapped_line", loop_rw)
def loop_dr():
    for l in lines: _avrofast.has_long_digit_run(l, 19)
t("digit run", loop_dr)
from streams.codec import _WRAPPED_PROGRAMS
ws=[orjson.loads(l) for l in lines]
def loop_w():
    P=_WRAPPED_PROGRAMS
    for w in ws: _avrofast.read_wrapped(P, w)
t("read_wrapped (parsed)", loop_w)
def loop_len():
    for l in lines: len(l)
t("empty loop", loop_len)
