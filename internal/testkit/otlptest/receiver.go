// Package otlptest is an OTLP receiver for tests: it speaks the official
// protocol (the opentelemetry-proto definitions) over gRPC and over
// HTTP/protobuf, keeps what it receives, and can be stopped and restarted on
// the same ports to play a collector that goes away and comes back. It
// also runs the real OpenTelemetry Collector (StartCollector) and the
// servers around it (StartLogged) for the tests that need them.
package otlptest

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // exporters may compress
	"google.golang.org/protobuf/proto"

	collogs "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetrics "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// Receiver listens on two loopback ports, one per transport.
type Receiver struct {
	grpcAddr, httpAddr string

	mu       sync.Mutex
	metrics  []*metricspb.ResourceMetrics
	logs     []*logspb.ResourceLogs
	requests int
	delay    time.Duration
	grpcSrv  *grpc.Server
	httpSrv  *http.Server
}

// Start listens on free loopback ports; the receiver stops with the test.
func Start(t testing.TB) *Receiver {
	t.Helper()
	r := &Receiver{grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0"}
	if err := r.listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// GRPC is the gRPC endpoint as an OTLP exporter takes it.
func (r *Receiver) GRPC() string { return "http://" + r.grpcAddr }

// HTTP is the HTTP endpoint's base URL; signals are under /v1/.
func (r *Receiver) HTTP() string { return "http://" + r.httpAddr }

// SetDelay makes every export wait d before it is answered, as a slow
// collector would.
func (r *Receiver) SetDelay(d time.Duration) {
	r.mu.Lock()
	r.delay = d
	r.mu.Unlock()
}

// Stop closes both listeners and every connection: exporters see refused
// connections until Restart.
func (r *Receiver) Stop() {
	r.mu.Lock()
	g, h := r.grpcSrv, r.httpSrv
	r.grpcSrv, r.httpSrv = nil, nil
	r.mu.Unlock()
	if g != nil {
		g.Stop()
	}
	if h != nil {
		h.Close()
	}
}

// Restart listens again on the same ports.
func (r *Receiver) Restart(t testing.TB) {
	t.Helper()
	// The ports were ours a moment ago; a client socket may briefly hold
	// one, so try for a while.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := r.listen()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart receiver: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (r *Receiver) listen() error {
	gl, err := net.Listen("tcp", r.grpcAddr)
	if err != nil {
		return err
	}
	hl, err := net.Listen("tcp", r.httpAddr)
	if err != nil {
		gl.Close()
		return err
	}
	r.grpcAddr, r.httpAddr = gl.Addr().String(), hl.Addr().String()
	g := grpc.NewServer()
	colmetrics.RegisterMetricsServiceServer(g, metricsService{r: r})
	collogs.RegisterLogsServiceServer(g, logsService{r: r})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, req *http.Request) {
		serveHTTP(w, req, &colmetrics.ExportMetricsServiceRequest{}, &colmetrics.ExportMetricsServiceResponse{},
			func(m *colmetrics.ExportMetricsServiceRequest) { r.addMetrics(req.Context(), m.ResourceMetrics) })
	})
	mux.HandleFunc("POST /v1/logs", func(w http.ResponseWriter, req *http.Request) {
		serveHTTP(w, req, &collogs.ExportLogsServiceRequest{}, &collogs.ExportLogsServiceResponse{},
			func(m *collogs.ExportLogsServiceRequest) { r.addLogs(req.Context(), m.ResourceLogs) })
	})
	h := &http.Server{Handler: mux}
	r.mu.Lock()
	r.grpcSrv, r.httpSrv = g, h
	r.mu.Unlock()
	go g.Serve(gl)
	go h.Serve(hl)
	return nil
}

// serveHTTP decodes one OTLP/HTTP binary request, as the specification
// defines it: a protobuf body, answered with a protobuf response.
func serveHTTP[T proto.Message](w http.ResponseWriter, req *http.Request, msg T, resp proto.Message, add func(T)) {
	if ct := req.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, fmt.Sprintf("unsupported content type %q", ct), http.StatusUnsupportedMediaType)
		return
	}
	var body []byte
	var err error
	if req.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(req.Body); err == nil {
			body, err = io.ReadAll(zr)
		}
	} else {
		body, err = io.ReadAll(req.Body)
	}
	if err == nil {
		err = proto.Unmarshal(body, msg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	add(msg)
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

type metricsService struct {
	colmetrics.UnimplementedMetricsServiceServer
	r *Receiver
}

func (s metricsService) Export(ctx context.Context, req *colmetrics.ExportMetricsServiceRequest) (*colmetrics.ExportMetricsServiceResponse, error) {
	s.r.addMetrics(ctx, req.ResourceMetrics)
	return &colmetrics.ExportMetricsServiceResponse{}, nil
}

type logsService struct {
	collogs.UnimplementedLogsServiceServer
	r *Receiver
}

func (s logsService) Export(ctx context.Context, req *collogs.ExportLogsServiceRequest) (*collogs.ExportLogsServiceResponse, error) {
	s.r.addLogs(ctx, req.ResourceLogs)
	return &collogs.ExportLogsServiceResponse{}, nil
}

func (r *Receiver) wait(ctx context.Context) {
	r.mu.Lock()
	d := r.delay
	r.requests++
	r.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (r *Receiver) addMetrics(ctx context.Context, rm []*metricspb.ResourceMetrics) {
	r.wait(ctx)
	r.mu.Lock()
	r.metrics = append(r.metrics, rm...)
	r.mu.Unlock()
}

func (r *Receiver) addLogs(ctx context.Context, rl []*logspb.ResourceLogs) {
	r.wait(ctx)
	r.mu.Lock()
	r.logs = append(r.logs, rl...)
	r.mu.Unlock()
}

// Requests is how many export requests arrived, of either signal.
func (r *Receiver) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// Point is one data point with its attributes and its resource's, values
// turned to strings.
type Point struct {
	Resource  map[string]string
	Attrs     map[string]string
	Value     float64 // sums and gauges
	Count     uint64  // histograms
	Sum       float64 // histograms
	Min, Max  float64 // histograms
	Kind      string  // "sum", "gauge", "histogram", "exponential_histogram"
	Monotonic bool    // sums
	Unit      string
}

// Last returns the points of metric name from the latest export that
// carried it: exports are cumulative, so that is everything up to then.
func (r *Receiver) Last(name string) []Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.metrics) - 1; i >= 0; i-- {
		if pts := points(r.metrics[i], name); pts != nil {
			return pts
		}
	}
	return nil
}

// All returns the points of metric name from every export received, in
// the order they came: a Collector that splits an export by resource
// (groupbyattrs) sends one resource per pod, so Last sees only one.
func (r *Receiver) All(name string) []Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Point
	for _, rm := range r.metrics {
		out = append(out, points(rm, name)...)
	}
	return out
}

