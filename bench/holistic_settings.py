#!/usr/bin/env python3
"""Print, as TOML for `--config`, a rule's settings in the holistic study: its network
(plans/holistic-all.toml: the plan's unless the rule has its own) and what the study's search
chose for it on a validation split (plans/tuned/holistic-all.toml). Used by bench/online.sh and
bench/continual.sh. Usage: bench/holistic_settings.py RULE"""
import sys
import tomllib

rule = sys.argv[1]
plan = tomllib.load(open("plans/holistic-all.toml", "rb"))
tuned = tomllib.load(open("plans/tuned/holistic-all.toml", "rb"))
settings = {"arch": plan.get("rule", {}).get(rule, {}).get("arch", plan["arch"])}
settings.update(tuned["rule"][rule])
for k, v in settings.items():
    print(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}")
