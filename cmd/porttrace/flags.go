package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// Bounds of the size flags. A ring buffer below a page cannot be mapped and
// above 1 GiB pins more memory than any incident needs; a capture smaller
// than 1 MiB holds its header and a few blocks at most.
const (
	minRingSize    = 4 << 10
	maxRingSize    = 1 << 30
	minCaptureSize = 1 << 20
	maxCaptureSize = 1 << 50
)

// parseSize reads a size as people type it, with go-humanize: 512k, 8M and
// 8MB are decimal (8,000,000 bytes), 8MiB binary; a bare number is bytes.
// It refuses what does not parse or lies outside [lo, hi], naming both.
func parseSize(flag, s string, lo, hi uint64) (uint64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || strings.HasPrefix(strings.TrimSpace(s), "-") {
		return 0, fmt.Errorf("%s %q is not a size: write it like 512KiB, 8MiB or 100MB (between %s and %s)",
			flag, s, humanize.IBytes(lo), humanize.IBytes(hi))
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s %s is %s: it must be between %s and %s",
			flag, s, humanize.IBytes(n), humanize.IBytes(lo), humanize.IBytes(hi))
	}
	return n, nil
}

// commLen is the kernel's TASK_COMM_LEN less its NUL: a longer --comm could
// never match a task name.
const commLen = 15

func checkComm(comm string) error {
	if len(comm) > commLen {
		return fmt.Errorf("--comm %q is %d bytes long: the kernel keeps at most %d bytes of a task name (%q), so it could never match",
			comm, len(comm), commLen, comm[:commLen])
	}
	return nil
}

// checkDuration refuses a negative duration, and zero when zero means
// nothing sensible for that flag.
func checkDuration(flag string, d time.Duration, zeroOK bool) error {
	switch {
	case d < 0:
		return fmt.Errorf("%s %s is negative: give a duration such as 30s or 5m", flag, d)
	case d == 0 && !zeroOK:
		return fmt.Errorf("%s must be more than 0", flag)
	}
	return nil
}

// checkEndpoint refuses an OTLP base URL whose port is not a port number;
// the exporter checks the rest.
func checkEndpoint(what, s string) error {
	if s == "" {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q is not a URL such as http://collector:4318", what, s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%s %q: port %q is not a number from 1 to 65535", what, s, p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("%s %q: the port after ':' is empty", what, s)
	}
	return nil
}

// checkOTELEnv refuses the standard OTLP variables that are set but do not
// parse, instead of letting the SDK fall back to its defaults silently.
func checkOTELEnv() error {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		if v := os.Getenv(name); v != "" {
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return fmt.Errorf("%s=%q is not a URL such as http://collector:4318", name, v)
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

// checkOutput makes sure a capture can be written at path before any probe
// attaches: its directory exists and takes a new file, and path is not a
// directory. An existing file is left alone until recording starts.
func checkOutput(path string) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return fmt.Errorf("-o %s is a directory: name a file in it", path)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".porttrace-check-*")
	if err != nil {
		return fmt.Errorf("-o %s: cannot create a file there: %w", path, unwrapPath(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// unwrapPath drops the temporary name from an error, keeping its cause.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
