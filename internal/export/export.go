// Package export sends porttrace's figures over OTLP with the OpenTelemetry
// Go SDK: the aggregator's summary as metrics at every collection, port
// search latency as a histogram, and connect failures as log records. It
// never blocks the event reader: metrics are read from the aggregator on the
// SDK's own schedule, histogram recording only takes an in-memory lock, and
// log records are rate-limited before they reach the SDK's bounded queue.
package export

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/porttrace/porttrace/internal/cgroup"
	"github.com/porttrace/porttrace/internal/cri"
	"github.com/porttrace/porttrace/internal/sanitize"
	"github.com/porttrace/porttrace/internal/summary"
)

// DefaultInterval is the metric export period when neither the caller nor
// OTEL_METRIC_EXPORT_INTERVAL sets one. The SDK's own default, 60 s, is
// longer than the time a busy upstream takes to run out of ports.
const DefaultInterval = 10 * time.Second

// Protocols are the OTLP transports the Go SDK implements.
var Protocols = []string{"grpc", "http/protobuf"}

// Options configure an Exporter. Empty fields leave the choice to the
// standard OTEL_* variables, then to the OpenTelemetry defaults.
type Options struct {
	// Endpoint is the collector's base URL, as OTEL_EXPORTER_OTLP_ENDPOINT:
	// http://host:4317 for gRPC, http://host:4318 for HTTP (which appends
	// /v1/metrics and /v1/logs). The scheme decides TLS.
	Endpoint string
	Protocol string
	Interval time.Duration
	// Spaces is the most port spaces a summary lists (the aggregator's
	// Limits.Spaces): it bounds the series the histogram keeps as it
	// bounds every other metric's.
	Spaces int
	// Timeout bounds one export, retries included; 0 leaves it to
	// OTEL_METRIC_EXPORT_TIMEOUT and OTEL_BLRP_EXPORT_TIMEOUT, else 30 s.
	Timeout time.Duration
	Version string
	// Warn gets a line when an export starts failing and when it recovers.
	Warn io.Writer
	// Prometheus, if not nil, also gets every instrument, for a scrape
	// endpoint (see Serve). NoOTLP leaves Prometheus as the only output.
	Prometheus *prometheus.Registry
	NoOTLP     bool
	// Cardinality bounds the metrics' series; the zero value is
	// DefaultCardinality.
	Cardinality Cardinality
	// Names, if not nil, gives the Kubernetes names of a container by its
	// full id, without waiting (cri.Cache.Lookup).
	Names func(containerID string) (cri.Names, bool)
	// Where tells where the processes of events run; nil for a resolver
	// of the exporter's own.
	Where *cgroup.Resolver
}

// Exporter owns the SDK's meter and logger providers.
type Exporter struct {
	mp      *sdkmetric.MeterProvider
	lp      *sdklog.LoggerProvider
	health  *health
	latency *latencyRecorder
	logs    *failureLogs
	desc    string
	pods    *netnsPods
	exes    *exeNames
}

