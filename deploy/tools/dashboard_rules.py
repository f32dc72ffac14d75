#!/usr/bin/env python3
"""Turns every PromQL query of the Grafana dashboard into a recording rule,
with Grafana's variables replaced, so that `promtool check rules` parses
them all. usage: dashboard_rules.py DASHBOARD.json > rules.yml"""
import json
import sys

import yaml

GRAFANA_VARS = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}

dashboard = json.load(open(sys.argv[1]))
rules = []


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


for p in panels(dashboard["panels"]):
    for t in p.get("targets", []):
        expr = t["expr"]
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:panel_{p['id']}:{t['refId'].lower()}", "expr": expr})
if not rules:
    sys.exit("no queries found")
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sys.stdout, sort_keys=False)
