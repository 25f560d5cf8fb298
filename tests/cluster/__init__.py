"""A real two-node Pacemaker/Corosync cluster in the lab's namespaces (see cluster.Cluster)."""

from .cluster import Cluster, ClusterError, Spawned, processes_in
from .fencing import FenceAws
from .status import FailedAction, NodeState, ResourceState, Status, parse_crm_mon

__all__ = [
    "Cluster",
    "ClusterError",
    "FailedAction",
    "FenceAws",
    "NodeState",
    "ResourceState",
    "Spawned",
    "Status",
    "parse_crm_mon",
    "processes_in",
]
