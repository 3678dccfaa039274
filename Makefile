# sockmux: `make demo` shows the main job, `make test` runs every test.
GO       ?= go
BIN      := bin/sockmux
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Every platform sockmux is built for. An entry may carry the ARM version
# after a second slash (linux/arm/6: a Raspberry Pi Zero or 1). The small
# devices of the far end (routers, gateways) are the mips, mipsle, riscv64
# and ARMv6 entries.
PLATFORMS := linux/amd64 linux/arm64 linux/arm/7 linux/arm/6 linux/mips linux/mipsle linux/riscv64 \
	darwin/amd64 darwin/arm64 windows/amd64 windows/arm64 freebsd/amd64
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: all build demo test unit vet fmt-check staticcheck cross clean bench man

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/sockmux

# A self-contained demonstration: two link ends on loopback, a forwarded
# connection, a transfer with its checksum and throughput.
demo: build
	$(GO) run ./cmd/demo -sockmux $(BIN)

# Every test: formatting, vet, staticcheck, all platforms build, and the
# unit and end-to-end tests under the race detector.
test: fmt-check vet staticcheck cross unit

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

staticcheck:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2
	$(STATICCHECK) ./...

# Cross-compile and vet every package for every supported platform.
cross:
	@set -e; for p in $(PLATFORMS); do \
		os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=""; \
		[ "$$rest" = "$$arch" ] || arm=$${rest#*/}; \
		echo "build+vet $$p"; \
		GOOS=$$os GOARCH=$$arch GOARM=$$arm CGO_ENABLED=0 $(GO) build ./... ; \
		GOOS=$$os GOARCH=$$arch GOARM=$$arm CGO_ENABLED=0 $(GO) vet ./... ; \
	done

# The sockmux binary for every platform, stripped as a release would be,
# in bin/<os>-<arch>[v<arm>]/, with a table of their sizes.
.PHONY: sizes
sizes:
	@set -e; printf '%-20s %10s\n' platform bytes; for p in $(PLATFORMS); do \
		os=$${p%%/*}; rest=$${p#*/}; arch=$${rest%%/*}; arm=""; \
		[ "$$rest" = "$$arch" ] || arm=$${rest#*/}; \
		dir=bin/$$os-$$arch$${arm:+v$$arm}; ext=""; [ $$os = windows ] && ext=.exe; \
		GOOS=$$os GOARCH=$$arch GOARM=$$arm CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o $$dir/sockmux$$ext ./cmd/sockmux; \
		printf '%-20s %10s\n' $$p $$(wc -c < $$dir/sockmux$$ext); \
	done

# The benchmark suite (issue 6): sockmux against its baselines, each
# measured in the same run; prints one table and writes it, with the
# machine, the details and the profiles, to docs/benchmarks.md (Linux;
# about 8 minutes).
bench: build
	SOCKMUX_BENCH=1 SOCKMUX_BIN=$(abspath $(BIN)) $(GO) test -count=1 -v -timeout 30m -run '^TestSuite$$' ./bench/

clean:
	rm -rf bin

# The manual page, made from the command line's own definitions (sockmux man).
man:
	$(GO) run ./cmd/sockmux man > docs/sockmux.1.tmp && mv docs/sockmux.1.tmp docs/sockmux.1

# Reliability: the fault matrix in full (a short form runs in `make test`),
# each fuzz target for FUZZTIME, and a soak of mixed traffic with faults for
# DURATION. See docs/reliability.md.
.PHONY: faults fuzz soak

FUZZTIME ?= 60s
DURATION ?= 30m
FUZZ_TARGETS := link:FuzzFrameReader link:FuzzRawFrameReader link:FuzzCOBS link:FuzzParseHello link:FuzzParseAck link:FuzzDecompress \
	mux:FuzzParseMessage mux:FuzzDeliver dgwire:FuzzReader dgwire:FuzzSession

faults:
	SOCKMUX_FAULTS=full $(GO) test -count=1 -timeout 120m -run '^TestFaultMatrix$$' -v ./tests/

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t#*:}; \
		echo "== $$pkg $$fn for $(FUZZTIME)"; \
		$(GO) test ./$$pkg/ -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done

soak:
	SOCKMUX_SOAK=$(DURATION) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./tests/
