package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/porttrace/porttrace/internal/testkit/churn"
	"github.com/porttrace/porttrace/internal/testkit/otlptest"
	"github.com/porttrace/porttrace/internal/testkit/testnet"
)

// TestAgentPrometheus: Prometheus from Debian scrapes `porttrace agent
// --metrics-addr` every second while clients exhaust a 20-port space; its
// HTTP API must give the clients' EADDRNOTAVAIL count, and the README's
// alert rules, fed with the series Prometheus stored, must fire
// PortsExhausted for that space and nothing for lost events.
func TestAgentPrometheus(t *testing.T) {
	testnet.RequireRoot(t)
	promBin := testnet.RequireTool(t, "prometheus")
	promtool := testnet.RequireTool(t, "promtool")
	ns := testnet.New(t, 40000, 40019)
	dst := ns.Listen(t, "127.0.0.1:8080", 20*time.Millisecond)
	// Room for a thousand spaces of their own: other tests' exhausted
	// spaces, which the agent sees too, must not fold this one into its
	// namespace's "other" series (TestCollectorPipeline).
	agent := startAgent(t, nil, "--metrics-addr", "127.0.0.1:0", "--metric-spaces", "1000")
	addr := agent.metricsAddr(t)
	if !regexp.MustCompile(`(?m)^porttrace: exporting Prometheus metrics$`).MatchString(agent.stderr()) {
		t.Errorf("OTLP is on with --metrics-addr alone:\n%s", agent.stderr())
	}
	checkHealthz(t, addr, http.StatusOK)
	prom := startPrometheus(t, promBin, addr)

	// The failure series appears with the first failures; a second round
	// makes it rise under Prometheus's eyes, as increase() needs.
	res := ns.StartClient(t, churn.Config{Target: dst, Count: 30, Close: churn.CloseFin}).Wait(t)
	failed := res.Failures[testnet.EADDRNOTAVAIL]
	query := fmt.Sprintf(`porttrace_connect_failures_total{porttrace_netns="%d",error_type="EADDRNOTAVAIL",server_port="8080"}`, ns.Inode)
	prom.waitValue(t, query, failed)
	res2 := ns.StartClient(t, churn.Config{Target: dst, Count: 10, Close: churn.CloseFin}).Wait(t)
	if res.Connected != 20 || failed != 10 || res2.Failures[testnet.EADDRNOTAVAIL] != 10 {
		t.Fatalf("setup: clients %+v then %+v; want 20 connected and 10 then 10 EADDRNOTAVAIL", res, res2)
	}
	failed += res2.Failures[testnet.EADDRNOTAVAIL]
	prom.waitValue(t, query, failed)
	time.Sleep(2 * time.Second) // a few more samples at the top
	t.Logf("Prometheus: %s = %d, as the clients saw", query, failed)

	for q, want := range map[string]float64{
		fmt.Sprintf(`porttrace_ports_usable{porttrace_netns="%d"}`, ns.Inode):                      20,
		fmt.Sprintf(`porttrace_ports_utilization_ratio{porttrace_netns="%d"}`, ns.Inode):           1,
		fmt.Sprintf(`porttrace_connect_attempts_total{porttrace_netns="%d"}`, ns.Inode):            40,
		fmt.Sprintf(`porttrace_port_alloc_duration_seconds_count{porttrace_netns="%d"}`, ns.Inode): 40,
		`porttrace_events_lost_total`: 0,
	} {
		if got := prom.query(t, q); len(got) != 1 || got[0].value != want {
			t.Errorf("%s = %+v, want one series of %v", q, got, want)
		}
	}
	scrape := get(t, "http://"+addr+"/metrics", http.StatusOK)
	for _, want := range []string{"# HELP porttrace_connect_failures_total Failed connect()", "# TYPE porttrace_ports_utilization_ratio gauge", "target_info{"} {
		if !strings.Contains(scrape, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(scrape, "trace_id") {
		t.Error("/metrics carries exemplars")
	}
	checkAlerts(t, promtool, prom, ns.Inode)
	checkHealthz(t, addr, http.StatusOK)
	agent.stop(t)
}

// metricsAddr is where the agent says it serves /metrics.
func (a *agentRun) metricsAddr(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`serving /metrics, /healthz and /readyz on http://(\S+)`).FindStringSubmatch(a.stderr())
	if m == nil {
		t.Fatalf("the agent does not say where it serves /metrics:\n%s", a.stderr())
	}
	return m[1]
}

func get(t *testing.T, u string, status int) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: %s %s, want %d", u, resp.Status, b, status)
	}
	return string(b)
}

