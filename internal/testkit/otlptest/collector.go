package otlptest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// CollectorConfig is an OpenTelemetry Collector configuration as a YAML
// document: maps of maps, as sigs.k8s.io/yaml reads it.
type CollectorConfig map[string]any

// Get is the map at keys, inside maps; it panics where there is none, as
// a test's setup should when the shipped file changed shape.
func (c CollectorConfig) Get(keys ...string) map[string]any {
	var m any = map[string]any(c)
	for _, k := range keys {
		m = m.(map[string]any)[k]
	}
	return m.(map[string]any)
}

// ReadCollectorConfig reads the Collector configuration at path (the
// shipped deploy/collector/otel-collector.yaml), changed by edit, with the
// Collector's own telemetry off, as YAML.
func ReadCollectorConfig(t testing.TB, path string, edit func(CollectorConfig)) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c CollectorConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	edit(c)
	c.Get("service")["telemetry"] = map[string]any{"metrics": map[string]any{"level": "none"}}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// StartCollector runs the Collector binary otelcol with config (written,
// with its log, in dir, neither readable by others) and env added to its
// environment, and waits up to 30 s until it listens on addr. It stops
// with the test, and a failed test logs what it logged.
func StartCollector(t testing.TB, otelcol, dir string, config []byte, env []string, addr string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf, logPath := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "log")
	if err := os.WriteFile(conf, config, 0o600); err != nil {
		t.Fatal(err)
	}
	col := exec.Command(otelcol, "--config", conf)
	col.Env = append(os.Environ(), env...)
	StartLogged(t, col, logPath, "collector")
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("collector config:\n%s", config)
		}
	})
	if err := Eventually(30*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}); err != nil {
		t.Fatalf("the Collector never listened on %s", addr)
	}
}

// StartLogged starts cmd, a server a test needs (a Collector,
// Prometheus), with its output in logPath, which others cannot read. It
// stops with the test, and a failed test logs that output as what's log.
func StartLogged(t testing.TB, cmd *exec.Cmd, logPath, what string) {
	t.Helper()
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s log:\n%s", what, b)
		}
	})
}
