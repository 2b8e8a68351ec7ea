package export

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/porttrace/porttrace/internal/aggregate"
)

// TestDefaultEndpoint: with no endpoint given anywhere, figures go where the
// OTLP specification says, in plain HTTP; a variable leaves it to the SDK.
func TestDefaultEndpoint(t *testing.T) {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		t.Setenv(v, "")
	}
	for proto, want := range map[string]string{"": "http://localhost:4318", "http/protobuf": "http://localhost:4318", "grpc": "http://localhost:4317"} {
		_, base, err := Options{Protocol: proto, Spaces: aggregate.DefaultLimits.Spaces}.parse()
		if err != nil || base == nil || base.String() != want {
			t.Errorf("protocol %q: %v %v, want %s", proto, base, err, want)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	if _, base, err := (Options{Spaces: aggregate.DefaultLimits.Spaces}).parse(); err != nil || base != nil {
		t.Errorf("with OTEL_EXPORTER_OTLP_ENDPOINT set: %v %v", base, err)
	}
}

// TestTLSChecked: issue 21 found that a certificate the SDK cannot read or
// parse was only a warning, the agent running on without it, and that
// OTEL_EXPORTER_OTLP_INSECURE=true sent an https:// endpoint's figures in
// plain HTTP without a word. Both are refused before anything attaches.
func TestTLSChecked(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o600)
	clear := func() {
		for _, sig := range []string{"", "METRICS_", "LOGS_"} {
			for _, v := range []string{"ENDPOINT", "INSECURE", "CERTIFICATE", "CLIENT_CERTIFICATE", "CLIENT_KEY"} {
				t.Setenv("OTEL_EXPORTER_OTLP_"+sig+v, "")
			}
		}
	}
	for _, c := range []struct {
		endpoint string
		env      map[string]string
		want     string
	}{
		{"", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318", "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "does not downgrade TLS"},
		{"", map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "https://collector:4318/v1/metrics", "OTEL_EXPORTER_OTLP_METRICS_INSECURE": "1"}, "does not downgrade TLS"},
		{"https://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, "does not downgrade TLS"},
		{"http://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": filepath.Join(dir, "missing.pem")}, "no such file"},
		{"https://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_CERTIFICATE": dir}, "is a directory"},
		{"https://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": garbage}, "holds no PEM certificate"},
		{"https://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": garbage, "OTEL_EXPORTER_OTLP_CLIENT_KEY": garbage}, "CLIENT_KEY"},
		{"https://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": garbage}, "go together"},
		{"https://collector:4318", nil, ""},
		{"http://collector:4318", map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "true"}, ""},
	} {
		clear()
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		err := Options{Endpoint: c.endpoint, Spaces: aggregate.DefaultLimits.Spaces}.Check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s %v: %v, want %q", c.endpoint, c.env, err, c.want)
		}
	}
}

// TestEndpointRedacted: a collector's credentials never reach the
// terminal (issue 21: record printed http://user:password@… on stderr).
func TestEndpointRedacted(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	proto, base, err := Options{Endpoint: "http://user:password@collector:4318", Spaces: aggregate.DefaultLimits.Spaces}.parse()
	if err != nil {
		t.Fatal(err)
	}
	if d := describe(proto, base); strings.Contains(d, "password") {
		t.Errorf("describe: %s", d)
	}
	if _, err := endpoint("ftp://user:password@collector"); err == nil || strings.Contains(err.Error(), "password") {
		t.Errorf("endpoint error: %v", err)
	}
}
