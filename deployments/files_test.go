package deployments

import (
	"context"
	"encoding/json"
	"go/build"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/viberq/viberq/config"
)

// ---------------------------------------------------------------------------------
// Dockerfile

type dockerInstr struct {
	line int    // first line of the instruction
	cmd  string // upper case: FROM, RUN, ...
	args string // the rest, continuation lines joined
}

func parseDockerfile(t *testing.T, data string) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	var cur *dockerInstr
	for i, line := range strings.Split(data, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == nil && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur != nil && strings.HasPrefix(trimmed, "#") {
			continue // comment inside a continued instruction
		}
		cont := strings.HasSuffix(trimmed, `\`)
		trimmed = strings.TrimSuffix(trimmed, `\`)
		if cur == nil {
			cmd, args, _ := strings.Cut(trimmed, " ")
			cur = &dockerInstr{line: i + 1, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		} else {
			cur.args += " " + strings.TrimSpace(trimmed)
		}
		if !cont {
			out = append(out, *cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Fatalf("Dockerfile: instruction at line %d ends with a line continuation", cur.line)
	}
	return out
}

type dockerStage struct {
	image, name string
	instrs      []dockerInstr
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	instrs := parseDockerfile(t, string(data))

	// ARGs declared before the first FROM are what FROM lines may use.
	args := map[string]string{}
	var stages []dockerStage
	for _, in := range instrs {
		switch {
		case in.cmd == "ARG" && len(stages) == 0:
			k, v, _ := strings.Cut(in.args, "=")
			args[k] = v
		case in.cmd == "FROM":
			f := strings.Fields(in.args)
			f = slices.DeleteFunc(f, func(s string) bool { return strings.HasPrefix(s, "--platform=") })
			st := dockerStage{image: os.Expand(f[0], func(k string) string { return args[k] })}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			} else if len(f) != 1 {
				t.Fatalf("Dockerfile:%d: cannot read FROM %s", in.line, in.args)
			}
			stages = append(stages, st)
		case len(stages) == 0:
			t.Fatalf("Dockerfile:%d: %s before the first FROM", in.line, in.cmd)
		default:
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a multi-stage build", len(stages))
	}

	// The builder: golang at the go.mod version, static, trimmed, cached modules.
	builder := stages[0]
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(goVersion[1]); builder.image != want && !strings.HasPrefix(builder.image, want+".") && !strings.HasPrefix(builder.image, want+"-") {
		t.Errorf("Dockerfile: builder image %s, want %s (the go.mod version)", builder.image, want)
	}
	var buildText strings.Builder
	for _, in := range builder.instrs {
		buildText.WriteString(in.cmd + " " + in.args + "\n")
	}
	bt := buildText.String()
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "--mount=type=cache,target=/go/pkg/mod", "--mount=type=cache,target=/root/.cache/go-build"} {
		if !strings.Contains(bt, want) {
			t.Errorf("Dockerfile: the builder stage lacks %s", want)
		}
	}
	builds := regexp.MustCompile(`go build [^&;]*?-o (\S+) (\./\S+)`).FindAllStringSubmatch(bt, -1)
	if len(builds) == 0 {
		t.Fatal("Dockerfile: no `go build ... -o OUT ./pkg` in the builder stage")
	}
	outputs := map[string]bool{}
	for _, b := range builds {
		outputs[b[1]] = true
		if fi, err := os.Stat(filepath.Join("..", b[2])); err != nil || !fi.IsDir() {
			t.Errorf("Dockerfile: builds %s, which is no package directory of the repository", b[2])
		}
	}
	if !slices.ContainsFunc(builds, func(b []string) bool { return b[2] == "./cmd/viberq" }) {
		t.Errorf("Dockerfile: does not build ./cmd/viberq")
	}

	// The final stage: distroless static nonroot (or scratch), non-root, /viberq.
	final := stages[len(stages)-1]
	switch {
	case strings.HasPrefix(final.image, "gcr.io/distroless/static") && strings.HasSuffix(final.image, ":nonroot"):
	case final.image == "scratch":
		if !slices.ContainsFunc(final.instrs, func(in dockerInstr) bool { return in.cmd == "COPY" && strings.Contains(in.args, "ca-certificates") }) {
			t.Errorf("Dockerfile: a scratch final stage needs the CA certificates copied in")
		}
	default:
		t.Errorf("Dockerfile: final stage %s, want gcr.io/distroless/static-*:nonroot or scratch", final.image)
	}
	user := ""
	var entrypoint []string
	exposed := map[int32]bool{}
	files := map[string]bool{}
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(in.args), &entrypoint); err != nil {
				t.Errorf("Dockerfile:%d: ENTRYPOINT is not in exec (JSON) form: %v", in.line, err)
			}
		case "EXPOSE":
			for _, p := range strings.Fields(in.args) {
				n, _ := strconv.Atoi(strings.TrimSuffix(p, "/tcp"))
				exposed[int32(n)] = true
			}
		case "COPY":
			f := strings.Fields(in.args)
			if from, ok := strings.CutPrefix(f[0], "--from="); ok {
				if !slices.ContainsFunc(stages, func(s dockerStage) bool { return s.name == from }) {
					t.Errorf("Dockerfile:%d: COPY --from=%s names no stage", in.line, from)
				}
				if !outputs[f[1]] {
					t.Errorf("Dockerfile:%d: copies %s, which no go build writes", in.line, f[1])
				}
			}
			files[f[len(f)-1]] = true
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		t.Errorf("Dockerfile: final stage USER %q, want a non-root user (65532)", user)
	} else if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("Dockerfile: USER %q should be numeric so that Kubernetes can verify runAsNonRoot", user)
	}
	if !slices.Equal(entrypoint, []string{"/viberq"}) {
		t.Errorf("Dockerfile: ENTRYPOINT %q, want [\"/viberq\"] (the manifests pass the subcommand as args)", entrypoint)
	}
	for _, addr := range []string{config.DefaultHTTPAddr, config.DefaultMetricsAddr} {
		if p := addrPort(t, "config default", addr); !exposed[p] {
			t.Errorf("Dockerfile: does not EXPOSE %d (default %s)", p, addr)
		}
	}
	if !files["/viberq"] {
		t.Errorf("Dockerfile: the final stage has no /viberq")
	}
	// The compose healthchecks run a program of the image.
	for name, s := range loadCompose(t).Services {
		if isViberqService(s) && s.Healthcheck != nil && len(s.Healthcheck.Test) > 1 && s.Healthcheck.Test[0] == "CMD" && !files[s.Healthcheck.Test[1]] {
			t.Errorf("%s service %s: healthcheck runs %s, which the image does not contain", composeFile, name, s.Healthcheck.Test[1])
		}
	}
}

// ---------------------------------------------------------------------------------
// Grafana dashboard

const dashboardFile = "grafana/viberq-dashboard.json"

// knownMetrics are the metrics viberq exports (worker/metrics.go) and asynq's queue
// collector (github.com/hibiken/asynq/x/metrics), with their labels. The dashboard may
// query only these; keep the list in sync with the worker (TestMetricNamesInSync).
var knownMetrics = map[string]struct {
	histogram bool
	labels    []string
}{
	"viberq_sends_total":                       {false, []string{"outcome"}},
	"viberq_final_states_total":                {false, []string{"state", "channel"}},
	"viberq_provider_request_duration_seconds": {true, []string{"endpoint", "code"}},
	"viberq_limiter_wait_seconds":              {true, []string{"bucket"}},
	"viberq_polls_per_message":                 {true, nil},
	"viberq_alerts_total":                      {false, []string{"kind"}},
	"viberq_unknown_total":                     {false, nil},
	"viberq_reconciler_repairs_total":          {false, []string{"repair"}},
	"viberq_reconciler_checked_total":          {false, nil},
	"viberq_reconciler_leader":                 {false, nil},
	"viberq_nonfinal_records":                  {false, nil},
	"viberq_accepted_held":                     {false, nil},

	"asynq_tasks_enqueued_total":            {false, []string{"queue", "state"}},
	"asynq_queue_size":                      {false, []string{"queue"}},
	"asynq_queue_latency_seconds":           {false, []string{"queue"}},
	"asynq_queue_memory_usage_approx_bytes": {false, []string{"queue"}},
	"asynq_tasks_processed_total":           {false, []string{"queue"}},
	"asynq_tasks_failed_total":              {false, []string{"queue"}},
	"asynq_queue_paused_total":              {false, []string{"queue"}},
}

// Labels every scraped series may carry besides its own.
var targetLabels = []string{"instance", "job", "namespace", "pod", "container", "service"}

// dashboardMustShow are the metrics the dashboard must have a panel for.
var dashboardMustShow = []string{
	"viberq_sends_total", "viberq_final_states_total", "viberq_provider_request_duration_seconds",
	"viberq_limiter_wait_seconds", "viberq_polls_per_message", "viberq_alerts_total", "viberq_unknown_total",
	"viberq_reconciler_repairs_total", "viberq_accepted_held",
	"asynq_queue_size", "asynq_tasks_enqueued_total", "asynq_queue_paused_total",
}

type grafanaPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // collapsed rows
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

var (
	metricRef  = regexp.MustCompile(`\b((?:viberq|asynq)_[a-z0-9_]+)\b`)
	byClause   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchers   = regexp.MustCompile(`\{([^}]*)\}`)
	matcherKey = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	legendRef  = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// metricBase maps a queried series name to its metric: histograms are queried through
// _bucket, _sum and _count.
func metricBase(name string) (string, bool) {
	if _, ok := knownMetrics[name]; ok {
		return name, true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			if m, ok := knownMetrics[b]; ok && m.histogram {
				return b, true
			}
		}
	}
	return "", false
}

// TestGrafanaCountersShowZero: a panel over a counter that only appears with its
// first event (alerts, unknown sends, final states, callbacks) must show 0, not "No
// data", on a healthy system: its query falls back to vector(0).
func TestGrafanaCountersShowZero(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	var panels []grafanaPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	n := 0
	for _, p := range panels {
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "increase(") {
				continue
			}
			n++
			if !strings.Contains(tg.Expr, "or vector(0)") && !strings.Contains(tg.Expr, "or label_replace(vector(0)") {
				t.Errorf("panel %q: %s shows \"No data\" until the first event; add `or vector(0)`", p.Title, tg.Expr)
			}
		}
	}
	if n == 0 {
		t.Error("no counter panel found: the test checks nothing")
	}
}

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 30 {
		t.Errorf("%s: uid %q, title %q, schemaVersion %d: not an importable dashboard", dashboardFile, d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[v.Name] = true
		if v.Type == "datasource" && string(v.Query) != `"prometheus"` {
			t.Errorf("%s: datasource variable %s queries %s, want prometheus", dashboardFile, v.Name, v.Query)
		}
		for _, m := range metricRef.FindAllString(string(v.Query), -1) {
			if _, ok := metricBase(m); !ok {
				t.Errorf("%s: variable %s queries %s, which is no known metric", dashboardFile, v.Name, m)
			}
		}
	}

	var panels []grafanaPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	ids := map[int]bool{}
	shown := map[string]bool{}
	for _, p := range panels {
		where := dashboardFile + " panel " + strconv.Quote(p.Title)
		if ids[p.ID] || p.ID <= 0 {
			t.Errorf("%s: id %d is not unique and positive", where, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v is outside the 24-column grid", where, g)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || !vars[strings.Trim(p.Datasource.UID, "${}")] {
			t.Errorf("%s: datasource should be the prometheus ${datasource} variable", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
			names := metricRef.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("%s: query %q reads no viberq or asynq metric", where, tg.Expr)
			}
			// The labels the query may use: those of its metrics, le for buckets.
			allowed := slices.Clone(targetLabels)
			for _, n := range names {
				base, ok := metricBase(n)
				if !ok {
					t.Errorf("%s: query %q reads %s, which is no known metric", where, tg.Expr, n)
					continue
				}
				shown[base] = true
				allowed = append(allowed, knownMetrics[base].labels...)
				if strings.HasSuffix(n, "_bucket") {
					allowed = append(allowed, "le")
				}
			}
			var used []string
			for _, m := range byClause.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						used = append(used, l)
					}
				}
			}
			for _, m := range matchers.FindAllStringSubmatch(tg.Expr, -1) {
				for _, k := range matcherKey.FindAllStringSubmatch(m[1], -1) {
					used = append(used, k[1])
				}
			}
			for _, m := range legendRef.FindAllStringSubmatch(tg.LegendFormat, -1) {
				used = append(used, m[1])
			}
			for _, l := range used {
				if !slices.Contains(allowed, l) {
					t.Errorf("%s: query %q (legend %q) uses label %s, which its metrics do not have", where, tg.Expr, tg.LegendFormat, l)
				}
			}
		}
	}
	for _, m := range dashboardMustShow {
		if !shown[m] {
			t.Errorf("%s: no panel shows %s", dashboardFile, m)
		}
	}
}

// TestMetricNamesInSync compares the viberq metrics of knownMetrics with the metric
// names the worker package defines.
func TestMetricNamesInSync(t *testing.T) {
	srcs, _ := filepath.Glob("../worker/*.go")
	srcs = slices.DeleteFunc(srcs, func(s string) bool { return strings.HasSuffix(s, "_test.go") })
	if len(srcs) == 0 {
		t.Skip("the worker package has no source yet")
	}
	defined := map[string]bool{}
	nameField := regexp.MustCompile(`Name:\s*"(viberq_[a-z0-9_]+)"`)
	for _, s := range srcs {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range nameField.FindAllStringSubmatch(string(data), -1) {
			defined[m[1]] = true
		}
	}
	if len(defined) == 0 {
		t.Fatal(`found no metric definition (Name: "viberq_...") in ../worker`)
	}
	for n := range knownMetrics {
		if strings.HasPrefix(n, "viberq_") && !defined[n] {
			t.Errorf("knownMetrics has %s, which the worker package does not define", n)
		}
	}
	for n := range defined {
		if _, ok := knownMetrics[n]; !ok {
			t.Errorf("the worker package defines %s, which knownMetrics lacks (add it, and a panel if it matters)", n)
		}
	}
}

// ---------------------------------------------------------------------------------
// Taskfile

const taskfilePath = "../Taskfile.yml"

type taskfileT struct {
	Version string            `json:"version"`
	Vars    map[string]any    `json:"vars"`
	Tasks   map[string]taskT  `json:"tasks"`
	Env     map[string]string `json:"env"`
}

type taskT struct {
	Desc string            `json:"desc"`
	Cmds []json.RawMessage `json:"cmds"`
	Env  map[string]string `json:"env"`
}

// requiredTasks are the tasks README "Development" promises (`task --list`).
var requiredTasks = []string{"build", "test", "test:integration", "lint", "demo", "sim", "worker", "api", "bench", "chaos", "up", "down"}

func loadTaskfile(t *testing.T) taskfileT {
	t.Helper()
	data, err := os.ReadFile(taskfilePath)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	var f taskfileT
	if err := json.Unmarshal(js, &f); err != nil {
		t.Fatalf("Taskfile.yml: %v", err)
	}
	return f
}

// expand replaces {{.NAME}} by the Taskfile's global string var NAME.
func (f taskfileT) expand(s string) string {
	for k, v := range f.Vars {
		if vs, ok := v.(string); ok {
			s = strings.ReplaceAll(s, "{{."+k+"}}", vs)
		}
	}
	return s
}

// commands returns a task's shell commands with the Taskfile's global string vars
// expanded, and the names of the tasks it calls.
func (f taskfileT) commands(tk taskT) (shell, calls []string) {
	for _, raw := range tk.Cmds {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			shell = append(shell, f.expand(s))
			continue
		}
		var obj struct {
			Task string `json:"task"`
			Cmd  string `json:"cmd"`
		}
		if json.Unmarshal(raw, &obj) == nil {
			if obj.Task != "" {
				calls = append(calls, obj.Task)
			}
			if obj.Cmd != "" {
				shell = append(shell, f.expand(obj.Cmd))
			}
		}
	}
	return shell, calls
}

var goRunViberq = regexp.MustCompile(`go run \./cmd/viberq\s+([^\n;&|]*)`)

func taskfileInvocations(t *testing.T, f taskfileT) []invocation {
	t.Helper()
	var out []invocation
	for name, tk := range f.Tasks {
		shell, _ := f.commands(tk)
		for _, s := range shell {
			for _, m := range goRunViberq.FindAllStringSubmatch(s, -1) {
				var args []string
				for _, a := range strings.Fields(m[1]) {
					switch {
					case a == "{{.CLI_ARGS}}":
					case strings.HasPrefix(a, "{{"):
						args = append(args, "VALUE")
					default:
						args = append(args, a)
					}
				}
				if len(args) > 0 {
					out = append(out, invocation{where: "Taskfile.yml task " + name, args: args})
				}
			}
		}
	}
	return out
}

func TestTaskfile(t *testing.T) {
	f := loadTaskfile(t)
	if f.Version != "3" {
		t.Errorf("Taskfile.yml: version %q, want '3'", f.Version)
	}
	for _, n := range requiredTasks {
		if _, ok := f.Tasks[n]; !ok {
			t.Errorf("Taskfile.yml: no task %s", n)
		}
	}
	fileRef := regexp.MustCompile(`(?:bash|sh|-f)\s+(deployments/\S+)`)
	for name, tk := range f.Tasks {
		if strings.TrimSpace(tk.Desc) == "" {
			t.Errorf("Taskfile.yml: task %s has no desc (task --list would not show it)", name)
		}
		shell, calls := f.commands(tk)
		if len(shell)+len(calls) == 0 {
			t.Errorf("Taskfile.yml: task %s runs nothing", name)
		}
		for _, c := range calls {
			if _, ok := f.Tasks[c]; !ok {
				t.Errorf("Taskfile.yml: task %s calls task %s, which does not exist", name, c)
			}
		}
		for _, s := range shell {
			for _, m := range fileRef.FindAllStringSubmatch(s, -1) {
				if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
					t.Errorf("Taskfile.yml: task %s uses %s: %v", name, m[1], err)
				}
			}
		}
	}
	all := func(name string) string {
		shell, _ := f.commands(f.Tasks[name])
		return strings.Join(shell, "\n")
	}
	if s := all("test"); !strings.Contains(s, "go test -race ./...") {
		t.Errorf("Taskfile.yml: task test does not run go test -race ./...: %q", s)
	}
	if ti := f.Tasks["test:integration"]; !strings.HasPrefix(f.expand(ti.Env["VIBERQ_TEST_REDIS_URL"]), "redis://") || !strings.Contains(all("test:integration"), "-race -count=1") {
		t.Errorf("Taskfile.yml: task test:integration must set VIBERQ_TEST_REDIS_URL and run go test -race -count=1")
	}
	for _, want := range []string{"gofmt -l", "go vet ./...", "honnef.co/go/tools/cmd/staticcheck@v0.8.2", "bash .ci/citations.sh", "go mod tidy -diff"} {
		if !strings.Contains(all("lint"), want) {
			t.Errorf("Taskfile.yml: task lint lacks %s", want)
		}
	}
	for task, want := range map[string]string{"up": "up -d --build", "down": " down"} {
		if s := all(task); !strings.Contains(s, "docker compose -f deployments/"+composeFile) || !strings.Contains(s, want) {
			t.Errorf("Taskfile.yml: task %s = %q, want docker compose -f deployments/%s ...%s", task, s, composeFile, want)
		}
	}

	// When go-task is installed, `task --list` shows every task with its desc.
	bin, err := exec.LookPath("task")
	if err != nil {
		bin = filepath.Join(build.Default.GOPATH, "bin", "task")
		if _, err := os.Stat(bin); err != nil {
			t.Logf("go-task is not installed: `task --list` not run")
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--list", "--color=false")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "NO_COLOR=1") // CI=true makes go-task colour its output
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("task --list: %v\n%s", err, out)
	}
	for name, tk := range f.Tasks {
		if !regexp.MustCompile(`(?m)^\* ` + regexp.QuoteMeta(name) + `:\s+` + regexp.QuoteMeta(tk.Desc) + `\s*$`).Match(out) {
			t.Errorf("task --list does not show %s with its desc:\n%s", name, out)
		}
	}
}
