# porttrace. `make help` lists the targets.
GO        ?= go
BIN       := bin/porttrace
VM_CACHE  ?= $(HOME)/.cache/porttrace-vm
ARGS      ?= top
VM_KERNELS ?= 6.1 6.12
# The NAT tests' tools in the VM: iptables and ip6tables (nft backend, with the extensions
# it dlopens), nft and conntrack, as Debian installs them.
VM_NAT_BINS ?= /usr/sbin/iptables /usr/sbin/ip6tables /usr/sbin/nft /usr/sbin/conntrack
VM_NAT_FILES ?= /usr/lib/x86_64-linux-gnu/xtables /etc/protocols
DEB_VERSION ?= 0.1.0

.PHONY: help deps run-deps build build-macos run generate vmlinux test test-unit test-vm test-vm-arm64 test-cluster bench bench-vm manifests deb image clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install what the tests need on a fresh Debian 12 machine (apt packages, Go modules, the VM's kernel)
	sh .ci/deps

run-deps: ## install only what building and running porttrace needs (Go modules; no test peers)
	sh .ci/run-deps

VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
DATE      ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS   := -X main.stampVersion=$(VERSION) -X main.stampCommit=$(COMMIT) -X main.stampDate=$(DATE)

build: ## build bin/porttrace, stamped with the version, commit and date (no clang needed: BPF objects are committed)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/porttrace

build-macos: ## cross-compile bin/porttrace-darwin-{arm64,amd64}, which read captures (report, top --replay) on a Mac
	for arch in arm64 amd64; do \
		GOOS=darwin GOARCH=$$arch CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)-darwin-$$arch ./cmd/porttrace || exit 1; \
	done

run: run-deps build ## set up, build and run porttrace (ARGS=top by default: the live view)
	./$(BIN) $(ARGS)

generate: ## regenerate the bpf2go output for amd64 and arm64 (porttrace's probes, portbench's floor programs) from the pinned bpf/headers
	$(GO) generate ./tracer ./cmd/portbench/floor

vmlinux: ## regenerate the pinned bpf/headers: vmlinux-x86.h from this kernel, vmlinux-arm64.h from Debian's arm64 cloud kernel, libbpf's headers
	sh bpf/headers/update.sh

test: deps test-unit test-vm test-vm-arm64 test-cluster ## every test: unit, kernel (this kernel), kernel in VMs on Debian's 6.1 and 6.12 (amd64) and 6.12 (arm64), and a real single-node Kubernetes

test-unit: ## go test ./... (kernel tests need root; PORTTRACE_REQUIRE_BPF=1 turns their skip into a failure)
	$(GO) vet ./...
	# arm64 (Graviton, Ampere): every package and test, with the arm64
	# BPF objects, must build and vet for it.
	GOARCH=arm64 CGO_ENABLED=0 $(GO) vet ./...
	$(GO) test -count=1 -timeout 10m ./...
	# The capture decoder against random input, for a bounded count: a
	# -fuzztime duration races Go's fuzz coordinator at its deadline and
	# fails with a bare "context deadline exceeded" (golang/go#75804).
	$(GO) test -run '^$$' -fuzz FuzzReader -fuzztime 60000x ./internal/capture
	# The aggregator, report and replay fed captures of any event stream:
	# bounds, the memory ceiling and sanitised output (issue 21).
	$(GO) test -run '^$$' -fuzz FuzzReport -fuzztime 3000x ./internal/report

test-vm: ## the kernel tests under qemu on Debian's 6.1 and 6.12 kernels, for the fentry and kprobe backends
	mkdir -p $(VM_CACHE)
	$(GO) test -c -o $(VM_CACHE)/tracer.test ./tracer
	$(GO) test -c -o $(VM_CACHE)/cmd.test ./cmd/porttrace/e2e
	$(GO) test -c -o $(VM_CACHE)/conntrack.test ./internal/conntrack
	$(GO) build -o $(VM_CACHE)/porttrace ./cmd/porttrace
	# One vCPU and single-threaded TCG (run.sh's default): multi-threaded TCG
	# sometimes locks up while the kernel live-patches static keys as probes
	# attach and detach. Then, with the built binary: a capture recorded
	# with each backend, the agent's export (port search latency is exact
	# there), the port model's situations and source NAT (iptables-nft, nft
	# and conntrack ride along; the NAT space readings need no backend, so
	# internal/conntrack's run once per kernel), and once without the
	# netfilter modules: a kernel with no conntrack to read.
	set -e; for k in $(VM_KERNELS); do \
		VM_KERNEL=$$k VM_SMP=1 internal/vmtest/run.sh $(VM_CACHE)/tracer.test $(VM_CACHE)/$$k -test.run '^TestKernel'; \
		VM_KERNEL=$$k VM_SMP=1 VM_BACKENDS=fentry VM_EXTRA_BINS="$(VM_NAT_BINS)" VM_EXTRA_FILES="$(VM_NAT_FILES)" \
			internal/vmtest/run.sh $(VM_CACHE)/conntrack.test $(VM_CACHE)/$$k -test.run '^(TestNAT.*|TestConntrackTableFull)$$'; \
		VM_KERNEL=$$k VM_SMP=1 VM_BACKENDS="fentry kprobe" VM_EXTRA_BINS="$(VM_CACHE)/porttrace $(VM_NAT_BINS)" VM_EXTRA_FILES="$(VM_NAT_FILES)" \
			PORTTRACE_BINARY=$(VM_CACHE)/porttrace internal/vmtest/run.sh $(VM_CACHE)/cmd.test $(VM_CACHE)/$$k \
			-test.run '^(TestRecordReport|TestAgentExports|TestModel.*|TestTopNAT|TestRecordNAT|TestAgentNATMetrics|TestNATIPv6)$$'; \
		VM_KERNEL=$$k VM_SMP=1 VM_BACKENDS=fentry VM_SKIP_MODULES='^(nf|nft|x_|xt_|libcrc32c)' VM_EXTRA_BINS=$(VM_CACHE)/porttrace \
			PORTTRACE_BINARY=$(VM_CACHE)/porttrace internal/vmtest/run.sh $(VM_CACHE)/cmd.test $(VM_CACHE)/$$k -test.run '^TestWithoutConntrack$$'; \
	done

