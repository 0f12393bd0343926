"""Load balancers: ``create_load_balancer(cluster_config, hosts)`` picks the policy.

Every balancer satisfies :class:`~aeraki.proxy.upstream.lb.api.LoadBalancer`: ``choose``
reads a structure precomputed over the healthy hosts (or all hosts in panic mode), and
``update`` rebuilds it when the host set or health changes (see :mod:`.api`).

A cluster whose hosts span several priorities, or that balances by locality weight, gets a
:class:`~.priority.PriorityLoadBalancer` around the policy; every other cluster gets the
policy's balancer itself, so the common case pays nothing for locality support. The choice
is made here, from the hosts given: ``update(hosts)`` keeps the balancer's kind (the cluster
calls this factory again when its host set changes).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from aeraki.errors import ConfigError
from aeraki.proxy.config import ClusterConfig, LbPolicy
from aeraki.proxy.upstream.host import Host
from aeraki.proxy.upstream.lb.api import BaseLoadBalancer, LoadBalancer, select_targets
from aeraki.proxy.upstream.lb.least_request import LeastRequestLoadBalancer
from aeraki.proxy.upstream.lb.maglev import MaglevLoadBalancer, is_prime
from aeraki.proxy.upstream.lb.priority import PriorityLoadBalancer
from aeraki.proxy.upstream.lb.random_lb import RandomLoadBalancer
from aeraki.proxy.upstream.lb.ring_hash import RingHashLoadBalancer
from aeraki.proxy.upstream.lb.round_robin import RoundRobinLoadBalancer

__all__ = [
    "BaseLoadBalancer",
    "LeastRequestLoadBalancer",
    "LoadBalancer",
    "MaglevLoadBalancer",
    "PriorityLoadBalancer",
    "RandomLoadBalancer",
    "RingHashLoadBalancer",
    "RoundRobinLoadBalancer",
    "create_load_balancer",
    "select_targets",
    "validate_lb_config",
]

_POLICIES: dict[LbPolicy, type[BaseLoadBalancer]] = {
    LbPolicy.ROUND_ROBIN: RoundRobinLoadBalancer,
    LbPolicy.RANDOM: RandomLoadBalancer,
    LbPolicy.LEAST_REQUEST: LeastRequestLoadBalancer,
    LbPolicy.RING_HASH: RingHashLoadBalancer,
    LbPolicy.MAGLEV: MaglevLoadBalancer,
}


def validate_lb_config(config: ClusterConfig, path: str = "") -> None:
    """Reject LB settings no balancer can work with; ``path`` prefixes the field paths."""
    prefix = f"{path}." if path else ""
    if config.lb_policy is LbPolicy.MAGLEV and not is_prime(config.maglev_table_size):
        raise ConfigError(
            f"{prefix}maglev_lb_config.table_size",
            f"{config.maglev_table_size} is not a prime number",
        )
    if config.lb_policy is LbPolicy.RING_HASH and not (
        1 <= config.ring_min_size <= config.ring_max_size
    ):
        raise ConfigError(
            f"{prefix}ring_hash_lb_config",
            "need 1 <= minimum_ring_size <= maximum_ring_size",
        )
    if config.lb_policy is LbPolicy.LEAST_REQUEST and config.choice_count < 2:
        raise ConfigError(
            f"{prefix}least_request_lb_config.choice_count", "choice_count must be at least 2"
        )


def create_load_balancer(
    config: ClusterConfig,
    hosts: Sequence[Host],
    *,
    rng: random.Random | None = None,
    path: str = "",
) -> LoadBalancer:
    """The balancer for ``config.lb_policy`` over ``hosts``.

    ``rng`` is the random source (inject a seeded ``random.Random`` for deterministic
    tests); ``path`` locates the cluster in :class:`ConfigError` messages.
    """
    validate_lb_config(config, path)
    policy = _POLICIES[config.lb_policy]
    if config.locality_weighted or any(h.priority for h in hosts):
        return PriorityLoadBalancer(config, hosts, rng, policy)
    return policy(config, hosts, rng)
