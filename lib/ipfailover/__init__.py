"""Shared library of the ipfailover OCF resource agents.

Nothing here is imported at meta-data time except the agent module's parameter declarations:
botocore and pyroute2 are imported lazily, by the code that needs them.
"""

__version__ = "0.1.0"
