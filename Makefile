# ipfailover-agents: the two commands a newcomer needs are `make demo` and `make test`.
# Both install what they need first (Debian packages as root, Python packages in .venv).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
export PYTHONPATH := $(CURDIR)/lib:$(CURDIR)/tests

# Debian packages: the cluster stack and conformance tools, the distribution's boto3 and
# pyroute2 (our stand-in for an enterprise node), rpm tooling, and iproute2 for the lab.
APT_PACKAGES := pacemaker pacemaker-cli-utils corosync crmsh pcs resource-agents fence-agents \
	rpm rpmlint libxml2-utils xsltproc python3-boto3 python3-pyroute2 python3-venv iproute2 \
	awscli man-db groff-base procps time

.PHONY: deps venv models lint typecheck check test demo bench clean rpm faults compat

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

test: deps venv models lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(PY) -m compat

# The compatibility matrix (tests/compat): the agent-process tests of all three agents with the
# agents running under each supported stack (RHEL 9's floor, Debian 12's python3, current PyPI),
# each in a virtual environment under .compat/ made from the interpreters found on this machine.
compat: deps venv models
	$(PY) -m compat

demo: deps venv models
	$(PY) -m lab.demo

bench: deps venv models
	$(PY) -m lab.bench

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