// New starts exporting. summary is called at every metric collection, from
// the SDK's goroutine, and must be safe for that. A collector that cannot
// be reached is not an error: the exporters retry and count what they drop.
func New(ctx context.Context, o Options, summary func() *summary.Summary) (*Exporter, error) {
	proto, base, err := o.parse()
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("porttrace"), semconv.ServiceVersion(o.Version)),
		resource.WithHost(), resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME win
	)
	h := newHealth(o.Warn)
	if errors.Is(err, resource.ErrPartialResource) {
		// As the specification asks: keep what could be read, say what not.
		fmt.Fprintf(h.warn, "porttrace: OTLP resource: %v (ignored)\n", err)
	} else if err != nil {
		return nil, fmt.Errorf("OpenTelemetry resource: %w", err)
	}
	otel.SetErrorHandler(h)
	x := &Exporter{health: h}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
		sdkmetric.WithView(sdkmetric.NewView(
			sdkmetric.Instrument{Name: latencyName},
			sdkmetric.Stream{Aggregation: sdkmetric.AggregationBase2ExponentialHistogram{MaxSize: 160, MaxScale: 20}},
		))}
	lopts := []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
	var outputs []string
	if !o.NoOTLP {
		mexp, lexp, err := exporters(ctx, proto, base)
		if err != nil {
			return nil, err
		}
		logTimeout := cmp.Or(o.Timeout, envMillis("OTEL_BLRP_EXPORT_TIMEOUT"), 30*time.Second)
		lopts = append(lopts, sdklog.WithProcessor(
			sdklog.NewBatchProcessor(&logExporter{lexp, h},
				// The queue's size is set, not left to OTEL_BLRP_MAX_QUEUE_SIZE:
				// with failureLogs' rate limit it cannot overflow, which is
				// the only loss the SDK would not let us count.
				sdklog.WithMaxQueueSize(queueSize(logTimeout)), sdklog.WithExportTimeout(logTimeout))))
		mopts = append(mopts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(&metricExporter{mexp, h}, readerOptions(o)...)))
		outputs = append(outputs, describe(proto, base))
	}
	if o.Prometheus != nil {
		r, err := prometheusReader(o.Prometheus)
		if err != nil {
			return nil, err
		}
		// The Prometheus reader takes no per-kind limit: the provider's
		// applies to it, the histogram's bound (readerOptions).
		mopts = append(mopts, sdkmetric.WithReader(r), sdkmetric.WithCardinalityLimit(histogramLimit(o.Spaces)))
		outputs = append(outputs, "Prometheus metrics")
	}
	if len(outputs) == 0 {
		return nil, errors.New("export: neither OTLP nor Prometheus")
	}
	x.desc = strings.Join(outputs, " and ")
	x.lp = sdklog.NewLoggerProvider(lopts...)
	if o.Where == nil {
		o.Where = cgroup.NewResolver()
	}
	x.pods, x.exes = newNetnsPods(o.Names, o.Where), newExeNames()
	x.logs = &failureLogs{logger: x.lp.Logger(scope), pods: x.pods, exes: x.exes}
	x.mp = sdkmetric.NewMeterProvider(mopts...)
	if x.latency, err = register(x.mp.Meter(scope), o.Cardinality.orDefault(), summary, x); err != nil {
		return nil, errors.Join(err, x.Shutdown(ctx))
	}
	return x, nil
}

const scope = "github.com/porttrace/porttrace"

// queueSize holds the records that LogRate lets through while one export
// is outstanding (at most timeout, retries included) twice over: the batch
// processor exports one batch at a time.
func queueSize(timeout time.Duration) int {
	return max(2048, 2*LogRate*int(timeout/time.Second+1))
}

func readerOptions(o Options) []sdkmetric.PeriodicReaderOption {
	opts := []sdkmetric.PeriodicReaderOption{
		// The observable instruments are bounded by the aggregator's
		// summary, rows × errnos: no limit of the SDK's (2,000 by default)
		// must fold some of them away. The histogram is recorded as events
		// come and keeps a series for every space it has seen, so it gets
		// a bound of its own.
		sdkmetric.WithCardinalityLimitSelector(func(k sdkmetric.InstrumentKind) (int, bool) {
			if k == sdkmetric.InstrumentKindHistogram {
				return histogramLimit(o.Spaces), false
			}
			return 0, false
		}),
	}
	if o.Timeout > 0 {
		opts = append(opts, sdkmetric.WithTimeout(o.Timeout))
	}
	if o.Interval > 0 {
		opts = append(opts, sdkmetric.WithInterval(o.Interval))
	} else if os.Getenv("OTEL_METRIC_EXPORT_INTERVAL") == "" {
		opts = append(opts, sdkmetric.WithInterval(DefaultInterval))
	}
	return opts
}

// histogramLimit bounds the latency histogram's series.
func histogramLimit(spaces int) int { return 4*spaces + 1 }

