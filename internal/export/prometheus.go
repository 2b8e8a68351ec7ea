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
	"golang.org/x/net/netutil"
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

// LossWindow is how long /readyz reports lost events after the tracer's
// lost-event count last rose.
const LossWindow = 30 * time.Second

// StallAfter is how long the agent's loops may go without a beat before
// /healthz fails: the monitor beats every second.
const StallAfter = 30 * time.Second

// Health is the agent's state as /healthz (liveness) and /readyz
// (readiness) tell it. Liveness fails only when a restart would help: the
// tracer stopped, or the agent's loops have not beaten for StallAfter.
// Readiness also fails while starting, while events are being lost (the
// count rose within LossWindow) and while an export is failing: the
// incidents porttrace exists for, when restarting it would reset its
// counters and lose the evidence.
type Health struct {
	ready   atomic.Bool
	stopped atomic.Pointer[string]

	mu       sync.Mutex
	lost     func() (uint64, error)
	beat     func() time.Time
	exports  func() error
	lastLost uint64
	lostAt   time.Time
}

// Ready says the probes are attached. lost reads the tracer's count of
// events it could not deliver; beat is when the agent's loops last ran
// (live.Monitor.Beat), nil for no check; exports, if not nil, says why
// exporting fails, nil while it works (Exporter.Failing).
func (h *Health) Ready(lost func() (uint64, error), beat func() time.Time, exports func() error) {
	h.mu.Lock()
	h.lost, h.beat, h.exports = lost, beat, exports
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

// Live returns nil while the agent is alive: starting, or running with
// loops that beat within StallAfter. Lost events and failing exports do
// not make it fail.
func (h *Health) Live() error {
	if why := h.stopped.Load(); why != nil {
		return errors.New(*why)
	}
	if !h.ready.Load() {
		return nil
	}
	h.mu.Lock()
	beat := h.beat
	h.mu.Unlock()
	if beat == nil {
		return nil
	}
	if since := time.Since(beat()); since > StallAfter {
		return fmt.Errorf("the agent's loops last ran %s ago", since.Round(time.Second))
	}
	return nil
}

// Check returns nil when ready, else why not: starting, losing events, an
// export failing, or anything that fails Live.
func (h *Health) Check() error {
	if err := h.Live(); err != nil {
		return err
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
	if h.exports != nil {
		if err := h.exports(); err != nil {
			return err
		}
	}
	return nil
}

// Bounds of the scrape endpoint, so that no client can hold the agent's
// descriptors or memory: a connection must send its request headers
// within ReadHeaderTimeout and is closed after IdleTimeout idle between
// requests. Beyond MaxConns open connections, the one idle the longest
// (or silent since it connected) is closed for each new one, so that idle
// clients cannot starve a probe; at most 4 × MaxConns are open at all
// (more wait in the kernel's accept queue, holding no descriptor).
var (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 30 * time.Second
	IdleTimeout       = 15 * time.Second
)

const (
	MaxConns       = 32
	maxHeaderBytes = 16 << 10
)

// connLimit closes the connection idle the longest when more than max
// are open.
type connLimit struct {
	max  int
	mu   sync.Mutex
	open int
	idle map[net.Conn]time.Time // new or idle, since when
}

func (l *connLimit) state(c net.Conn, s http.ConnState) {
	var evict net.Conn
	l.mu.Lock()
	switch s {
	case http.StateNew:
		l.open++
		l.idle[c] = time.Now()
		if l.open > l.max {
			evict = c // if every other one is busy
			var oldest time.Time
			for o, since := range l.idle {
				if o != c && (evict == c || since.Before(oldest)) {
					evict, oldest = o, since
				}
			}
			delete(l.idle, evict)
		}
	case http.StateIdle:
		l.idle[c] = time.Now()
	case http.StateActive:
		delete(l.idle, c)
	case http.StateClosed, http.StateHijacked:
		l.open--
		delete(l.idle, c)
	}
	l.mu.Unlock()
	if evict != nil {
		evict.Close()
	}
}

// Server serves /metrics from a Prometheus registry, /healthz and /readyz.
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
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: WriteTimeout / 2}))
	mux.HandleFunc("GET /healthz", probe(h.Live))
	mux.HandleFunc("GET /readyz", probe(h.Check))
	l := &connLimit{max: MaxConns, idle: map[net.Conn]time.Time{}}
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: ReadHeaderTimeout, ReadTimeout: ReadTimeout,
		WriteTimeout: WriteTimeout, IdleTimeout: IdleTimeout, MaxHeaderBytes: maxHeaderBytes, ConnState: l.state},
		addr: ln.Addr()}
	go s.srv.Serve(netutil.LimitListener(ln, 4*MaxConns))
	return s, nil
}

// probe answers 200 "ok" when check passes, else 503 and why.
func probe(check func() error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := check(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

// Addr is where the server listens.
func (s *Server) Addr() net.Addr { return s.addr }

// Shutdown stops the server, letting requests in flight finish until ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }
