package export

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestHealthz: /healthz through the agent's life: starting, healthy,
// losing events, and stopped.
func TestHealthz(t *testing.T) {
	var h Health
	srv, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), &h)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(t.Context())
	check := func(status int, body string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status || !strings.Contains(string(b), body) {
			t.Errorf("/healthz: %d %q, want %d with %q", resp.StatusCode, b, status, body)
		}
	}
	check(503, "starting")
	var lost uint64
	var lostErr error
	h.Ready(func() (uint64, error) { return lost, lostErr })
	check(200, "ok")
	check(200, "ok")
	lost = 3
	check(503, "losing events: 3 lost")
	lostErr = errors.New("map gone")
	check(503, "map gone")
	h.Stopped(errors.New("ring buffer closed"))
	check(503, "tracer stopped: ring buffer closed")

	if _, err := Serve(srv.Addr().String(), prometheus.NewRegistry(), &h); err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Errorf("a port in use: %v", err)
	}
}