// Check reports options that New would refuse, and standard OTEL_*
// variables that are set but do not parse (which the SDK would replace
// with its defaults silently), so that a command can refuse them before
// it attaches probes. Errors name Endpoint as --otlp-endpoint.
func (o Options) Check() error {
	if err := checkEndpoint("--otlp-endpoint", o.Endpoint); err != nil {
		return err
	}
	if err := checkEnv(); err != nil {
		return err
	}
	_, _, err := o.parse()
	return err
}

func (o Options) parse() (string, *url.URL, error) {
	if o.Interval < 0 {
		return "", nil, errors.New("--export-interval must not be negative (0 for the default)")
	}
	if o.Spaces < 1 {
		return "", nil, errors.New("export needs the aggregator's limit on port spaces")
	}
	proto, err := protocol(o.Protocol)
	if err != nil {
		return "", nil, err
	}
	base, err := endpoint(o.Endpoint)
	if base == nil && err == nil && !endpointInEnv() {
		base = defaultEndpoint(proto)
	}
	if err == nil {
		err = checkTLS(base)
	}
	return proto, base, err
}

// checkTLS refuses what the SDK would only warn about, or do silently: a
// certificate or key named in OTEL_EXPORTER_OTLP_* that cannot be read or
// parsed (the SDK logs it and exports without), and an https endpoint with
// OTEL_EXPORTER_OTLP_INSECURE=true (the SDK then speaks plain HTTP to it).
// base is the endpoint given as an option, nil if the environment names it.
func checkTLS(base *url.URL) error {
	https := base != nil && base.Scheme == "https"
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if u, err := url.Parse(os.Getenv(v)); err == nil && u.Scheme == "https" {
			https = true
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE", "OTEL_EXPORTER_OTLP_LOGS_INSECURE"} {
		if insecure, _ := strconv.ParseBool(os.Getenv(v)); insecure && https {
			return fmt.Errorf("%s=true with an https:// OTLP endpoint: porttrace does not downgrade TLS to plain HTTP; unset it, or name an http:// endpoint", v)
		}
	}
	for _, sig := range []string{"", "METRICS_", "LOGS_"} {
		ca := "OTEL_EXPORTER_OTLP_" + sig + "CERTIFICATE"
		if path := os.Getenv(ca); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("%s: %w", ca, err)
			}
			if !x509.NewCertPool().AppendCertsFromPEM(b) {
				return fmt.Errorf("%s=%s holds no PEM certificate", ca, path)
			}
		}
		cert, key := "OTEL_EXPORTER_OTLP_"+sig+"CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_"+sig+"CLIENT_KEY"
		cp, kp := os.Getenv(cert), os.Getenv(key)
		if cp == "" && kp == "" {
			continue
		}
		if cp == "" || kp == "" {
			return fmt.Errorf("%s and %s go together: set both, or neither", cert, key)
		}
		if _, err := tls.LoadX509KeyPair(cp, kp); err != nil {
			return fmt.Errorf("%s and %s: %w", cert, key, err)
		}
	}
	return nil
}

// defaultEndpoint is the OTLP specification's default: plain HTTP to
// localhost, 4318 for HTTP and 4317 for gRPC. (The Go SDK's own default
// would be TLS.)
func defaultEndpoint(proto string) *url.URL {
	if proto == "grpc" {
		return &url.URL{Scheme: "http", Host: "localhost:4317"}
	}
	return &url.URL{Scheme: "http", Host: "localhost:4318"}
}

// endpointInEnv reports whether a standard variable names the endpoint,
// which the SDK then reads itself.
func endpointInEnv() bool {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if os.Getenv(v) != "" {
			return true
		}
	}
	return false
}

