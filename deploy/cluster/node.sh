#!/bin/sh
# A single-node Kubernetes for the cluster test, from .ci/k8s-deps' parts.
#   node.sh start RUN   starts etcd, the control plane, containerd and the
#                       kubelet, each in the background with its pid in
#                       RUN/pids, and waits until the node is Ready
#   node.sh stop RUN    stops every process by its pid, unmounts what the
#                       kubelet and containerd mounted under RUN, removes
#                       the CNI bridge and RUN
# K8S_BIN names the Kubernetes binaries; KUBECONFIG=RUN/kubeconfig after.
set -eu
cmd=$1 run=$2
here=$(cd "$(dirname "$0")" && pwd)

stop() {
	[ -f "$run/pids" ] || return 0
	# The kubelet first, then the runtime's tasks, then the rest.
	tac "$run/pids" | while read -r name pid; do
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$pid" 2>/dev/null || true
	done
	# Shims of containerd's tasks outlive it: kill those whose address is ours.
	for p in $(pgrep -f "containerd-shim.*-address $run/" || true); do kill -9 "$p" 2>/dev/null || true; done
	grep " $run/" /proc/self/mounts | awk '{print $2}' | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	for netns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do ip netns delete "$netns" 2>/dev/null || true; done
	ip link delete ptcni0 2>/dev/null || true
	# The bridge plugin's masquerade rules of pods torn down without a CNI
	# DEL (the kubelet stopped first): each a POSTROUTING jump to a chain.
	iptables -t nat -S POSTROUTING 2>/dev/null | grep 'porttrace-test' | while read -r rule; do
		chain=$(echo "$rule" | sed -n 's/.* -j \(CNI-[0-9a-f]*\)$/\1/p')
		eval "iptables -t nat $(echo "$rule" | sed 's/^-A /-D /')" || true
		[ -z "$chain" ] || { iptables -t nat -F "$chain"; iptables -t nat -X "$chain"; } || true
	done
	# The kubelet links each container's log from /var/log/containers.
	for l in /var/log/containers/*.log; do
		case $(readlink "$l" 2>/dev/null) in "$run"/*) rm -f "$l" ;; esac
	done
	rm -rf "$run"
}

start() {
	: "${K8S_BIN:?K8S_BIN names the Kubernetes binaries (.ci/k8s-deps)}"
	mkdir -p "$run/certs" "$run/cni" "$run/manifests" "$run/log"
	: > "$run/pids"
	bg() { name=$1; shift; "$@" > "$run/log/$name.log" 2>&1 & echo "$name $!" >> "$run/pids"; }

	bg etcd etcd --data-dir "$run/etcd" --listen-client-urls http://127.0.0.1:2379 \
		--advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380
	openssl genrsa -out "$run/sa.key" 2048 2>/dev/null
	openssl rsa -in "$run/sa.key" -pubout -out "$run/sa.pub" 2>/dev/null
	token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$token,admin,admin,system:masters" > "$run/tokens.csv"
	chmod 600 "$run/tokens.csv" "$run/sa.key"
	cat > "$run/kubeconfig" <<CFG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:16443", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
CFG
	chmod 600 "$run/kubeconfig"
	bg apiserver "$K8S_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 --bind-address=127.0.0.1 \
		--secure-port=16443 --cert-dir="$run/certs" --token-auth-file="$run/tokens.csv" --authorization-mode=Node,RBAC \
		--service-account-key-file="$run/sa.pub" --service-account-signing-key-file="$run/sa.key" \
		--service-account-issuer=https://kubernetes.default.svc --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true
	k() { "$K8S_BIN/kubectl" --kubeconfig "$run/kubeconfig" "$@"; }
	for _ in $(seq 120); do k get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
	k get --raw /readyz >/dev/null
	bg controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig="$run/kubeconfig" \
		--service-account-private-key-file="$run/sa.key" --root-ca-file="$run/certs/apiserver.crt" \
		--controllers='*,-nodeipam' --leader-elect=false --bind-address=127.0.0.1 --secure-port=0
	bg scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$run/kubeconfig" --leader-elect=false --bind-address=127.0.0.1 --secure-port=0

	cp "$here/10-bridge.conflist" "$run/cni/"
	containerd config default > "$run/containerd.toml"
	sed -i -e "s|^root = .*|root = \"$run/containerd/root\"|" -e "s|^state = .*|state = \"$run/containerd/state\"|" \
		-e "s|address = \"/run/containerd/containerd.sock\"|address = \"$run/containerd/containerd.sock\"|" \
		-e "s|sandbox_image = .*|sandbox_image = \"localhost/pause:local\"|" \
		-e "s|bin_dir = .*|bin_dir = \"/usr/lib/cni\"|" -e "s|conf_dir = .*|conf_dir = \"$run/cni\"|" \
		-e "s|restrict_oom_score_adj = false|restrict_oom_score_adj = true|" "$run/containerd.toml"
	bg containerd containerd --config "$run/containerd.toml"
	sock="$run/containerd/containerd.sock"
	for _ in $(seq 60); do [ -S "$sock" ] && break; sleep 0.5; done
	ctr -a "$sock" -n k8s.io images import "$run/pause.tar" >/dev/null

	sed -e "s|\$RUN|$run|g" "$here/kubelet.yaml" > "$run/kubelet.yaml"
	bg kubelet "$K8S_BIN/kubelet" --kubeconfig="$run/kubeconfig" --config="$run/kubelet.yaml" \
		--hostname-override=node1 --root-dir="$run/kubelet" --cert-dir="$run/kubelet-pki"
	for _ in $(seq 120); do
		k get node node1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True && return 0
		sleep 0.5
	done
	echo "node.sh: node1 not Ready within 60 s" >&2
	return 1
}

case $cmd in
start) start ;;
stop) stop ;;
*) echo "usage: node.sh start|stop RUN" >&2; exit 2 ;;
esac
