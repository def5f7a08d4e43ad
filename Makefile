# SPDX-License-Identifier: MIT
# Two entry points for a fresh Debian 12 machine (as root): `make demo` and `make test`.
# Both install what they need first; the tests run under Debian's own Python so they
# exercise the same python3-* packages the .debs depend on.

PYTHON := /usr/bin/python3
TOOLS := .tools
RUFF_VERSION := 0.17.6
# The OpenAPI fuzz test (tests/integration/test_openapi.py) runs schemathesis from this
# directory through a subprocess (PYTHONPATH): no venv, nothing in the system's Python.
# hypothesis is pinned: newer releases break schemathesis 3. The property tests use Debian's
# python3-hypothesis instead, which the package build (dh_auto_test) has as well.
PYLIB := $(TOOLS)/pylib
SCHEMATHESIS := schemathesis==3.39.16 hypothesis==6.124.0
export PYTHONPATH := $(CURDIR)/src:$(CURDIR)

RUN_DEPS := blender ffmpeg rsync openssh-client openssh-server bubblewrap \
	python3-aiohttp python3-configobj python3-numpy python3-paramiko
TEST_DEPS := $(RUN_DEPS) python3-pytest python3-pytest-timeout python3-hypothesis python3-venv python3-pip mypy \
	iproute2 procps util-linux passwd git systemd strace \
	debhelper dh-python pybuild-plugin-pyproject python3-setuptools python3-all lintian \
	groff-base man-db devscripts fakeroot build-essential \
	python3-zstandard fonts-dejavu-core \
	avahi-daemon dbus-daemon python3-dbus python3-gi \
	dbus-system-bus-common

# The pool (master/pool/) reads and writes its index with python-debian. Its tests render
# with PyPI's bpy 4.2.0 wheel (519 MB), downloaded once into AFARM_TEST_CACHE and reused.
RUN_DEPS += python3-debian
TEST_DEPS += python3-debian
export AFARM_TEST_CACHE ?= /var/cache/afarm-test
BPY_WHEEL := bpy-4.2.0-cp311-cp311-manylinux_2_28_x86_64.whl
# The web page's browser tests (tests/browser): headless Chromium driven by Selenium, and
# axe-core from npm (kept in $(TOOLS)/node_modules, so later runs need no network). npm comes
# from Debian only where no Node.js is installed: Debian's npm conflicts with NodeSource's.
TEST_DEPS += chromium chromium-driver python3-selenium
AXE := axe-core@4

.PHONY: demo test deps-run deps-test lint unit clean

define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
		| grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends $$missing; \
	fi
endef

deps-run:
	$(call apt_install,$(RUN_DEPS))

deps-test:
	$(call apt_install,$(TEST_DEPS))
	@test -x $(TOOLS)/bin/ruff || { $(PYTHON) -m venv $(TOOLS) && \
		$(TOOLS)/bin/pip install -q ruff==$(RUFF_VERSION); }
	@test -d $(PYLIB)/schemathesis || \
		$(PYTHON) -m pip install -q --target $(PYLIB) $(SCHEMATHESIS)
	@# blender-asset-tracer (afarmctl's dependency tracer) is not in Debian 12: build its .deb
	@# from the pinned upstream release as debian/README.source says, and install it.
	@$(PYTHON) -I -c 'import blender_asset_tracer' 2>/dev/null || { \
		$(PYTHON) debian/build-bat-deb $(TOOLS)/debs && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			./$(TOOLS)/debs/python3-blender-asset-tracer_1.23-0afarm1_all.deb; }
	@test -f $(AFARM_TEST_CACHE)/$(BPY_WHEEL) || $(PYTHON) -m pip download -q bpy==4.2.0 \
		--no-deps --only-binary=:all: --python-version 3.11 \
		--platform manylinux_2_28_x86_64 -d $(AFARM_TEST_CACHE)
	@command -v npm >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends nodejs npm; }
	@test -f $(TOOLS)/node_modules/axe-core/axe.min.js || \
		npm install -q --prefix $(TOOLS) --no-save --no-audit --no-fund $(AXE)

demo: deps-run
	$(PYTHON) -m afarm.cli.main demo

test: deps-test
	$(PYTHON) -m pytest -ra --timeout=900 tests

lint: deps-test
	$(TOOLS)/bin/ruff check src tests benchmarks
	mypy --config-file pyproject.toml src

clean:
	rm -rf $(TOOLS) afarm-demo build *.egg-info
