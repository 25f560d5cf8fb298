"""Shared pytest configuration. Keep each part's additions in its own block."""

# -- the lab (tests/lab): fixtures `lab`, `lab_factory`, and the network guard, which fails any
# -- test that tries to reach anything but loopback from the test process ----------------------
pytest_plugins = ("lab.pytest_plugin",)
