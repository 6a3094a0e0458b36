# Makefile for mod_mpm_event_rs, the Rust event MPM for Apache httpd 2.4.
#
#   make            build build/mod_mpm_event_rs.so (cargo build --release)
#   make test       install missing Debian packages, build, run all tests
#   make run        build and start httpd in the foreground on 127.0.0.1:$(PORT)
#   make bench      build, then benchmark against stock event/worker and nginx (QUICK=1: ~3 min)
#   make install    copy the module, stripped, to `apxs -q LIBEXECDIR` (+ Debian mods-available files)
#   make deb        build the Debian package (build/libapache2-mpm-event-rs_*.deb)
#   make deps       install missing Debian packages (scripts/deps.sh)
#   make clean      remove target/ and build/
#
# Variables:
#   PORT=8080            port for `make run`
#   MPM_MODULE=path.so   module for `make run` / `make install` (and passed to
#                        the tests); when it is not the default
#                        build/mod_mpm_event_rs.so, run/install build nothing
#   RUN_DIR=build/run    where `make run` keeps its config, pid file, logs
#   LOGLEVEL=info        LogLevel for `make run`
#   APXS=apxs            the httpd to build for and test with (its apxs);
#   HTTPD=/usr/sbin/apache2   with HTTPD, its binary for the tests and make run
#   CARGO=cargo  DESTDIR=

SHELL := /bin/bash
.DEFAULT_GOAL := all
# cargo parallelises on its own; keep deps -> build -> test in order.
.NOTPARALLEL:

ifndef CARGO
CARGO := $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
endif
APXS  ?= apxs
HTTPD ?= /usr/sbin/apache2

TARGET_DIR   := $(or $(CARGO_TARGET_DIR),target)
CARGO_SO     := $(TARGET_DIR)/release/libmod_mpm_event_rs.so
BUILD_DIR    := build
MODULE_FILE  := mod_mpm_event_rs.so
BUILT_MODULE := $(abspath $(BUILD_DIR)/$(MODULE_FILE))

MPM_MODULE ?= $(BUILT_MODULE)
override MPM_MODULE := $(abspath $(MPM_MODULE))
# Build only when the module in use is the one this tree builds. `make run`
# always runs cargo; `make install` builds only if there is no module yet, so
# that `make && sudo make install` does not run cargo as root.
ifeq ($(MPM_MODULE),$(BUILT_MODULE))
RUN_PREREQ     := all
INSTALL_PREREQ := $(BUILT_MODULE)
else
RUN_PREREQ     :=
INSTALL_PREREQ :=
endif

PORT     ?= 8080
RUN_DIR  ?= $(BUILD_DIR)/run
LOGLEVEL ?= info

# Debian layout; the .load/.conf files are only written where it exists.
MODS_AVAILABLE := /etc/apache2/mods-available
LIBEXECDIR      = $(shell $(APXS) -q LIBEXECDIR 2>/dev/null)

.PHONY: all deps toolchain test run install clean

all: toolchain
	APXS="$(APXS)" $(CARGO) build --release
	@mkdir -p $(BUILD_DIR)
	cp -f $(CARGO_SO) $(BUILD_DIR)/.$(MODULE_FILE).tmp
	mv -f $(BUILD_DIR)/.$(MODULE_FILE).tmp $(BUILD_DIR)/$(MODULE_FILE)
	@echo "built $(BUILT_MODULE)"

$(BUILT_MODULE):
	@$(MAKE) --no-print-directory all

deps: toolchain
	scripts/deps.sh

# The Rust toolchain is not a Debian package here (Debian 12's rustc is too
# old): say what to do instead of failing in the compiler.
toolchain:
	@scripts/toolchain.sh "$(CARGO)"

# The package is Debian's: `make test` builds and checks it only when the
# httpd under test is Debian's apache2 (its apxs from apache2-dev).
DEBIAN_HTTPD := $(filter apache2-dev,$(shell dpkg -S "$$(readlink -f "$$(command -v $(APXS))")" 2>/dev/null | cut -d: -f1))

