// Package cri names containers through the container runtime's CRI socket
// (containerd, CRI-O): the pod, namespace and container name of each
// container id, from the kubelet's own labels. The names are cached and
// refreshed in the background, periodically and when an unknown container
// is looked up; Lookup never waits for the runtime.
package cri

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/porttrace/porttrace/internal/sanitize"
)

// Sockets are where containerd and CRI-O listen by default, tried in order
// when no socket is named.
var Sockets = []string{"/run/containerd/containerd.sock", "/run/crio/crio.sock"}

// Refresh is how often the names are read again without being asked.
const Refresh = 30 * time.Second

// Names are a container's Kubernetes names, as the kubelet labels it,
// and its pod's UID (for nodes whose cgroup paths do not carry it, such
// as the cgroupfs driver without per-QoS cgroups).
type Names struct {
	Pod, Namespace, Container string
	PodUID                    string
}

// Cache holds the names of the runtime's containers, by full id.
type Cache struct {
	path string
	conn *grpc.ClientConn
	rt   runtime.RuntimeServiceClient
	warn io.Writer
	kick chan struct{}

	mu      sync.RWMutex
	names   map[string]Names
	failing bool
}

// Find returns the socket to use: path if not "", else the first of
// Sockets that exists; "" if none.
func Find(path string) string {
	if path != "" {
		return path
	}
	for _, p := range Sockets {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// New returns a cache reading the runtime at the unix socket path. It does
// not connect: a runtime that is absent or not yet up only leaves names
// empty, and is told once on warn.
func New(path string, warn io.Writer) (*Cache, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", path, err)
	}
	return &Cache{path: path, conn: conn, rt: runtime.NewRuntimeServiceClient(conn), warn: warn,
		kick: make(chan struct{}, 1), names: map[string]Names{}}, nil
}

// Run refreshes the names every Refresh and when Lookup missed, until ctx
// ends; then it closes the connection.
func (c *Cache) Run(ctx context.Context) {
	defer c.conn.Close()
	tick := time.NewTicker(Refresh)
	defer tick.Stop()
	for {
		c.refresh(ctx)
		select { // at most one refresh a second, however many misses
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.kick:
		}
	}
}

// Lookup returns the names of the container with the full id. A miss asks
// for a refresh and returns at once.
func (c *Cache) Lookup(id string) (Names, bool) {
	c.mu.RLock()
	n, ok := c.names[id]
	c.mu.RUnlock()
	if !ok {
		select {
		case c.kick <- struct{}{}:
		default:
		}
	}
	return n, ok
}

// The kubelet's labels on every container it creates.
const (
	podNameLabel       = "io.kubernetes.pod.name"
	podNamespaceLabel  = "io.kubernetes.pod.namespace"
	containerNameLabel = "io.kubernetes.container.name"
	podUIDLabel        = "io.kubernetes.pod.uid"
)

func (c *Cache) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.rt.ListContainers(ctx, &runtime.ListContainersRequest{})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if !c.failing {
			fmt.Fprintf(c.warn, "porttrace: CRI socket %s: %v; pods are named by UID only until it answers\n", c.path, err)
		}
		c.failing = true
		return
	}
	if c.failing {
		fmt.Fprintf(c.warn, "porttrace: CRI socket %s answers; naming pods\n", c.path)
	}
	c.failing = false
	names := make(map[string]Names, len(resp.Containers))
	for _, ct := range resp.Containers {
		n := Names{Pod: ct.Labels[podNameLabel], Namespace: ct.Labels[podNamespaceLabel], Container: ct.Labels[containerNameLabel], PodUID: ct.Labels[podUIDLabel]}
		if n.Container == "" && ct.Metadata != nil {
			n.Container = ct.Metadata.Name
		}
		// The runtime's labels are anyone's text: make them safe to print.
		n.Pod, n.Namespace, n.Container = sanitize.Text(n.Pod, sanitize.Name), sanitize.Text(n.Namespace, sanitize.Name), sanitize.Text(n.Container, sanitize.Name)
		n.PodUID = sanitize.Text(n.PodUID, sanitize.Name)
		names[ct.Id] = n
	}
	c.names = names
}
