"""Configuration: one validated object per process, built once from flags and
`TORUA_*` environment variables (a flag wins over the environment, the environment
over the default). `torua <command> --help` prints every setting with its
variable and default.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torua import cluster_settings
from torua.bus import NatsAuth, NatsAuthError
from torua.kv_rules import DEFAULT_MAX_VALUE_BYTES, MAX_VALUE_BYTES_CEILING  # noqa: F401 (DEFAULT_MAX_VALUE_BYTES is imported from here)
from torua.graph.rules import MAX_PROPERTIES_BYTES
from torua.listen import server_tls
from torua.protocol.subjects import valid_node_id

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
# Longest a node spends filling one shard copy, and keeps a log whole for a copier: a day.
MAX_COPY_SECONDS = 86400.0
# One graph import request: its lines are parsed whole before any is applied, so a
# request over the limit changes nothing.
DEFAULT_MAX_IMPORT_BYTES = 16 << 20
MAX_IMPORT_BYTES_CEILING = 1 << 30
# The largest --graph-max-properties-bytes: an import batch carries many property documents.
MAX_PROPERTIES_BYTES_CEILING = 4 << 20
# Per shard copy's Kuzu database (torua.graph.kuzu_index): bounds of the node settings, in MiB.
GRAPH_BUFFER_POOL_MIB = (16, 65536)
GRAPH_MAX_DB_SIZE_MIB = (64, 1 << 22)  # up to 4 TiB; Kuzu's own default (8 TiB each) fails the 16th database
GRAPH_THREADS = (1, 64)
MALLOC_ARENAS = (0, 64)
GRAPH_VECTOR_MEMORY_MIB = (0, 65536)


class ConfigError(ValueError):
    """A setting has a value Torua cannot run with."""


@dataclass(frozen=True)
class Common:
    nats_url: str = field(default=DEFAULT_NATS_URL, metadata={"help": "NATS server URL(s), comma separated"})
    log_level: str = field(default="info", metadata={"help": "debug | info | warning | error"})
    log_format: str = field(default="text", metadata={"help": "text | json (one JSON object per line; torua.logs)"})
    metrics_port: int = field(default=0, metadata={"help": "serve Prometheus /metrics on this port (0 = off)"})
    metrics_host: str = field(default="127.0.0.1", metadata={"help": "listen address of the metrics port (0.0.0.0: every interface, for a scraper on another host)"})
    connect_timeout: float = field(default=10.0, metadata={"help": "seconds to keep retrying the first NATS connection"})
    # NATS credentials and TLS (torua.bus.NatsAuth); see deploy/nats/auth.conf
    nats_user: str = field(default="", metadata={"help": "NATS user name (with --nats-password)"})
    nats_password: str = field(default="", metadata={"help": "NATS password"})
    nats_token: str = field(default="", metadata={"help": "NATS token"})
    nats_nkey_seed: str = field(default="", metadata={"help": "file holding this process's NATS nkey seed"})
    nats_creds: str = field(default="", metadata={"help": "NATS .creds file (JWT and nkey), for operator-mode servers"})
    nats_tls_ca: str = field(default="", metadata={"help": "CA file to verify the NATS server's TLS certificate"})
    nats_tls_cert: str = field(default="", metadata={"help": "client TLS certificate, for NATS servers that verify clients"})
    nats_tls_key: str = field(default="", metadata={"help": "key of the client TLS certificate"})

    def validate(self) -> None:
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"log_level must be debug, info, warning or error, not {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"log_format must be text or json, not {self.log_format!r}")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("metrics_port must be 0..65535")
        if self.connect_timeout <= 0:
            raise ConfigError("connect_timeout must be > 0")
        try:
            self.nats_auth().validate()
        except NatsAuthError as exc:
            raise ConfigError(str(exc)) from None

    def nats_auth(self) -> NatsAuth:
        return NatsAuth(
            user=self.nats_user, password=self.nats_password, token=self.nats_token, nkey_seed=self.nats_nkey_seed,
            creds=self.nats_creds, tls_ca=self.nats_tls_ca, tls_cert=self.nats_tls_cert, tls_key=self.nats_tls_key,
        )


@dataclass(frozen=True)
class NodeConfig(Common):
    id: str = field(default="", metadata={"help": "node id (letters, digits, - and _), required"})
    data_dir: Path = field(default=Path(""), metadata={"help": "directory for this node's shards (empty = ./torua-data/<id>)"})
    heartbeat_interval: float = field(default=1.0, metadata={"help": "seconds between heartbeats"})
    commit: str = field(default="durable", metadata={"help": "durable (fsync every commit) | relaxed (WAL without fsync)"})
    max_shards: int = field(default=0, metadata={"help": "most shard copies this node takes (0 = unlimited)"})
    insecure: bool = field(default=False, metadata={"help": "take torua.Client's one-hop requests without an API key (as the gateways' --insecure: a laptop only)"})
    shutdown_timeout: float = field(default=10.0, metadata={"help": "seconds a stopping node waits for its primaries to be handed over"})
    replica_timeout: float = field(default=1.0, metadata={"help": "seconds a primary waits for an in-sync replica before asking to drop it from the in-sync set"})
    log_retain_ops: int = field(default=10000, metadata={"help": "operations kept in each shard's log for catch-up; older ones are dropped"})
    max_value_bytes: int = field(default=DEFAULT_MAX_VALUE_BYTES, metadata={"help": f"largest value this node stores, 1 to {MAX_VALUE_BYTES_CEILING} (value_too_large above it); must fit the NATS server's max_payload"})
    copy_timeout: float = field(default=600.0, metadata={"help": "seconds (up to 86400) this node may take to fill a shard copy from another node (a move's copy or catch-up step, a replica's re-copy) before giving up"})
    copy_source_hold: float = field(default=120.0, metadata={"help": "seconds (up to 86400) this node keeps a shard's whole log (no trimming) after serving a snapshot or log chunk to a node copying it"})
    graph_max_properties_bytes: int = field(default=MAX_PROPERTIES_BYTES, metadata={"help": f"largest properties of a graph vertex or edge this node stores, as JSON bytes (1 to {MAX_PROPERTIES_BYTES_CEILING}; value_too_large above it)"})
    graph_peer_timeout: float = field(default=2.0, metadata={"help": "seconds a shard's primary waits for the primary of another shard in the edge protocol (attach, detach, drop, check) before it leaves the step to repair"})
    graph_repair_interval: float = field(default=2.0, metadata={"help": "seconds between the rounds in which each primary drives its graph edges' unfinished steps and outbox"})
    graph_buffer_pool: int = field(default=256, metadata={"help": f"MiB of buffer pool for each shard copy's graph index (Kuzu), {GRAPH_BUFFER_POOL_MIB[0]} to {GRAPH_BUFFER_POOL_MIB[1]}"})
    graph_max_db_size: int = field(default=8192, metadata={"help": f"MiB of address space each shard copy's graph index may map (its largest size), {GRAPH_MAX_DB_SIZE_MIB[0]} to {GRAPH_MAX_DB_SIZE_MIB[1]}"})
    graph_threads: int = field(default=1, metadata={"help": f"threads each shard copy's graph index may use for one query, {GRAPH_THREADS[0]} to {GRAPH_THREADS[1]}"})
    graph_vector_memory: int = field(default=64, metadata={"help": f"MiB of each graph's vectors each shard copy keeps in memory to search them exactly ({GRAPH_VECTOR_MEMORY_MIB[0]} to {GRAPH_VECTOR_MEMORY_MIB[1]}; above it, or 0, its HNSW index answers once the graph holds 5000 vectors on the copy, an exact scan below)"})
    malloc_arenas: int = field(default=2, metadata={"help": f"malloc arenas of the node process (glibc; {MALLOC_ARENAS[0]} to {MALLOC_ARENAS[1]}, 0: glibc's default of 8 per core; MALLOC_ARENA_MAX, when set, wins): fewer hold less memory freed by its many threads"})

    def __post_init__(self) -> None:
        if self.data_dir == Path(""):
            object.__setattr__(self, "data_dir", Path("torua-data") / (self.id or "node"))

    def validate(self) -> None:
        super().validate()
        if not valid_node_id(self.id):
            raise ConfigError(f"--id must be 1-64 letters, digits, '-' or '_', not {self.id!r}")
        if self.heartbeat_interval <= 0:
            raise ConfigError("heartbeat_interval must be > 0")
        if self.commit not in ("durable", "relaxed"):
            raise ConfigError(f"commit must be durable or relaxed, not {self.commit!r}")
        if self.max_shards < 0:
            raise ConfigError("max_shards must be >= 0")
        if self.replica_timeout <= 0:
            raise ConfigError("replica_timeout must be > 0")
        if self.log_retain_ops < 1:
            raise ConfigError("log_retain_ops must be >= 1")
        _check_max_value_bytes(self.max_value_bytes)
        if not 0 < self.copy_timeout <= MAX_COPY_SECONDS:
            raise ConfigError(f"copy_timeout must be more than 0 and at most {MAX_COPY_SECONDS:g} seconds")
        if not 0 < self.copy_source_hold <= MAX_COPY_SECONDS:
            raise ConfigError(f"copy_source_hold must be more than 0 and at most {MAX_COPY_SECONDS:g} seconds")
        if not 1 <= self.graph_max_properties_bytes <= MAX_PROPERTIES_BYTES_CEILING:
            raise ConfigError(f"graph_max_properties_bytes must be 1 to {MAX_PROPERTIES_BYTES_CEILING}")
        if not 0 < self.graph_peer_timeout <= 60:
            raise ConfigError("graph_peer_timeout must be more than 0 and at most 60 seconds")
        if not 0 < self.graph_repair_interval <= 3600:
            raise ConfigError("graph_repair_interval must be more than 0 and at most 3600 seconds")
        for name, (low, high) in (("graph_buffer_pool", GRAPH_BUFFER_POOL_MIB), ("graph_max_db_size", GRAPH_MAX_DB_SIZE_MIB), ("graph_threads", GRAPH_THREADS), ("graph_vector_memory", GRAPH_VECTOR_MEMORY_MIB),
                                  ("malloc_arenas", MALLOC_ARENAS)):
            if not low <= getattr(self, name) <= high:
                raise ConfigError(f"{name} must be from {low} to {high}")


@dataclass(frozen=True)
class CoordinatorConfig(Common):
    id: str = field(default="c1", metadata={"help": "coordinator id"})
    shards: int = field(default=16, metadata={"help": "number of shards when the cluster is created (fixed afterwards)"})
    replicas: int = field(default=1, metadata={"help": "copies of each shard (replication factor)"})
    heartbeat_interval: float = field(default=1.0, metadata={"help": "seconds between node heartbeats"})
    unhealthy_after: int = field(default=3, metadata={"help": "missed heartbeats before a node is unhealthy"})
    expect_nodes: int = field(default=1, metadata={"help": "nodes to wait for before the first shard map is made"})
    formation_timeout: float = field(default=10.0, metadata={"help": "seconds to wait for expect_nodes before forming with fewer"})
    node_left_delay: float = field(default=60.0, metadata={"help": "seconds a node may stay unhealthy before its copies are rebuilt elsewhere (replicas > 1)"})
    max_moves: int = field(default=2, metadata={"help": "shard moves running at once"})
    move_timeout: float = field(default=120.0, metadata={"help": "seconds a single move step may take before the move is aborted"})
    leader_lease: float = field(default=3.0, metadata={"help": "seconds the leading coordinator's lease lasts unrenewed; a standby takes over after it"})
    kv_replicas: int = field(default=1, metadata={"help": "copies of Torua's JetStream buckets and GraphRAG queue across the NATS cluster (1, 3 or 5); one found with fewer is raised to it"})
    disk_low_watermark: float = field(default=85.0, metadata={"help": "disk use (%) above which a node takes no new copies"})
    disk_high_watermark: float = field(default=90.0, metadata={"help": "disk use (%) above which copies move off a node"})

    def validate(self) -> None:
        super().validate()
        if not valid_node_id(self.id):
            raise ConfigError(f"--id must be letters, digits, '-' or '_', not {self.id!r}")
        if not 1 <= self.shards <= 4096:
            raise ConfigError("shards must be between 1 and 4096")
        if not 1 <= self.replicas <= 5:
            raise ConfigError("replicas (copies of each shard) must be from 1 to 5")
        if self.heartbeat_interval <= 0 or self.unhealthy_after < 1:
            raise ConfigError("heartbeat_interval must be > 0 and unhealthy_after >= 1")
        if self.replicas > 1 and self.unhealthy_after < 2:
            raise ConfigError("with replicas > 1, unhealthy_after must be >= 2 (a primary's lease is unhealthy_after - 1 heartbeats)")
        if self.node_left_delay < 0:
            raise ConfigError("node_left_delay must be >= 0")
        if self.expect_nodes < 1 or self.max_moves < 1 or self.formation_timeout < 0 or self.move_timeout <= 0:
            raise ConfigError("expect_nodes and max_moves must be >= 1, timeouts positive")
        if not 0.5 <= self.leader_lease <= 600:
            raise ConfigError("leader_lease must be from 0.5 to 600 seconds")
        if self.kv_replicas not in (1, 3, 5):
            raise ConfigError("kv_replicas must be 1, 3 or 5")
        try:  # the flags seed the cluster settings: the same ranges apply
            cluster_settings.from_config(self)
        except cluster_settings.SettingsError as exc:
            flag = {name: "--" + field.replace("_", "-") for name, field in cluster_settings.CONFIG_FLAGS.items()}
            raise ConfigError("; ".join(f"{flag.get(k, k)} {problem}" for k, problem in sorted(exc.problems.items()))) from None
        if not 1 <= self.disk_low_watermark <= self.disk_high_watermark <= 100:
            raise ConfigError("disk watermarks must satisfy 1 <= disk_low_watermark <= disk_high_watermark <= 100")


@dataclass(frozen=True)
class GatewayConfig(Common):
    host: str = field(default="127.0.0.1", metadata={"help": "HTTP listen address"})
    port: int = field(default=8080, metadata={"help": "HTTP port (0 = none, NATS API only)"})
    request_timeout: float = field(default=5.0, metadata={"help": "seconds a request may take, retries included, before 504; also how long its headers, then its body, may take to arrive (408)"})
    max_value_bytes: int = field(default=DEFAULT_MAX_VALUE_BYTES, metadata={"help": f"largest value accepted, 1 to {MAX_VALUE_BYTES_CEILING} (413 above it, before any node is asked); must fit the NATS server's max_payload"})
    max_import_bytes: int = field(default=DEFAULT_MAX_IMPORT_BYTES, metadata={"help": f"largest body of one graph import (NDJSON), 1 to {MAX_IMPORT_BYTES_CEILING} (413 above it, nothing applied); torua graph import sends a file in smaller requests"})
    audit_log: str = field(default="", metadata={"help": "also append each admin call's audit line (JSON) to this file; they are always in the log (logger torua.audit)"})
    tls_cert: str = field(default="", metadata={"help": "serve HTTPS: the server certificate chain (PEM), with --tls-key"})
    tls_key: str = field(default="", metadata={"help": "the key of --tls-cert (PEM)"})
    insecure: bool = field(default=False, metadata={"help": "serve REST and the NATS API without API keys: anyone who reaches them may do anything (a laptop only)"})
    admin_key_file: str = field(default="", metadata={"help": "an admin API key kept in this file (made, 0600, if missing) is put in the key store at start: the first key of a cluster (torua up passes <data dir>/secrets/admin.key)"})
    worker_key_file: str = field(default="", metadata={"help": "an API key of role write kept in this file (made, 0600, if missing) is put in the key store at start: the GraphRAG workers' (torua up passes <data dir>/secrets/worker.key, and gives it to its workers)"})

    def validate(self) -> None:
        super().validate()
        for name in ("admin_key_file", "worker_key_file"):
            path = getattr(self, name)
            if self.insecure and path:
                raise ConfigError(f"{name} makes an API key, and insecure turns API keys off: give one of them")
            if path and Path(path).exists():
                from torua.api_keys import parse_token
                from torua.protocol.errors import ToruaError

                try:
                    parse_token(Path(path).read_text())
                except (OSError, UnicodeDecodeError, ToruaError):
                    raise ConfigError(f"{name} {path} holds no API key (torua_<id>_<secret>): remove it to have one made, or put one there") from None
        if not 1 <= self.max_import_bytes <= MAX_IMPORT_BYTES_CEILING:
            raise ConfigError(f"max_import_bytes must be from 1 to {MAX_IMPORT_BYTES_CEILING}")
        if not 0 <= self.port <= 65535:
            raise ConfigError("port must be 0..65535")
        if self.metrics_port and self.metrics_port == self.port:
            raise ConfigError("metrics_port must differ from port (the REST port serves /metrics already)")
        if self.request_timeout <= 0:
            raise ConfigError("request_timeout must be > 0")
        _check_max_value_bytes(self.max_value_bytes)
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("tls_cert and tls_key go together")
        if self.tls_cert:
            try:
                server_tls(self.tls_cert, self.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigError(f"tls_cert and tls_key cannot be used: {exc}") from None

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"


@dataclass(frozen=True)
class WorkerConfig(Common):
    id: str = field(default="w1", metadata={"help": "worker name (letters, digits, - and _): its NATS connection and logs say it"})
    threads: int = field(default=1, metadata={"help": "threads of the embedder (onnxruntime) in this worker"})
    api_key_file: str = field(default="", metadata={"help": "a file holding the API key the worker calls the cluster with (corpus graphs: admin to create them, write to ingest; empty: $TORUA_API_KEY, else the admin key of ./torua-data); torua up passes the workers' key it makes (secrets/worker.key, role write)"})
    ack_wait: float = field(default=60.0, metadata={"help": "seconds a document may go without a sign of life from its worker before another worker takes it (set when the queue's consumer is made: the first worker's value holds); this worker's claims on documents go stale after twice it unrenewed, and the nodes refuse its writes of a document one ack wait after the claim's last renewal"})
    documents: int = field(default=64, metadata={"help": "documents this worker ingests at once, in batches of up to half of them (at most 32) written together (their models' work one at a time)"})
    tries: int = field(default=20, metadata={"help": "times a document is tried (a retryable failure, a worker that died) before it counts as failed in its job (set when the queue's consumer is made: the first worker's value holds)"})
    request_timeout: float = field(default=5.0, metadata={"help": "seconds each of the worker's requests to the cluster may take (up to 600) before it fails as a timeout (retryable: the document is tried again)"})

    def validate(self) -> None:
        super().validate()
        if not self.id or not all(c.isalnum() or c in "-_" for c in self.id) or len(self.id) > 64:
            raise ConfigError("id must be 1-64 letters, digits, - or _")
        if not 1 <= self.threads <= 64:
            raise ConfigError("threads must be 1..64")
        if not 1.0 <= self.ack_wait <= 3600.0:
            raise ConfigError("ack_wait must be 1..3600 seconds")
        if not 1 <= self.documents <= 256:
            raise ConfigError("documents must be 1..256")
        if not 1 <= self.tries <= 1000:
            raise ConfigError("tries must be 1..1000")
        if not 0 < self.request_timeout <= 600:
            raise ConfigError("request_timeout must be more than 0 and at most 600 seconds")
        if self.api_key_file:
            from torua.api_keys import parse_token
            from torua.protocol.errors import ToruaError

            try:
                parse_token(Path(self.api_key_file).read_text())
            except (OSError, UnicodeDecodeError, ToruaError):
                raise ConfigError(f"api_key_file {self.api_key_file} holds no API key (torua_<id>_<secret>)") from None

    def api_key(self) -> str | None:
        """The key from `api_key_file`; None: the client's own discovery."""
        return Path(self.api_key_file).read_text().strip() if self.api_key_file else None


