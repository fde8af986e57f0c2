"""schemathesis hooks for keel-control (SchemathesisTests loads them with
SCHEMATHESIS_HOOKS): a check that a refused change changed nothing.

Before every write (POST, PUT, PATCH, DELETE) the whole configuration and the
newest revision are read; when the answer is a 4xx or 5xx they are read again
and must be the same. schemathesis sends one request at a time, so nothing
else writes in between.
"""
import json
import os
import urllib.request

import schemathesis

URL = os.environ["KEEL_URL"]
HEADERS = {"Authorization": "Bearer " + os.environ["KEEL_TOKEN"]}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
_before = {}
stats = {"writes": 0, "refused_checked": 0}


def _state():
    out = []
    for path in ("/v1/config", "/v1/revisions?limit=1"):
        with urllib.request.urlopen(urllib.request.Request(URL + path, headers=HEADERS), timeout=30) as r:
            out.append(json.loads(r.read()))
    return out


@schemathesis.hook
def before_call(ctx, case, kwargs):
    if case.method.upper() in WRITES:
        _before["state"] = _state()
        stats["writes"] += 1


@schemathesis.check
def refused_change_changes_nothing(ctx, response, case):
    if case.method.upper() not in WRITES or response.status_code < 400 or "state" not in _before:
        return None
    after = _state()
    before = _before.pop("state")
    stats["refused_checked"] += 1
    with open(os.environ.get("KEEL_HOOK_STATS", "/dev/null"), "w") as f:
        json.dump(stats, f)
    if after[1] != before[1]:
        raise AssertionError("a refused %s %s (%d) made a revision: %s -> %s"
                             % (case.method, case.path, response.status_code, before[1], after[1]))
    if after[0] != before[0]:
        raise AssertionError("a refused %s %s (%d) changed the configuration" % (case.method, case.path, response.status_code))
    return None
