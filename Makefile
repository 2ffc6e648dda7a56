# dnslab: `make demo` (the whole job) and `make test` (the whole suite). Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := .lab/setup.stamp

# Host packages: the VM (qemu), the image (mmdebstrap, packer, fdisk), real tools the tests run
# (unbound, keepalived, dnsperf), Vagrant + libvirt, and Chromium for the report screenshots.
APT_PACKAGES := python3 python3-venv python3-pip qemu-system-x86 qemu-utils mmdebstrap fdisk \
	e2fsprogs packer unbound keepalived ipvsadm dnsperf dnsutils iproute2 iptables \
	openssh-client vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base chromium make git

.PHONY: setup demo test lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@if [ "$$(id -u)" != 0 ]; then echo "dnslab: error: setup installs Debian packages; run as root (sudo make ...)" >&2; exit 2; fi
	@command -v apt-get >/dev/null || { echo "dnslab: error: no apt-get; dnslab needs Debian 12 (bookworm) or a derivative" >&2; exit 2; }
	@echo "==> installing host packages (apt)"
	@apt-get update -q >/dev/null || { echo "dnslab: error: apt-get update failed; check /etc/apt/sources.list reaches a Debian mirror" >&2; exit 2; }
	@# Keep package scripts from starting services: the host's unbound must never run as a recursor.
	@nostart=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; nostart=1; fi; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(APT_PACKAGES) >/dev/null; rc=$$?; \
	if [ $$nostart = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	if [ $$rc != 0 ]; then echo "dnslab: error: apt-get install failed; run: apt-get install $(APT_PACKAGES)" >&2; exit 2; fi
	@if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl disable --now unbound keepalived >/dev/null 2>&1 || true; fi
	@echo "==> installing Python packages into $(VENV)"
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -e '.[dev]'
	@mkdir -p .lab && touch $(STAMP)

# PROVIDER=vagrant make demo uses Vagrant + libvirt; SUITE=quick make demo runs the short suite.
demo: setup
	$(VENV)/bin/fab demo $(if $(PROVIDER),--provider $(PROVIDER)) $(if $(SUITE),--suite $(SUITE))

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -ra

lint: setup
	$(VENV)/bin/ruff check .

clean:
	-$(VENV)/bin/fab down
	-$(VENV)/bin/fab down --provider vagrant
	rm -rf .lab/vm