test-vm-arm64: ## the kernel tests under qemu-system-aarch64 (TCG) on Debian's arm64 6.12 cloud kernel, fentry and kprobe backends
	mkdir -p $(VM_CACHE)/arm64-6.12
	GOARCH=arm64 CGO_ENABLED=0 $(GO) test -c -o $(VM_CACHE)/arm64-6.12/tracer.test ./tracer
	VM_ARCH=arm64 VM_KERNEL=6.12 VM_SMP=1 internal/vmtest/run.sh $(VM_CACHE)/arm64-6.12/tracer.test $(VM_CACHE)/arm64-6.12 -test.run '^TestKernel'

test-cluster: ## a real single-node Kubernetes (parts cached by .ci/k8s-deps): helm install of the chart, a pod exhausting ports, Prometheus names it (root)
	PORTTRACE_CLUSTER=1 $(GO) test -count=1 -timeout 30m -v -run '^TestCluster$$' ./deploy/cluster

bench-vm: ## what the fentry and kprobe backends cost, as ratios, under qemu on Debian's 6.1 and 6.12 kernels (TCG: compare ratios only)
	mkdir -p $(VM_CACHE)
	$(GO) test -c -o $(VM_CACHE)/cmd.test ./cmd/porttrace/e2e
	$(GO) build -o $(VM_CACHE)/porttrace ./cmd/porttrace
	set -e; for k in $(VM_KERNELS); do \
		VM_KERNEL=$$k VM_SMP=1 VM_BACKENDS="fentry kprobe" VM_EXTRA_BINS=$(VM_CACHE)/porttrace PORTTRACE_BINARY=$(VM_CACHE)/porttrace \
			internal/vmtest/run.sh $(VM_CACHE)/cmd.test $(VM_CACHE)/$$k -test.run '^$$' -test.bench TracerCost -test.benchtime 1x \
			| grep -E 'PORTTRACE-COST|PORTTRACE-VM-RESULT|FAIL'; \
	done

bench: deps ## what porttrace costs the machine it traces, beside a bare BPF program, a minimal streamer, BCC tcpstates and bpftrace, and the idle agent's cost (root, about 26 minutes)
	$(GO) build -o bin/porttrace ./cmd/porttrace
	$(GO) build -o bin/churn ./cmd/churn
	$(GO) build -o bin/portbench ./cmd/portbench
	# The decode + aggregate path, fed from a capture, and the capture codecs, on one core.
	$(GO) test -run '^$$' -bench . -benchmem -cpu 1 ./internal/aggregate ./internal/report ./internal/capture
	./bin/portbench --bcc-kernel-source "$$(sh .ci/bench-deps | sed -n 's/^BCC_KERNEL_SOURCE=//p')" $(BENCH_ARGS)

deb: ## build bin/porttrace_VERSION_amd64.deb with nfpm: static binary, systemd unit, man pages, completions
	rm -rf bin/pkg && mkdir -p bin/pkg
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/pkg/porttrace ./cmd/porttrace
	bin/pkg/porttrace gen-docs --man bin/pkg/man --completions bin/pkg/completions
	gzip -9n bin/pkg/man/*.1
	sed -e 's/@VERSION@/$(DEB_VERSION)/' -e "s/@DATE@/$$(git log -1 --format=%aD 2>/dev/null || date -R)/" \
		packaging/changelog | gzip -9n > bin/pkg/changelog.gz
	VERSION=$(DEB_VERSION) nfpm package --config packaging/nfpm.yaml --packager deb --target bin/

IMAGE     ?= localhost/porttrace:dev
IMAGE_TAR ?= bin/porttrace-image.tar

image: ## build the container image IMAGE with buildah (no Docker engine), and save it as the OCI archive IMAGE_TAR
	rm -rf bin/image && mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/image/porttrace ./cmd/porttrace
	cp /etc/ssl/certs/ca-certificates.crt bin/image/
	buildah build --quiet --layers=false -f deploy/Dockerfile -t $(IMAGE) bin/image
	rm -f $(IMAGE_TAR)
	buildah push --quiet $(IMAGE) oci-archive:$(IMAGE_TAR):$(IMAGE)

manifests: ## regenerate deploy/kubernetes from the Helm chart
	{ printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: porttrace\n'; \
	  helm template porttrace deploy/helm/porttrace --namespace porttrace; } > deploy/kubernetes/porttrace.yaml
	helm template porttrace deploy/helm/porttrace --namespace porttrace --set serviceMonitor.enabled=true \
		--show-only templates/servicemonitor.yaml > deploy/kubernetes/servicemonitor.yaml

clean: ## remove build output
	rm -rf bin