test: deps all
	MPM_MODULE=$(MPM_MODULE) HTTPD=$(HTTPD) APXS="$(APXS)" $(CARGO) test --release -- --test-threads=1
	MPM_MODULE=$(MPM_MODULE) HTTPD=$(HTTPD) APXS=$(APXS) scripts/apache-test.sh
ifneq ($(DEBIAN_HTTPD),)
	$(MAKE) --no-print-directory deb
	lintian --fail-on error,warning $(LINTIAN_ACCEPTED) $(DEB)
	tests/deb/install-remove.sh $(DEB)
endif

run: $(RUN_PREREQ)
	APXS="$(APXS)" scripts/run.sh --module "$(MPM_MODULE)" --port "$(PORT)" \
	    --run-dir "$(abspath $(RUN_DIR))" --loglevel "$(LOGLEVEL)" --httpd "$(HTTPD)"

# `make bench`: bench/README.md. QUICK=1 is the short mode (ours and stock
# event, 3 rounds, under 3 minutes); PROFILE=1 runs perf and strace on ours
# and stock event instead; BENCH_ARGS passes more options to bench/bench.py
# (e.g. BENCH_ARGS="--servers ours,event,nginx --rounds 7"). Results go to
# bench/results/. MPM_MODULE=other.so benchmarks that module as "ours".
.PHONY: bench
bench: $(RUN_PREREQ)
	bench/bench.sh $(if $(filter-out 0,$(PROFILE)),--profile,$(if $(filter-out 0,$(QUICK)),--quick)) \
	    --module "$(MPM_MODULE)" $(BENCH_ARGS)

# `make deb`: build/libapache2-mpm-event-rs_<version>_<arch>.deb (scripts/deb.sh).
# The one lintian tag accepted: the package is named for what it replaces
# (an MPM, like apache2-bin's mpm_event), not libapache2-mod-*.
DEB_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
DEB := $(BUILD_DIR)/libapache2-mpm-event-rs_$(DEB_VERSION)_$(shell dpkg --print-architecture 2>/dev/null).deb
LINTIAN_ACCEPTED := --suppress-tags non-standard-apache2-module-package-name
.PHONY: deb
deb: all
	APXS="$(APXS)" scripts/deb.sh $(BUILT_MODULE)

# The module is written to a temporary name and renamed, so that a running
# httpd that has the old file mapped keeps working until it is restarted.
install: $(INSTALL_PREREQ)
	@test -f "$(MPM_MODULE)" || { echo "no module at $(MPM_MODULE)" >&2; exit 1; }
	@test -n "$(LIBEXECDIR)" || { echo "'$(APXS) -q LIBEXECDIR' failed (is apache2-dev installed?)" >&2; exit 1; }
	install -d -m 755 "$(DESTDIR)$(LIBEXECDIR)"
	objcopy --strip-unneeded "$(MPM_MODULE)" "$(DESTDIR)$(LIBEXECDIR)/.$(MODULE_FILE).tmp"
	chmod 644 "$(DESTDIR)$(LIBEXECDIR)/.$(MODULE_FILE).tmp"
	mv -f "$(DESTDIR)$(LIBEXECDIR)/.$(MODULE_FILE).tmp" "$(DESTDIR)$(LIBEXECDIR)/$(MODULE_FILE)"
	@if [ -d "$(DESTDIR)$(MODS_AVAILABLE)" ]; then \
	    set -x; \
	    sed -e 's|@MODULE@|$(LIBEXECDIR)/$(MODULE_FILE)|g' conf/debian/mpm_event_rs.load.in \
	        > "$(DESTDIR)$(MODS_AVAILABLE)/mpm_event_rs.load"; \
	    chmod 644 "$(DESTDIR)$(MODS_AVAILABLE)/mpm_event_rs.load"; \
	    install -m 644 conf/debian/mpm_event_rs.conf "$(DESTDIR)$(MODS_AVAILABLE)/mpm_event_rs.conf"; \
	    { set +x; } 2>/dev/null; \
	    echo "To switch a Debian server over: a2dismod mpm_event && a2enmod mpm_event_rs && systemctl restart apache2"; \
	fi

clean:
	-$(CARGO) clean
	rm -rf $(BUILD_DIR)