// envMillis reads a duration in milliseconds, as the OTEL_* variables
// give them; 0 if unset or invalid.
func envMillis(name string) time.Duration {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil || n <= 0 {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}

// protocol is the transport: the option, else the standard variables, else
// http/protobuf as the specification says.
func protocol(p string) (string, error) {
	switch p = cmp.Or(p, os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "http/protobuf"); p {
	case "grpc", "http/protobuf":
		return p, nil
	case "http/json":
		return "", fmt.Errorf("OTLP protocol http/json is not implemented by the OpenTelemetry Go SDK: use grpc or http/protobuf")
	}
	return "", fmt.Errorf("unknown OTLP protocol %q: use grpc or http/protobuf", p)
}

// endpoint checks a base URL; "" leaves it to the environment.
func endpoint(s string) (*url.URL, error) {
	if s == "" {
		return nil, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q: want a URL such as http://collector:4318 (https:// for TLS)", sanitize.Redact(s))
	}
	return u, nil
}

// signalURL is base with a signal's path appended, as the specification
// derives OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT from OTEL_EXPORTER_OTLP_ENDPOINT.
func signalURL(base *url.URL, signal string) string {
	u := *base
	u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/" + signal
	return u.String()
}

func exporters(ctx context.Context, proto string, base *url.URL) (sdkmetric.Exporter, sdklog.Exporter, error) {
	var m sdkmetric.Exporter
	var l sdklog.Exporter
	var err, err2 error
	if proto == "grpc" {
		// gRPC backs off up to 2 minutes between reconnections by default;
		// a collector that comes back should get figures sooner.
		reconnect := grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second}})
		mo := []otlpmetricgrpc.Option{otlpmetricgrpc.WithDialOption(reconnect)}
		lo := []otlploggrpc.Option{otlploggrpc.WithDialOption(reconnect)}
		if base != nil {
			mo = append(mo, otlpmetricgrpc.WithEndpointURL(base.String()))
			lo = append(lo, otlploggrpc.WithEndpointURL(base.String()))
		}
		m, err = otlpmetricgrpc.New(ctx, mo...)
		l, err2 = otlploggrpc.New(ctx, lo...)
	} else {
		var mo []otlpmetrichttp.Option
		var lo []otlploghttp.Option
		if base != nil {
			mo = append(mo, otlpmetrichttp.WithEndpointURL(signalURL(base, "metrics")))
			lo = append(lo, otlploghttp.WithEndpointURL(signalURL(base, "logs")))
		}
		m, err = otlpmetrichttp.New(ctx, mo...)
		l, err2 = otlploghttp.New(ctx, lo...)
	}
	if err = errors.Join(err, err2); err != nil {
		return nil, nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	return m, l, nil
}

func describe(proto string, base *url.URL) string {
	where := "the endpoint in OTEL_EXPORTER_OTLP_* (or the default)"
	if base != nil {
		where = base.Redacted()
	}
	return fmt.Sprintf("OTLP %s to %s", proto, where)
}

// String says where the figures go.
func (x *Exporter) String() string { return x.desc }

// Counts are what exporting has cost so far: failed exports (metrics and
// logs), log records dropped with a failed export, and failure records
// left out by the rate limit (counted on the next record sent).
type Counts struct {
	FailedExports, DroppedRecords, Suppressed uint64
}

// Counts returns the counts so far; safe to call at any time.
func (x *Exporter) Counts() Counts {
	c := Counts{
		FailedExports:  x.health.metricFailures.Load() + x.health.logFailures.Load(),
		DroppedRecords: x.health.logsDropped.Load(),
	}
	if x.logs != nil {
		c.Suppressed = x.logs.suppressedTotal.Load()
	}
	return c
}

// Failing says why exporting fails, nil while the last export of each
// signal got through: readiness (Health.Ready).
func (x *Exporter) Failing() error { return x.health.failingNow() }

// Shutdown exports what is left and stops. A collector that is down is
// given until ctx ends, half for the log records, then half for the last
// metrics, which carry the count of records that could not be sent.
func (x *Exporter) Shutdown(ctx context.Context) error {
	logs := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		logs, cancel = context.WithDeadline(ctx, time.Now().Add(time.Until(deadline)/2))
		defer cancel()
	}
	errLogs := x.lp.Shutdown(logs)
	return errors.Join(errLogs, x.mp.Shutdown(ctx))
}
