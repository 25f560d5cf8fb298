# ipfailover-agents: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need first (Debian packages as root, Python packages in .venv).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export PYTHONPATH := $(CURDIR)/lib:$(CURDIR)/tests

# Debian packages: the cluster stack and conformance tools, the distribution's boto3 and
# pyroute2 (our stand-in for an enterprise node), rpm tooling, and iproute2 and nftables (the
# data plane's Elastic IPs) for the lab.
APT_PACKAGES := pacemaker pacemaker-cli-utils corosync crmsh pcs resource-agents fence-agents \
	rpm rpmlint libxml2-utils xsltproc python3-boto3 python3-pyroute2 python3-venv iproute2 \
	nftables awscli man-db groff-base procps time

.PHONY: deps venv models lint typecheck check test test-long demo bench clean rpm faults compat bench-scale demo-compare bench-watch

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
			--no-install-recommends $$missing; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Trimmed EC2 models (lib/ipfailover/aws/botomodel.py) for the venv's botocore and Debian's.
models: venv
	$(PY) -m ipfailover.aws.botomodel
	if [ -x /usr/bin/python3 ]; then /usr/bin/python3 -m ipfailover.aws.botomodel; fi

lint: venv
	$(VENV)/bin/ruff check lib agents tests packaging
	$(VENV)/bin/ruff format --check lib agents tests packaging
	$(VENV)/bin/mypy

typecheck: venv
	$(VENV)/bin/mypy

# The fast tier: the unit tests that are not slow (tests/conftest.py sorts every test into unit,
# lab, cluster or faults): no root, no lab, no Debian packages; about 27 s of CPU.
check: venv models
	$(VENV)/bin/pytest -m "unit and not slow" -q $(PYTEST_ARGS)

# The suite, then the compatibility matrix: every row, the two newest stand-ins (SLES 15's
# python311, RHEL 10) with their representative subset to keep CI's time (`make compat` runs all).
test: deps venv models lint
	$(VENV)/bin/pytest -m "not long" $(PYTEST_ARGS)
	$(PY) -m compat --subset sles15 --subset rhel10

# What `make test` leaves out (a representative part stays in it): the minimal-policy proofs
# per action (each statement cut whole is in the suite) and the fuzz's drawn values. About 11 min.
test-long: deps venv models
	$(VENV)/bin/pytest -m long $(PYTEST_ARGS)

# The compatibility matrix (tests/compat): the agent-process tests of all three agents with the
# agents running under each supported stack (RHEL 9's floor, Debian 12's python3, SLES 15's
# python311, RHEL 10, current PyPI), each but Debian's in a virtual environment under .compat/
# made from the interpreters found on this machine: stand-ins at the distributions' versions.
# About a minute of CPU per row; `python -m compat --subset ROW` runs one row's short subset.
compat: deps venv models
	$(PY) -m compat

demo: deps venv models
	$(PY) -m lab.demo

bench: deps venv models
	$(PY) -m lab.bench

# The cost of watching (issue 16): 30 resources as crm-examples/ configure them (monitor_api=deep:
# the OS-side monitor every 10 s, the AWS check every 120 s) monitored on schedule for 10 minutes;
# CPU per monitor, average cores, against a bare Python start. BENCH_WATCH_ARGS: e.g.
# "--duration 60" for a smoke run, "--routing-role" for the aws-overlayip resources with a
# routing_table_role declared in the lab's STS (an AssumeRole at each of their deep checks).
BENCH_WATCH_ARGS ?=
bench-watch: deps venv models
	$(PY) -m lab.bench_watch $(BENCH_WATCH_ARGS)

# Failover at scale (issue 16): 30 resources back after a fenced crash (AWS's buckets with
# Pacemaker's defaults, then with load-threshold raised; small buckets), and one overlay IP over
# 100 route tables; each time beside its two floors. About 20 minutes on two cores.
# BENCH_SCALE_ARGS: e.g. "--runs cluster-aws-tuned" (one run), "--node-action-limit 8".
BENCH_SCALE_ARGS ?=
bench-scale: deps venv models
	$(PY) -m lab.bench_scale $(BENCH_SCALE_ARGS)

# The demo's cluster scenarios with our agents and with the incumbents as the SUSE and Red Hat
# guides configure them: both outage tables, the ratios, and docs/outage-compare.png
# (matplotlib: the `plot` extra, a development dependency only).
demo-compare: deps venv models
	$(VENV)/bin/pip install -q -e '.[plot]'
	$(PY) -m lab.compare

clean:
	rm -rf $(VENV) .compat build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache

# The RPM (noarch) and SRPM from the working tree, uncommitted files included, into rpmbuild/,
# then rpmlint with packaging/ipfailover-agents.rpmlintrc (fails on any rpmlint error).
RPM_TOPDIR ?= $(CURDIR)/rpmbuild

rpm: deps
	packaging/build-rpm.sh $(RPM_TOPDIR)

# The fault matrix of issue 6 (tests/faults): every agent as a real process in the lab under EC2,
# metadata service and process faults, races, drift and hostile parameters; prints the table
# (case x agent x action, outcome, exit code, time / timeout) and the totals. About 30 min on
# two cores. FAULTS_ARGS narrows it, e.g. FAULTS_ARGS="--agent eni --group kill"; see
# `PYTHONPATH=lib:tests python3 -m faults --help`.
FAULTS_ARGS ?=

faults: deps venv models
	$(PY) -m faults $(FAULTS_ARGS)
