"""Parameters: the declarations the agents share and the pure validators of their values.

On the syntax-only path (meta-data, validate-all at OCF_CHECK_LEVEL=0): keep its imports light.
"""
