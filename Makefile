# Vigil build, test and run entry points. `make test` is what CI runs
# (.ci/run); it installs what it needs itself, idempotently.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.cache/bin
export PATH := $(TOOLS):$(PATH)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/vigil-safeguarding/vigil/internal/version.Version=$(VERSION)
PROTOC_GEN_GO := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
APT_PACKAGES := protobuf-compiler clamav clamav-daemon clamdscan bluez python3-dbusmock dbus-daemon dbus-bin xvfb xauth xdotool x11-utils xterm openbox chromium python3-aiosmtpd tesseract-ocr tesseract-ocr-eng wixl msitools rpm debootstrap wine wine64 gcc-mingw-w64-x86-64-posix poppler-utils

.PHONY: build run test deps tools proto proto-check vet unit cross wine-test bench bench-smoke clean

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/vigil-agent ./agent/cmd/vigil-agent
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/vigil-collector ./collector/cmd/vigil-collector

# run: a collector with its Badger store in ./var, an enrolled local agent,
# findings visible through the CLI. Ctrl-C stops everything cleanly.
run: build
	./scripts/run.sh

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

tools:
	@mkdir -p $(TOOLS)
	@[ -x $(TOOLS)/protoc-gen-go ] || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	@[ -x $(TOOLS)/protoc-gen-go-grpc ] || GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)

proto: deps tools
	protoc -I proto --go_out=. --go_opt=module=github.com/vigil-safeguarding/vigil \
		--go-grpc_out=. --go-grpc_opt=module=github.com/vigil-safeguarding/vigil \
		proto/vigil/v1/*.proto

# proto-check fails when the committed generated code differs from what the
# pinned generators produce.
proto-check: proto
	@git diff --exit-code -- proto/ || { echo "generated protobuf code is stale: run make proto and commit"; exit 1; }

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout=60m ./...

cross:
	@for t in windows/amd64 darwin/arm64 linux/arm64; do \
		os=$${t%/*}; arch=$${t#*/}; ext=; [ $$os = windows ] && ext=.exe; \
		for b in agent collector; do \
			echo "cross $$os/$$arch vigil-$$b"; \
			CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -o dist/$$os-$$arch/vigil-$$b$$ext ./$$b/cmd/vigil-$$b || exit 1; \
		done; \
	done

# wine-test runs the Windows builds of the packages whose tests can run
# under Wine (WMI, SCM and AF_UNIX cannot); see scripts/wine-test.sh.
wine-test:
	bash scripts/wine-test.sh

test: deps tools proto-check vet unit bench-smoke cross wine-test

bench:
	$(GO) test -run=^$$ -bench=. -benchtime=3x ./...

# bench-smoke builds and runs every benchmark once, so none stops compiling
# or running unnoticed. The figures mean nothing (see docs/benchmarks.md for
# real runs): -short makes BenchmarkAlertList fill 20,000 findings instead
# of 1,000,000, and the knobs below shorten the e2e cost windows (idle and
# screen monitoring 5 s instead of 180/120 s, OCR 2 frames instead of 20).
BENCH_SMOKE_ENV := VIGIL_IDLE_SECONDS=5 VIGIL_SCREEN_SECONDS=5 VIGIL_OCR_FRAMES=2
bench-smoke:
	$(BENCH_SMOKE_ENV) $(GO) test -short -count=1 -run='^$$' -bench=. -benchtime=1x -timeout=20m ./...

clean:
	rm -rf bin dist
