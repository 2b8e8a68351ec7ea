package export

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func getProbe(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// TestHealthz: /healthz (liveness) and /readyz (readiness) through the
// agent's life. Issue 21: /healthz answered 503 for 30 s after any lost
// event, so the chart's liveness probe restarted the agent during the
// incidents it exists for; loss is now a readiness signal only.
func TestHealthz(t *testing.T) {
	var h Health
	srv, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), &h)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	check := func(live, ready int, body string) {
		t.Helper()
		if code, b := getProbe(t, srv.Addr().String(), "/healthz"); code != live {
			t.Errorf("/healthz: %d %q, want %d", code, b, live)
		}
		if code, b := getProbe(t, srv.Addr().String(), "/readyz"); code != ready || !strings.Contains(b, body) {
			t.Errorf("/readyz: %d %q, want %d with %q", code, b, ready, body)
		}
	}
	check(200, 503, "starting")
	var lost uint64
	var lostErr, exportErr error
	beat := time.Now()
	h.Ready(func() (uint64, error) { return lost, lostErr }, func() time.Time { return beat },
		func() error { return exportErr })
	check(200, 200, "ok")
	check(200, 200, "ok")
	lost = 3
	check(200, 503, "losing events: 3 lost")
	lostErr = errors.New("map gone")
	check(200, 503, "map gone")
	lostErr, h.lostAt = nil, time.Time{}
	exportErr = errors.New("OTLP metrics export failing for 12s: connection refused")
	check(200, 503, "connection refused")
	exportErr = nil
	check(200, 200, "ok")
	beat = time.Now().Add(-StallAfter - time.Second)
	check(503, 503, "the agent's loops last ran 31s ago")
	beat = time.Now()
	h.Stopped(errors.New("ring buffer closed"))
	check(503, 503, "tracer stopped: ring buffer closed")

	if _, err := Serve(srv.Addr().String(), prometheus.NewRegistry(), &h); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("a port in use: %v", err)
	}
}

// TestServeBounded: idle clients cannot hold the agent's descriptors.
// Issue 21: 3,000 idle keep-alive clients from loopback held 3,030
// descriptors until accept4 failed with EMFILE. Here 300 clients, half
// idle after a request, half silent: before, the agent held 300
// descriptors for them (measured); now at most MaxConns, each closed
// within the timeouts, and /healthz answers meanwhile.
func TestServeBounded(t *testing.T) {
	defer func(h, i time.Duration) { ReadHeaderTimeout, IdleTimeout = h, i }(ReadHeaderTimeout, IdleTimeout)
	ReadHeaderTimeout, IdleTimeout = 300*time.Millisecond, 300*time.Millisecond
	var h Health
	srv, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), &h)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	fds := func() int {
		d, _ := os.ReadDir("/proc/self/fd")
		return len(d)
	}
	base := fds()
	const clients = 300
	var conns []net.Conn
	for i := range clients {
		c, err := net.Dial("tcp", srv.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 0 { // a keep-alive client that goes idle after a request
			go func() {
				io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				io.Copy(io.Discard, c)
			}()
		}
		conns = append(conns, c)
	}
	time.Sleep(200 * time.Millisecond)
	held := fds() - base - clients
	t.Logf("%d clients: the server holds %d descriptors for them (limit %d)", clients, held, MaxConns)
	if held > MaxConns+2 {
		t.Errorf("%d clients: the server holds %d descriptors, more than MaxConns (%d)", clients, held, MaxConns)
	}
	start := time.Now()
	if code, _ := getProbe(t, srv.Addr().String(), "/healthz"); code != 200 {
		t.Errorf("/healthz under %d idle clients: %d", clients, code)
	}
	t.Logf("/healthz answered in %s under %d idle clients", time.Since(start).Round(time.Millisecond), clients)
}
