"""The compute engine's in-memory compiled state, bounded in bytes: per-topology programs and
per-id entries, least recently used evicted first (the registry is the truth: an evicted id is
rebuilt from it on its next call).

What an entry costs (measured on XLA-CPU with tracemalloc and RSS deltas, Dense/ReLU stacks):
- a topology: its `KernelFn`'s tree of nodes (15.4 MiB traced, ~35 MiB RSS for 10,000 layers:
  `TREE_BYTES_PER_LAYER`) and each program jax compiled for it, one per input shape and `get`
  (190-290 KiB RSS per layer for 100- and 400-layer networks: jaxpr, lowered module,
  executable: `PROGRAM_BYTES_PER_LAYER`). Programs are counted as jax reports its caches.
- an id: its hyper-parameter values (`params`, measured by walking them) and its canonical
  Architecture (a parsed message takes ~6x its serialized size: 0.73 MiB for 122 KiB).
  An id shares its topology's tree: the tree's rules read hyper-parameters from `params`
  only (what lets one compiled program serve every W_std), so keeping a second tree per id
  was the waste behind "~18 MiB per 10,000-layer registration" (issue 17, finding 2).

Scopes (cross-tenant timing, issue 17 finding 10): by default every tenant shares one scope, so a
topology compiled for one tenant is compiled for all (a W_std sweep across a lab compiles
once) and a tenant's first call can tell, by its speed, that some tenant recently ran a
network of that topology with inputs of that shape (not which tenant, nor the hyper-parameter
values, nor the id). With `isolate` each tenant has its own scope: the topology id of its
KernelFns carries the tenant (hashed), so every cache keyed by topology id (these programs,
the batcher's, the tile programs) is per tenant, and a tenant's first call compiles.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import hashlib
import sys
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from ntkserve_engine.kernels import KernelFn
from ntkserve_engine.kernels.canonical import every_layer

TREE_BYTES_PER_LAYER = 4 << 10
PROGRAM_BYTES_PER_LAYER = 256 << 10
PROTO_MEMORY_FACTOR = 6
SHARED_SCOPE = ""

Entry = TypeVar("Entry")
Programs = tuple[Any, ...]  # jitted functions (jax.jit wrappers) of one topology


@dataclasses.dataclass
class _Topology:
    kfn: KernelFn  # the representative: its tree serves every id of the topology
    programs: Programs
    layers: int

    def bytes(self) -> int:
        compiled = sum(_programs_compiled(p) for p in self.programs)
        return self.layers * (TREE_BYTES_PER_LAYER + PROGRAM_BYTES_PER_LAYER * compiled)


def _programs_compiled(jitted: Any) -> int:
    """How many programs jax keeps compiled in a jit wrapper (one per shape and static args)."""
    size = getattr(jitted, "_cache_size", None)
    return int(size()) if callable(size) else 1


def params_bytes(tree: Any) -> int:
    """The memory of a tree of tuples, lists and dicts of floats (walked without recursion)."""
    total, stack = 0, [tree]
    while stack:
        node = stack.pop()
        total += sys.getsizeof(node)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
    return total


def id_bytes(kfn: KernelFn) -> int:
    """What one id's entry keeps beyond its topology's: its values and its architecture."""
    return params_bytes(kfn.params) + PROTO_MEMORY_FACTOR * kfn.architecture.ByteSize()


def scoped_topology(topology_id: str, scope: str) -> str:
    """The topology id every cache keys compiled programs by, within a tenant's scope."""
    if scope == SHARED_SCOPE:
        return topology_id
    return f"{topology_id}@tenant-{hashlib.sha256(scope.encode()).hexdigest()[:16]}"


def _sharing(representative: KernelFn, kfn: KernelFn) -> KernelFn:
    """kfn's id, values and architecture on the representative's tree (and topology id)."""
    variant = copy.copy(representative)
    variant.architecture, variant.id, variant.params = kfn.architecture, kfn.id, kfn.params
    return variant


class CompiledCache(Generic[Entry]):
    """Topologies (their programs, made by `programs_of`) and ids (`entry_of` their KernelFn
    and programs), evicted least recently used first while over `max_bytes` (from whichever
    of the two holds more bytes; a topology goes with its ids) or over `max_topologies`;
    what was just used is always kept. Not locked: the engine holds its lock around every
    call."""

    def __init__(
        self,
        programs_of: Callable[[KernelFn], Programs],
        entry_of: Callable[[KernelFn, Programs], Entry],
        *,
        max_topologies: int,
        max_bytes: int,
        isolate: bool,
    ) -> None:
        self.max_topologies = max_topologies
        self.max_bytes = max_bytes
        self.isolate = isolate
        self._programs_of = programs_of
        self._entry_of = entry_of
        self._topologies: collections.OrderedDict[str, _Topology] = collections.OrderedDict()
        self._ids: collections.OrderedDict[tuple[str, str], tuple[Entry, str, int]] = (
            collections.OrderedDict()
        )
        self._ids_bytes = 0
        self.hits = 0  # lookups of a topology's programs: found,
        self.misses = 0  # or made anew (what the metrics report)
        self.evicted_ids = 0
        self.evicted_topologies = 0

    def scope(self, tenant: str) -> str:
        return tenant if self.isolate else SHARED_SCOPE

    def get(self, kfn: KernelFn, tenant: str) -> Entry:
        """kfn's entry in the tenant's scope, made (and its topology's programs) if missing."""
        scope = self.scope(tenant)
        found = self._ids.get((scope, kfn.id))
        if found is not None:
            self.hits += 1
            return self._touch((scope, kfn.id))
        topology_key = scoped_topology(kfn.topology_id, scope)
        topology = self._topologies.get(topology_key)
        if topology is None:
            self.misses += 1
            representative = copy.copy(kfn)
            representative.topology_id = topology_key
            layers = sum(1 for _ in every_layer(kfn.architecture.layers))
            topology = _Topology(representative, self._programs_of(representative), layers)
            self._topologies[topology_key] = topology
        else:
            self.hits += 1
        size = id_bytes(kfn)
        entry = self._entry_of(_sharing(topology.kfn, kfn), topology.programs)
        self._ids[(scope, kfn.id)] = (entry, topology_key, size)
        self._ids_bytes += size
        return self._touch((scope, kfn.id))

    def lookup(self, architecture_id: str, tenant: str) -> Entry | None:
        key = (self.scope(tenant), architecture_id)
        if key not in self._ids:
            return None
        self.hits += 1
        return self._touch(key)

    def _touch(self, key: tuple[str, str]) -> Entry:
        """Marks the id and its topology used now, then evicts what is over the bounds (the
        programs' bytes grow as jax compiles for new shapes: checked at every use)."""
        entry, topology_key, _ = self._ids[key]
        self._ids.move_to_end(key)
        self._topologies.move_to_end(topology_key)
        self._evict(key, topology_key)
        return entry

    def forget(self, architecture_id: str) -> None:
        """Drops the id in every scope (its topology's programs stay until evicted)."""
        for key in [k for k in self._ids if k[1] == architecture_id]:
            self._drop_id(key)

    def _drop_id(self, key: tuple[str, str]) -> None:
        _, _, size = self._ids.pop(key)
        self._ids_bytes -= size
        self.evicted_ids += 1

    def _drop_topology(self, topology_key: str) -> None:
        del self._topologies[topology_key]
        self.evicted_topologies += 1
        for key in [k for k, v in self._ids.items() if v[1] == topology_key]:
            self._drop_id(key)

    def _evict(self, keep_id: tuple[str, str], keep_topology: str) -> None:
        while len(self._topologies) > self.max_topologies:
            oldest = next(iter(self._topologies))
            if oldest == keep_topology:
                break
            self._drop_topology(oldest)
        programs = self._programs_bytes()  # changes only when a topology goes
        while self._ids_bytes + programs > self.max_bytes:  # from the larger pool
            old_id = next((k for k in self._ids if k != keep_id), None)
            old_topology = next((t for t in self._topologies if t != keep_topology), None)
            if old_id is not None and (self._ids_bytes >= programs or old_topology is None):
                self._drop_id(old_id)
            elif old_topology is not None:
                programs -= self._topologies[old_topology].bytes()
                self._drop_topology(old_topology)
            else:
                break  # what is in use alone is over the budget: it stays while used

    def _programs_bytes(self) -> int:
        return sum(t.bytes() for t in self._topologies.values())

    def bytes(self) -> int:
        """The estimated memory of everything kept (ids, topologies and their programs)."""
        return self._ids_bytes + self._programs_bytes()

    def topologies(self) -> int:
        return len(self._topologies)

    def ids(self) -> int:
        return len(self._ids)