def _check_max_value_bytes(value: int) -> None:
    if not 1 <= value <= MAX_VALUE_BYTES_CEILING:
        raise ConfigError(f"max_value_bytes must be from 1 to {MAX_VALUE_BYTES_CEILING} (the largest NATS max_payload, 64 MiB, less 64 KiB of envelope)")


def env_name(name: str) -> str:
    return f"TORUA_{name.upper()}"


def add_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per field of `cls`, with its environment variable and default in the help."""
    for f in dataclasses.fields(cls):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{f.metadata.get('help', '')} [env {env_name(f.name)}; default {default}]"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %: "disk use (%)" is text
        if isinstance(default, bool):  # `--insecure` alone is `--insecure true`
            parser.add_argument(flag, dest=f.name, default=None, nargs="?", const="true", help=help_text, metavar="true|false")
        else:
            parser.add_argument(flag, dest=f.name, default=None, help=help_text, metavar=f.name.upper())


def build(cls: type, args: argparse.Namespace, environ: dict[str, str] | None = None) -> Any:
    """Flags, then `TORUA_*` variables, then defaults; converted to the field's type and validated."""
    environ = dict(os.environ) if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        raw = getattr(args, f.name, None)
        if raw is None:
            raw = environ.get(env_name(f.name))
        if raw is None:
            continue
        values[f.name] = _convert(f, raw)
    config = cls(**values)
    config.validate()
    return config


def _convert(f: dataclasses.Field, raw: Any) -> Any:
    kind = type(f.default)
    try:
        if kind is bool:
            said = str(raw).strip().lower()
            if said not in ("1", "true", "yes", "on", "0", "false", "no", "off", ""):
                raise ValueError
            return said in ("1", "true", "yes", "on")
        if kind in (int, float, str):
            return kind(raw)
        if isinstance(f.default, Path):
            return Path(raw)
    except ValueError:
        raise ConfigError(f"{f.name}: {raw!r} is not a valid {kind.__name__}") from None
    return raw
