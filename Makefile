# dnslab: `make demo` (the whole job) and `make test` (the whole suite). Both install what they need.
SHELL := /bin/bash
VENV ?= .venv
STAMP := .lab/setup.stamp

# Host packages: the VM (qemu), the image (mmdebstrap, packer, fdisk), real tools the tests run
# (unbound, keepalived, dnsperf; docker-compose validates the rendered compose.yaml offline),
# Vagrant + libvirt, and Chromium for the report screenshots.
APT_PACKAGES := python3 python3-venv python3-pip qemu-system-x86 qemu-utils mmdebstrap fdisk \
	e2fsprogs packer unbound keepalived ipvsadm dnsperf dnsutils iproute2 iptables \
	openssh-client vagrant vagrant-libvirt libvirt-daemon-system dnsmasq-base chromium make git \
	docker-compose

.PHONY: setup demo test lint clean

setup: $(STAMP)

# lab/host_setup.sh installs only what is missing (no apt at all when nothing is) and explains each fault.
$(STAMP): pyproject.toml Makefile lab/host_setup.sh
	@bash lab/host_setup.sh --venv $(VENV) --retry "make $(or $(MAKECMDGOALS),setup)" $(APT_PACKAGES)
	@mkdir -p $(dir $(STAMP)) && touch $(STAMP)

# PROVIDER=vagrant make demo uses Vagrant + libvirt; SUITE=quick make demo runs the short suite;
# SUITE=releases make demo runs the whole job on each guest release in turn (reports/releases.html).
# SUITE=compose make demo answers the compose runtime's questions on one fresh VM (reports/compose.html).
demo: setup
	$(VENV)/bin/fab demo $(if $(PROVIDER),--provider $(PROVIDER)) $(if $(SUITE),--suite $(SUITE))

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -ra -m "not slow"

lint: setup
	$(VENV)/bin/ruff check .

clean:
	-$(VENV)/bin/fab down
	-$(VENV)/bin/fab down --provider vagrant
	rm -rf .lab/vm
