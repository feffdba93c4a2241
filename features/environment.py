"""One real Torua cluster, started with `torua up`, for the whole behave run.

before_all starts it on free ports in a temp dir and waits for "ready";
after_scenario puts back anything a scenario broke (resumes paused processes,
starts killed nodes again) and waits until the cluster is green, so each
scenario starts from a healthy cluster; after_all stops every process that was
started (SIGINT to `torua up`, then SIGKILL to anything left) and removes the
temp dir (kept when TORUA_BDD_KEEP is set).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

from torua_bdd import LocalCluster  # noqa: E402


def before_all(context):
    cluster = LocalCluster()
    try:
        cluster.start()
    except BaseException:
        try:
            print(cluster.log_tails(), file=sys.stderr)
            cluster.stop()
        finally:
            cluster.remove()
        raise
    context.cluster = cluster
    context.gateway = cluster.gateway


def before_scenario(context, scenario):
    context.written = {}


def after_scenario(context, scenario):
    cluster = getattr(context, "cluster", None)
    if cluster is None:
        return
    if scenario.status.name in ("failed", "error", "hook_error"):
        print(f"\n==== logs after failed scenario: {scenario.name}\n{cluster.log_tails()}", file=sys.stderr)
    cluster.restore()


def after_all(context):
    cluster = getattr(context, "cluster", None)
    if cluster is None:
        return
    try:
        cluster.stop()
    finally:
        cluster.remove()