func checkHealthz(t *testing.T, addr string, status int) {
	t.Helper()
	get(t, "http://"+addr+"/healthz", status)
}

// promServer is a Prometheus started for one test, on loopback.
type promServer struct{ url string }

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startPrometheus runs Prometheus scraping target every second; extra
// flags are added (the remote-write receiver, for the Collector test).
func startPrometheus(t *testing.T, bin, target string, extra ...string) *promServer {
	t.Helper()
	dir := t.TempDir()
	cfg := "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
	if target != "" {
		cfg += fmt.Sprintf("scrape_configs:\n- job_name: porttrace\n  static_configs: [{targets: ['%s']}]\n", target)
	}
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	cmd := exec.Command(bin, append([]string{"--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", listen}, extra...)...)
	otlptest.StartLogged(t, cmd, filepath.Join(dir, "log"), "prometheus")
	p := &promServer{url: "http://" + listen}
	if err := otlptest.Eventually(30*time.Second, func() bool {
		resp, err := http.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}); err != nil {
		t.Fatal("Prometheus never became ready")
	}
	return p
}

type promSample struct {
	labels map[string]string
	value  float64
	values [][2]float64 // query_range: (time, value)
}

// api calls one of Prometheus's query endpoints.
func (p *promServer) api(t *testing.T, path string, params url.Values) []promSample {
	t.Helper()
	var body struct {
		Status string
		Error  string
		Data   struct {
			Result []struct {
				Metric map[string]string
				Value  []any
				Values [][]any
			}
		}
	}
	if err := json.Unmarshal([]byte(get(t, p.url+path+"?"+params.Encode(), http.StatusOK)), &body); err != nil || body.Status != "success" {
		t.Fatalf("%s %v: %v %s", path, params, err, body.Error)
	}
	var out []promSample
	num := func(v any) float64 { f, _ := strconv.ParseFloat(fmt.Sprint(v), 64); return f }
	for _, r := range body.Data.Result {
		s := promSample{labels: r.Metric}
		if len(r.Value) == 2 {
			s.value = num(r.Value[1])
		}
		for _, v := range r.Values {
			s.values = append(s.values, [2]float64{num(v[0]), num(v[1])})
		}
		out = append(out, s)
	}
	return out
}

func (p *promServer) query(t *testing.T, q string) []promSample {
	t.Helper()
	return p.api(t, "/api/v1/query", url.Values{"query": {q}})
}

func (p *promServer) waitValue(t *testing.T, q string, want int) {
	t.Helper()
	var got []promSample
	if err := otlptest.Eventually(30*time.Second, func() bool {
		got = p.query(t, q)
		return len(got) == 1 && got[0].value == float64(want)
	}); err != nil {
		t.Fatalf("Prometheus: %s = %+v, want %d", q, got, want)
	}
}

