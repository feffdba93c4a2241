"""Real Torua clusters, started with `torua up`, for the behave run.

before_all starts the shared cluster (one coordinator, one copy per shard) on free
ports in a temp dir and waits for "ready"; every feature uses it, except a
feature tagged `@replicas<N>` (N copies of each shard), `@coordinators<N>`
(N coordinator processes, one leading, the others standing by) and/or
`@workers<N>` (N GraphRAG workers; `torua up` starts one), e.g.
`@replicas2 @coordinators2`: before_feature starts a cluster of its own with
those settings and 8 shards (own temp dir, own free ports) and after_feature
stops it, while the shared one keeps running for the other features.

after_scenario puts back anything a scenario broke in the cluster it used
(resumes paused processes, starts killed coordinators and nodes again) and
waits until that cluster is green, with one coordinator leading and every other
one standing by, so each scenario starts from a healthy cluster; after_feature
and after_all stop every process that was started (SIGINT to `torua up`, then
SIGKILL to anything left) and remove the temp dirs (kept when TORUA_BDD_KEEP is
set).
"""

from __future__ import annotations

import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "support"))

from torua_bdd import LocalCluster  # noqa: E402

# Tags that give a feature a cluster of its own, and the LocalCluster setting each sets.
CLUSTER_TAGS = {
    "replicas": re.compile(r"replicas(\d+)"), "coordinators": re.compile(r"coordinators(\d+)"), "workers": re.compile(r"workers(\d+)"),
}
# Shards of a feature's own cluster: 3 nodes, 8 shards.
FEATURE_CLUSTER_SHARDS = 8


def start_cluster(**settings) -> LocalCluster:
    """`torua up` with these settings, ready; on failure its logs are printed and it is stopped."""
    cluster = LocalCluster(**settings)
    try:
        cluster.start()
    except BaseException:
        try:
            print(cluster.log_tails(), file=sys.stderr)
            cluster.stop()
        finally:
            cluster.remove()
        raise
    return cluster


def stop_cluster(cluster: LocalCluster) -> None:
    try:
        cluster.stop()
    finally:
        cluster.remove()


def cluster_settings_of(feature) -> dict[str, int]:
    """`@replicas2 @coordinators2` -> {"replicas": 2, "coordinators": 2}; {} for the shared cluster."""
    settings = {}
    for tag in feature.tags:
        for setting, pattern in CLUSTER_TAGS.items():
            match = pattern.fullmatch(tag)
            if match:
                settings[setting] = int(match.group(1))
    return settings


def before_all(context):
    # SIGTERM (a CI runner or a script stopping the run) stops it as Ctrl-C does: behave
    # then runs after_all, which stops every cluster.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    # Clusters still to stop at the end, whatever happens to a feature's hooks.
    context.clusters = []
    context.shared_cluster = start_cluster()
    context.clusters.append(context.shared_cluster)
    context.cluster = context.shared_cluster
    context.gateway = context.shared_cluster.gateway


def before_feature(context, feature):
    settings = cluster_settings_of(feature)
    if not settings:
        return
    cluster = start_cluster(shards=FEATURE_CLUSTER_SHARDS, **settings)
    context.clusters.append(cluster)
    # Set at the feature's context layer: behave drops these after the feature,
    # and the shared cluster is context.cluster again.
    context.feature_cluster = cluster
    context.cluster = cluster
    context.gateway = cluster.gateway


def after_feature(context, feature):
    cluster = getattr(context, "feature_cluster", None)
    if cluster is None or cluster not in context.clusters:
        return
    context.clusters.remove(cluster)
    stop_cluster(cluster)


def before_scenario(context, scenario):
    context.written = {}


def after_scenario(context, scenario):
    cluster = getattr(context, "cluster", None)
    if cluster is None:
        return
    if scenario.status.name in ("failed", "error", "hook_error"):
        # The progress formatter CI uses names the scenario only: say which step failed and why.
        for step in scenario.all_steps:
            if step.status.name in ("failed", "error", "hook_error"):
                print(f"\n==== failed step: {step.keyword} {step.name}\n{step.error_message}", file=sys.stderr)
        print(f"\n==== logs after failed scenario: {scenario.name}\n{cluster.log_tails()}", file=sys.stderr)
    cluster.restore()


def after_all(context):
    errors = []
    for cluster in reversed(getattr(context, "clusters", [])):
        try:
            stop_cluster(cluster)
        except BaseException as exc:  # stop the others all the same
            errors.append(exc)
    if errors:
        raise errors[0]
