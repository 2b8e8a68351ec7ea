package export

import (
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
		_, base, err := Options{Protocol: proto, Limits: aggregate.DefaultLimits}.parse()
		if err != nil || base == nil || base.String() != want {
			t.Errorf("protocol %q: %v %v, want %s", proto, base, err, want)
		}
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
	if _, base, err := (Options{Limits: aggregate.DefaultLimits}).parse(); err != nil || base != nil {
		t.Errorf("with OTEL_EXPORTER_OTLP_ENDPOINT set: %v %v", base, err)
	}
}
