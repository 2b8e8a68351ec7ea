package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/live"
)

// criFlag is --cri-socket, of top and agent.
type criFlag struct{ socket string }

func (f *criFlag) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.socket, "cri-socket", "", fmt.Sprintf("container runtime (CRI) socket that names pods and containers; \"none\" for none (default: the first of %s that exists)", strings.Join(cri.Sockets, ", ")))
}

// start reads pod names from the runtime in the background until stop is
// called; nil when there is no runtime (or "none").
func (f *criFlag) start(stderr io.Writer) (names *cri.Cache, stop func(), err error) {
	path := cri.Find(f.socket)
	if f.socket == "none" || path == "" {
		return nil, func() {}, nil
	}
	c, err := cri.New(path, stderr)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go c.Run(ctx)
	fmt.Fprintf(stderr, "porttrace: naming pods through the CRI socket %s\n", path)
	return c, cancel, nil
}

// byShortID names a pod by its container's short id, the one summaries carry.
func byShortID(c *cri.Cache, where *cgroup.Resolver) func(short string) (live.PodNames, bool) {
	return func(short string) (live.PodNames, bool) {
		w, ok := where.Lookup(short)
		if !ok {
			return live.PodNames{}, false
		}
		n, ok := c.Lookup(w.ContainerID)
		return live.PodNames{Pod: n.Pod, Namespace: n.Namespace, UID: n.PodUID}, ok
	}
}

// podFilter is top's --pod and --k8s-namespace.
type podFilter struct{ pod, namespace string }

func (f *podFilter) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.pod, "pod", "", "only processes of this Kubernetes pod, by name or UID, and their port spaces")
	cmd.Flags().StringVar(&f.namespace, "k8s-namespace", "", "only processes of pods in this Kubernetes namespace (names come from the CRI socket), and their port spaces")
}
