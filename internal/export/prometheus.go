package export

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// prometheusReader gives reg the meter provider's instruments, named as
// the OpenTelemetry specification maps them to Prometheus:
// porttrace.connect.failures becomes porttrace_connect_failures_total,
// porttrace.ports.utilization (unit 1) porttrace_ports_utilization_ratio,
// the resource the target_info series.
func prometheusReader(reg *prometheus.Registry) (sdkmetric.Reader, error) {
	r, err := otelprom.New(otelprom.WithRegisterer(withClassicBuckets(reg)), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("Prometheus exporter: %w", err)
	}
	return r, nil
}

// LossWindow is how long /healthz reports lost events after the tracer's
// lost-event count last rose.
const LossWindow = 30 * time.Second

// Health is the agent's state as /healthz tells it: starting until the
// probes are attached, then healthy, unhealthy while events are being lost
// (the count rose within LossWindow) and once the tracer has stopped.
type Health struct {
	ready   atomic.Bool
	stopped atomic.Pointer[string]
	lost    func() (uint64, error)

	mu       sync.Mutex
	lastLost uint64
	lostAt   time.Time
}

// Ready says the probes are attached; lost reads the tracer's count of
// events it could not deliver.
func (h *Health) Ready(lost func() (uint64, error)) {
	h.mu.Lock()
	h.lost = lost
	h.mu.Unlock()
	h.ready.Store(true)
}

// Stopped says the tracer has stopped, with err if it failed.
func (h *Health) Stopped(err error) {
	why := "tracer stopped"
	if err != nil {
		why += ": " + err.Error()
	}
	h.stopped.Store(&why)
}

// Check returns nil when healthy, else why not.
func (h *Health) Check() error {
	if why := h.stopped.Load(); why != nil {
		return errors.New(*why)
	}
	if !h.ready.Load() {
		return errors.New("starting: probes not attached yet")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	n, err := h.lost()
	if err != nil {
		return fmt.Errorf("reading the lost-event count: %w", err)
	}
	if n > h.lastLost {
		h.lastLost, h.lostAt = n, time.Now()
	}
	if !h.lostAt.IsZero() && time.Since(h.lostAt) < LossWindow {
		return fmt.Errorf("losing events: %d lost so far, the last within %s (raise --ring-size)", n, LossWindow)
	}
	return nil
}

// Server serves /metrics from a Prometheus registry and /healthz.
type Server struct {
	srv  *http.Server
	addr net.Addr
}

// Serve listens on addr (HOST:PORT) and serves in the background. The
// error is the listener's: a bad address or a port in use.
func Serve(addr string, reg *prometheus.Registry, h *Health) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := h.Check(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr()}
	go s.srv.Serve(ln)
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops the server, letting requests in flight finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
