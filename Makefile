# Vigil: the README's two commands are `make demo` and `make test`.
SWIFT ?= swift

.PHONY: deps build test demo bench bench-flood bench-kernel-esp clean secrets-mode fuzz fuzz-smoke install deb package-test

deps:
	./deploy/install-deps.sh

build: deps
	$(SWIFT) build

# Installs dependencies, builds, runs every test (unit, simulation, kernel, interop against strongSwan).
test: deps secrets-mode
	$(SWIFT) build --build-tests
	SWIFT=$(SWIFT) ./deploy/run-tests.sh
	$(MAKE) fuzz-smoke
	$(MAKE) package-test

# The main job: see README.
# The main job: vigild fails over from a killed strongSwan gateway to the next listed one, twice, with a timeline.
demo: deps secrets-mode
	$(SWIFT) build --product vigil
	$(SWIFT) build --product vigild
	$(SWIFT) build --product vigil-demo
	.build/debug/vigil config check config/site-to-site.yaml > /dev/null
	.build/debug/vigil-demo

# git keeps only the executable bit: give the example secrets files the mode vigild insists on.
secrets-mode:
	chmod 600 config/*.secrets.yaml

# Benchmarks print numbers (never timed unit tests). bench-failover is I/O bound: a debug build is fine.
bench: deps secrets-mode
	$(SWIFT) build -c release --product bench-dpd
	$(SWIFT) build -c release --product bench-kernel
	$(SWIFT) build -c release --product bench-esp
	$(SWIFT) build --product vigild
	$(SWIFT) build --product bench-failover
	.build/release/bench-dpd
	.build/release/bench-kernel 1000
	.build/release/bench-esp 5 3 aes128gcm16
	.build/debug/bench-failover --runs 3 --bound 15
	$(MAKE) bench-flood

# Forged IKE_SA_INIT and garbage floods against vigild holding 50 tunnels (network namespaces, root). Options go in
# FLOOD_ARGS, e.g. `make bench-flood FLOOD_ARGS="--init-port both --seconds 60"`.
FLOOD_ARGS ?=
bench-flood: deps secrets-mode
	$(SWIFT) build --product vigild
	$(SWIFT) build --product bench-flood
	.build/debug/bench-flood $(FLOOD_ARGS)

# Kernel-mode failover, Vigil beside strongSwan, in the QEMU guest on a kernel with ESP (prints the figures).
bench-kernel-esp: deps secrets-mode
	$(SWIFT) build --build-tests
	./deploy/guest/run-in-guest.sh .build/debug/vigil-kernel-esp-lab failover-figures

# libFuzzer targets (Fuzz/): each built with ASan and run FUZZ_SECONDS (default 10 minutes) on a work corpus in
# Fuzz/runs seeded from Fuzz/corpus; prints executions and findings, fails on any finding.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) ./Fuzz/run.sh

# What CI runs after the tests: every target for 30 s.
fuzz-smoke:
	FUZZ_SECONDS=30 SWIFT=$(SWIFT) ./Fuzz/run.sh

# Installs vigild, vigil, the systemd unit, /etc/vigil examples (secrets 0600, existing files kept), man pages and
# completions; PREFIX (default /usr/local) and DESTDIR honoured. Release build, Swift runtime linked statically.
PREFIX ?= /usr/local
install: secrets-mode
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-release --product vigild
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-release --product vigil
	$(SWIFT) build --scratch-path .build-tools --product generate-manual
	BINDIR=.build-release/release MANTOOL=.build-tools/debug/generate-manual PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) \
		./deploy/package/install.sh

# The Debian package (dpkg-deb): .build-package/vigil_VERSION_ARCH.deb.
deb: secrets-mode
	SWIFT=$(SWIFT) ./deploy/package/build-deb.sh

# The package installed into a clean Debian 12 root (debootstrap, no Swift there): vigild --check, vigil --version.
package-test: deps secrets-mode
	SWIFT=$(SWIFT) ./deploy/package/test-in-clean-root.sh

clean:
	rm -rf .build .build-release .build-tools .build-package .build-fuzz