func points(rm *metricspb.ResourceMetrics, name string) []Point {
	res := attrs(rm.GetResource().GetAttributes())
	var out []Point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				out = append(out, metricPoints(m, res)...)
			}
		}
	}
	return out
}

func metricPoints(m *metricspb.Metric, res map[string]string) []Point {
	var out []Point
	number := func(kind string, mono bool, dps []*metricspb.NumberDataPoint) {
		for _, dp := range dps {
			v := dp.GetAsDouble()
			if _, ok := dp.Value.(*metricspb.NumberDataPoint_AsInt); ok {
				v = float64(dp.GetAsInt())
			}
			out = append(out, Point{Resource: res, Attrs: attrs(dp.Attributes), Value: v, Kind: kind, Monotonic: mono, Unit: m.Unit})
		}
	}
	switch d := m.Data.(type) {
	case *metricspb.Metric_Sum:
		number("sum", d.Sum.IsMonotonic, d.Sum.DataPoints)
	case *metricspb.Metric_Gauge:
		number("gauge", false, d.Gauge.DataPoints)
	case *metricspb.Metric_Histogram:
		for _, dp := range d.Histogram.DataPoints {
			out = append(out, Point{Resource: res, Attrs: attrs(dp.Attributes), Count: dp.Count, Sum: dp.GetSum(), Min: dp.GetMin(), Max: dp.GetMax(), Kind: "histogram", Unit: m.Unit})
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, dp := range d.ExponentialHistogram.DataPoints {
			out = append(out, Point{Resource: res, Attrs: attrs(dp.Attributes), Count: dp.Count, Sum: dp.GetSum(), Min: dp.GetMin(), Max: dp.GetMax(), Kind: "exponential_histogram", Unit: m.Unit})
		}
	}
	if out == nil {
		out = []Point{} // the metric was there, with no points
	}
	return out
}

// Log is one log record with its attributes and its resource's.
type Log struct {
	Resource map[string]string
	Attrs    map[string]string
	Body     string
	Severity string
	Time     time.Time
	Event    string
}

// Logs returns every log record received so far.
func (r *Receiver) Logs() []Log {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Log
	for _, rl := range r.logs {
		res := attrs(rl.GetResource().GetAttributes())
		for _, sl := range rl.ScopeLogs {
			for _, lr := range sl.LogRecords {
				out = append(out, Log{
					Resource: res, Attrs: attrs(lr.Attributes), Body: value(lr.Body),
					Severity: lr.SeverityText, Time: time.Unix(0, int64(lr.TimeUnixNano)), Event: lr.EventName,
				})
			}
		}
	}
	return out
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = value(kv.Value)
	}
	return m
}

func value(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return fmt.Sprint(x.IntValue)
	case *commonpb.AnyValue_DoubleValue:
		return fmt.Sprint(x.DoubleValue)
	case *commonpb.AnyValue_BoolValue:
		return fmt.Sprint(x.BoolValue)
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// Eventually polls cond until it holds or timeout passes.
func Eventually(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// With returns the points whose attributes include want.
func With(pts []Point, want map[string]string) []Point {
	var out []Point
	for _, p := range pts {
		if Includes(p.Attrs, want) {
			out = append(out, p)
		}
	}
	return out
}

// Includes reports whether attrs hold every key of want, with its value.
func Includes(attrs, want map[string]string) bool {
	for k, v := range want {
		if attrs[k] != v {
			return false
		}
	}
	return true
}

// One returns the only point of pts whose attributes include want, or
// fails the test.
func One(t testing.TB, pts []Point, want map[string]string) Point {
	t.Helper()
	found := With(pts, want)
	if len(found) != 1 {
		t.Fatalf("%d points with %v, want 1, in %+v", len(found), want, pts)
	}
	return found[0]
}

// Sum adds up the points' values.
func Sum(pts []Point) int {
	n := 0
	for _, p := range pts {
		n += int(p.Value)
	}
	return n
}

// Wait polls cond for up to 30 s, and fails the test if it never holds.
func Wait(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if err := Eventually(30*time.Second, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
