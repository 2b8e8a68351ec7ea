package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/event"
)

func newTrace() *cobra.Command {
	var tf tracerFlags
	var ff filterFlags
	var asJSON bool
	var duration time.Duration
	var cf criFlag
	cmd := &cobra.Command{
		Use:   "trace",
		Short: "Print every connect, port search, state change and TIME_WAIT entry",
		Long: `Print one line per event: connect() results with their errno, the kernel's
port search (allocation) with its latency, state changes of client sockets,
and TIME_WAIT entries, each with the process that made the connection.
Runs until Ctrl-C (or --duration).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := ff.events()
			if err == nil {
				err = tf.check()
			}
			if err == nil {
				err = checkDuration("--duration", duration, true)
			}
			if err != nil {
				return err
			}
			return runTrace(cmd, &tf, &cf, f, asJSON, duration)
		},
	}
	tf.register(cmd)
	cf.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line, with the container and pod (docs/fleet.md lists the fields)")
	ff.register(cmd, true)
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until Ctrl-C)")
	return cmd
}

func runTrace(cmd *cobra.Command, tf *tracerFlags, cf *criFlag, f eventFilter, asJSON bool, duration time.Duration) error {
	stderr := cmd.ErrOrStderr()
	var s sinks
	if asJSON {
		s.cri = cf // the JSON names pods
	}
	p, err := assemble(stderr, tf, s)
	if err != nil {
		return err
	}
	defer p.close()
	t, names, where := p.tracer, p.names, p.where
	ctx, cancel := signalContext()
	defer cancel()
	if duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}
	out := newFlusher(cmd.OutOrStdout())
	defer out.stop()
	if !asJSON {
		out.line(event.TextHeader)
	}
	shown := 0
	err = t.Run(ctx, func(e *event.Event) {
		if !f.match(e) {
			return
		}
		shown++
		if asJSON {
			out.line(traceJSON(e, where, names))
			return
		}
		out.line(e.Text())
	})
	out.stop()
	lost, lerr := t.Lost()
	fmt.Fprintf(stderr, "porttrace: %d events shown, %d lost\n", shown, lost)
	if err == nil {
		err = lerr
	}
	return err
}

// workloadJSON is where an event's process runs, added to its JSON:
// the container (full id) and pod (UID) from its cgroup, and their names
// from the container runtime when one answers.
type workloadJSON struct {
	ContainerID   string `json:"container_id,omitempty"`
	PodUID        string `json:"k8s_pod_uid,omitempty"`
	PodName       string `json:"k8s_pod_name,omitempty"`
	PodNamespace  string `json:"k8s_namespace_name,omitempty"`
	ContainerName string `json:"k8s_container_name,omitempty"`
}

// traceJSON is the event's JSON object with its workload's fields.
func traceJSON(e *event.Event, where *cgroup.Resolver, names *cri.Cache) string {
	b, _ := json.Marshal(e)
	short := where.Container(e.PID, e.CgroupID)
	if short == "" {
		return string(b)
	}
	w := workloadJSON{ContainerID: short}
	if full, ok := where.Lookup(short); ok {
		w.ContainerID, w.PodUID = full.ContainerID, full.PodUID
		if names != nil {
			if n, ok := names.Lookup(full.ContainerID); ok {
				w.PodName, w.PodNamespace, w.ContainerName = n.Pod, n.Namespace, n.Container
				w.PodUID = cmp.Or(w.PodUID, n.PodUID) // the cgroup path may lack it
			}
		}
	}
	extra, _ := json.Marshal(w)
	return string(b[:len(b)-1]) + "," + string(extra[1:])
}

// flusher buffers output and flushes it a few times a second, so that a
// busy machine does not cost a write per event and a quiet one still shows
// each line promptly.
type flusher struct {
	mu   sync.Mutex
	w    *bufio.Writer
	done chan struct{}
	once sync.Once
}

func newFlusher(w io.Writer) *flusher {
	f := &flusher{w: bufio.NewWriterSize(w, 64<<10), done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				f.mu.Lock()
				f.w.Flush()
				f.mu.Unlock()
			case <-f.done:
				return
			}
		}
	}()
	return f
}

func (f *flusher) line(s string) {
	f.mu.Lock()
	f.w.WriteString(s)
	f.w.WriteByte('\n')
	f.mu.Unlock()
}

func (f *flusher) stop() {
	f.once.Do(func() { close(f.done) })
	f.mu.Lock()
	f.w.Flush()
	f.mu.Unlock()
}
