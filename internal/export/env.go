package export

import (
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/porttrace/porttrace/internal/sanitize"
)

// checkEndpoint refuses an OTLP base URL whose port is not a port number;
// the exporter checks the rest.
func checkEndpoint(what, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q is not a URL such as http://collector:4318", what, sanitize.Redact(s))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s %q: port %q is not a number from 1 to 65535", what, sanitize.Redact(s), p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%s %q: the port after ':' is empty", what, sanitize.Redact(s))
	}
	return nil
}

// checkEnv refuses the standard OTLP variables that are set but do not
// parse, instead of letting the SDK fall back to its defaults silently.
func checkEnv() error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if v := os.Getenv(name); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s=%q is not a URL such as http://collector:4318", name, sanitize.Redact(v))
			}
			if err := checkEndpoint(name, v); err != nil {
				return err
			}
		}
	}
	for _, name := range []string{"OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT", "OTEL_BLRP_EXPORT_TIMEOUT",
		"OTEL_BLRP_SCHEDULE_DELAY", "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT"} {
		if v := os.Getenv(name); v != "" {
			if n, err := strconv.Atoi(v); err != nil || n <= 0 {
				return fmt.Errorf("%s=%q is not a positive number of milliseconds", name, v)
			}
		}
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE", "OTEL_EXPORTER_OTLP_LOGS_INSECURE"} {
		if v := os.Getenv(name); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return fmt.Errorf("%s=%q is not true or false", name, v)
			}
		}
	}
	for _, name := range []string{"OTEL_RESOURCE_ATTRIBUTES", "OTEL_EXPORTER_OTLP_HEADERS"} {
		if err := checkPairs(name, os.Getenv(name)); err != nil {
			return err
		}
	}
	return nil
}

// checkPairs checks a list of key=value pairs separated by commas, as the
// specification writes OTEL_RESOURCE_ATTRIBUTES and the headers.
func checkPairs(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	for _, p := range strings.Split(v, ",") {
		k, _, ok := strings.Cut(p, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return fmt.Errorf("%s=%q: %q is not key=value", name, v, p)
		}
	}
	return nil
}
