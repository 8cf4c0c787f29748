# Vigil: the README's two commands are `make demo` and `make test`.
SWIFT ?= swift

.PHONY: deps build test demo bench clean secrets-mode fuzz fuzz-smoke

deps:
	./deploy/install-deps.sh

build: deps
	$(SWIFT) build

# Installs dependencies, builds, runs every test (unit, simulation, kernel, interop against strongSwan).
test: deps secrets-mode
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(MAKE) fuzz-smoke

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

# libFuzzer targets (Fuzz/): each built with ASan and run FUZZ_SECONDS (default 10 minutes) on a work corpus in
# Fuzz/work seeded from Fuzz/corpus; prints executions and findings, fails on any finding.
FUZZ_SECONDS ?= 600
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) SWIFT=$(SWIFT) ./Fuzz/run.sh

# What CI runs after the tests: every target for 30 s.
fuzz-smoke:
	FUZZ_SECONDS=30 SWIFT=$(SWIFT) ./Fuzz/run.sh

clean:
	rm -rf .build