// readmeRules is the alert rules block of docs/metrics.md, the one place
// users copy them from.
func readmeRules(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(groups:\n- name: porttrace\n.*?)```").FindSubmatch(b)
	if m == nil {
		t.Fatal("docs/metrics.md has no porttrace alert rules")
	}
	return string(m[1])
}

// checkAlerts runs `promtool test rules` on the README's rules with the
// failure and lost-event series Prometheus stored during the run.
func checkAlerts(t *testing.T, promtool string, p *promServer, inode uint32) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(readmeRules(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	end := time.Now()
	rng := url.Values{"start": {fmt.Sprint(end.Add(-time.Minute).Unix())}, "end": {fmt.Sprint(end.Unix())}, "step": {"1"}}
	var series []string
	var failing map[string]string
	samples := 0
	for _, q := range []string{fmt.Sprintf(`porttrace_connect_failures_total{porttrace_netns="%d"}`, inode), "porttrace_events_lost_total"} {
		rng.Set("query", q)
		got := p.api(t, "/api/v1/query_range", rng)
		if len(got) != 1 {
			t.Fatalf("%s: %d series, want 1", q, len(got))
		}
		s := got[0]
		if strings.HasPrefix(q, "porttrace_connect") {
			failing = s.labels
		}
		vals := make([]string, len(s.values))
		for i, v := range s.values {
			vals[i] = strconv.FormatFloat(v[1], 'f', -1, 64)
		}
		samples = max(samples, len(vals))
		series = append(series, fmt.Sprintf("      - series: '%s'\n        values: '%s'", promSeries(s.labels), strings.Join(vals, " ")))
	}
	var exp []string
	for _, k := range sortedKeys(failing) {
		if k != "__name__" {
			exp = append(exp, fmt.Sprintf("              %s: %q", k, failing[k]))
		}
	}
	at := fmt.Sprintf("%ds", samples-1)
	test := fmt.Sprintf(`rule_files: [rules.yml]
evaluation_interval: 1s
tests:
  - interval: 1s
    input_series:
%s
    alert_rule_test:
      - eval_time: %s
        alertname: PortsExhausted
        exp_alerts:
          - exp_labels:
              alertname: PortsExhausted
%s
      - eval_time: %s
        alertname: PorttraceLosingEvents
        exp_alerts: []
`, strings.Join(series, "\n"), at, strings.Join(exp, "\n"), at)
	if err := os.WriteFile(filepath.Join(dir, "test.yml"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "test", "rules", filepath.Join(dir, "test.yml")).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s\n%s", err, out, test)
	}
	t.Logf("promtool test rules: %s", strings.TrimSpace(string(out)))
}

func promSeries(l map[string]string) string {
	var kv []string
	for _, k := range sortedKeys(l) {
		if k != "__name__" {
			kv = append(kv, fmt.Sprintf("%s=%q", k, l[k]))
		}
	}
	return l["__name__"] + "{" + strings.Join(kv, ",") + "}"
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestAgentPrometheusCardinality: a client in a private namespace makes
// one refused connect() to each of 200 destinations, from a thread whose
// comm is not its executable's name. By default the agent's /metrics, as
// Prometheus from Debian stores it, has series of their own for at most
// 2×20 of those spaces, the rest of the namespace in one "other" series,
// with counts adding up to the client's 200; the process series carry the
// executable's name and no pid, and the latency histogram has classic
// buckets on a text scrape. A second agent asked for every space
// (--metric-spaces 1000) and pids shows what that costs.
func TestAgentPrometheusCardinality(t *testing.T) {
	testnet.RequireRoot(t)
	promBin := testnet.RequireTool(t, "prometheus")
	ns := testnet.New(t, 40000, 40999)
	bounded := startAgent(t, nil, "--metrics-addr", "127.0.0.1:0")
	all := startAgent(t, nil, "--metrics-addr", "127.0.0.1:0", "--metric-spaces", "1000", "--metric-attributes", "process.pid")
	prom := startPrometheus(t, promBin, bounded.metricsAddr(t))
	dst := netip.MustParseAddrPort("127.0.0.1:9000") // nothing listens
	client := ns.StartClient(t, churn.Config{Target: dst, Spaces: 200, Count: 200, Close: churn.CloseReset, ThreadName: "conn"})
	res := client.Wait(t)
	if res.Failures[churn.ErrName(syscall.ECONNREFUSED)] != 200 {
		t.Fatalf("setup: client %+v, want 200 ECONNREFUSED", res)
	}
	netns := fmt.Sprintf(`porttrace_netns="%d"`, ns.Inode)
	prom.waitValue(t, fmt.Sprintf(`sum(porttrace_connect_failures_total{%s,error_type="ECONNREFUSED"})`, netns), 200)
	time.Sleep(2 * time.Second)
	for q, want := range map[string]float64{
		fmt.Sprintf(`sum(porttrace_connect_attempts_total{%s})`, netns):                                     200,
		fmt.Sprintf(`count(porttrace_connect_attempts_total{%s,porttrace_port_space_kind="other"})`, netns): 1,
	} {
		if got := prom.query(t, q); len(got) != 1 || got[0].value != want {
			t.Errorf("%s = %+v, want %v", q, got, want)
		}
	}
	series := prom.query(t, fmt.Sprintf(`count({%s})`, netns))
	// Each space: 7 instruments and the histogram's 12 lines.
	if len(series) != 1 || series[0].value > (2*20+1)*19 {
		t.Errorf("%+v series name the namespace, want at most 41 spaces' worth", series)
	}
	own := prom.query(t, fmt.Sprintf(`count(porttrace_connect_attempts_total{%s,porttrace_port_space_kind="connect"})`, netns))
	if len(own) != 1 || own[0].value > 40 {
		t.Errorf("%+v spaces have series of their own, want at most 40", own)
	}

	self, _ := os.Executable()
	exe := filepath.Base(self)
	// Other tests' clients on this machine share the executable's name:
	// by default they are one series.
	procs := prom.query(t, `porttrace_process_connect_attempts_total{process_executable_name="`+exe+`"}`)
	if len(procs) != 1 || procs[0].value < 200 || procs[0].labels["process_pid"] != "" {
		t.Errorf("process series of %s: %+v, want one of 200 or more without a pid", exe, procs)
	}
	if got := prom.query(t, `porttrace_process_connect_attempts_total{process_executable_name=~"conn-[0-9]+"}`); len(got) != 0 {
		t.Errorf("process series named by the thread's comm: %+v", got)
	}

	scrape := get(t, "http://"+bounded.metricsAddr(t)+"/metrics", http.StatusOK)
	if !regexp.MustCompile(`porttrace_port_alloc_duration_seconds_bucket\{[^}]*le="0\.0009765625"`).MatchString(scrape) {
		t.Error("the text scrape has no classic bucket at 2^-10 s for the latency histogram")
	}
	lines := func(text string) int {
		n := 0
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, netns) && !strings.HasPrefix(l, "#") {
				n++
			}
		}
		return n
	}
	var before int
	otlptest.Eventually(20*time.Second, func() bool {
		before = lines(get(t, "http://"+all.metricsAddr(t)+"/metrics", http.StatusOK))
		return before >= 200*4
	})
	pid := fmt.Sprintf(`process_pid="%d"`, client.Cmd.Process.Pid)
	var proc string
	for _, l := range strings.Split(get(t, "http://"+all.metricsAddr(t)+"/metrics", http.StatusOK), "\n") {
		if strings.HasPrefix(l, "porttrace_process_connect_attempts_total{") && strings.Contains(l, pid) {
			proc = l
		}
	}
	if !strings.Contains(proc, `process_executable_name="`+exe+`"`) || !strings.HasSuffix(proc, " 200") {
		t.Errorf("with process.pid, the client's series is %q, want %s named %s, of 200", proc, pid, exe)
	}
	after := lines(scrape)
	t.Logf("series naming the namespace for 200 refused destinations: %d with --metric-spaces 1000, %d by default (Prometheus counts %v)",
		before, after, series[0].value)
	if before < 200*4 || after*5 > before {
		t.Errorf("%d series with every space, %d by default: want the default at most a fifth", before, after)
	}
	bounded.stop(t)
	all.stop(t)
}
