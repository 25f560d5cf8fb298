"""The compatibility matrix (``make compat``): see ``__main__``."""
