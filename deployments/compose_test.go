package deployments

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
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

const composeFile = "docker-compose.yml"

// composeFileT is the part of the compose file the checks read (YAML anchors and merge
// keys are resolved by the parser). It is not a full compose schema.
type composeFileT struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image       string          `json:"image"`
	Build       *composeBuild   `json:"build"`
	Command     []string        `json:"command"`
	Entrypoint  []string        `json:"entrypoint"`
	Environment json.RawMessage `json:"environment"`
	Ports       []string        `json:"ports"`
	Volumes     []string        `json:"volumes"`
	Healthcheck *composeHealth  `json:"healthcheck"`
	DependsOn   map[string]struct {
		Condition string `json:"condition"`
	} `json:"depends_on"`
	Deploy *struct {
		Replicas *int `json:"replicas"`
	} `json:"deploy"`
	StopGracePeriod string `json:"stop_grace_period"`
	ReadOnly        bool   `json:"read_only"`
}

type composeBuild struct {
	Context    string `json:"context"`
	Dockerfile string `json:"dockerfile"`
}

type composeHealth struct {
	Test []string `json:"test"`
}

func loadCompose(t *testing.T) composeFileT {
	t.Helper()
	data, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	var f composeFileT
	if err := json.Unmarshal(js, &f); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	if len(f.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return f
}

// isViberqService reports whether the service runs the viberq image.
func isViberqService(s composeService) bool {
	return s.Build != nil && filepath.Base(s.Build.Dockerfile) == "Dockerfile" && strings.Contains(s.Build.Dockerfile, "deployments")
}

// environment returns the service's environment, map or list form.
func (s composeService) environment() (map[string]string, error) {
	env := map[string]string{}
	if len(s.Environment) == 0 {
		return env, nil
	}
	var m map[string]*string
	if err := json.Unmarshal(s.Environment, &m); err == nil {
		for k, v := range m {
			if v != nil {
				env[k] = *v
			} else {
				env[k] = ""
			}
		}
		return env, nil
	}
	var l []string
	if err := json.Unmarshal(s.Environment, &l); err != nil {
		return nil, fmt.Errorf("environment is neither a map nor a list: %v", err)
	}
	for _, kv := range l {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	return env, nil
}

var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-?])([^}]*))?\}`)

// generatedEnv stands for deployments/.env as deployments/scripts/gen-secrets.sh
// writes it: a random 64-hex value for each variable.
func generatedEnv(name string) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte("compose-test-"+name)))
}

// interpolate resolves ${VAR:-default}, ${VAR} and ${VAR:?message} as compose does
// with an environment where only deployments/.env (generatedEnv) sets the required
// ones: the default, "", or the generated value.
func interpolate(v string) string {
	return composeVar.ReplaceAllStringFunc(v, func(m string) string {
		sm := composeVar.FindStringSubmatch(m)
		if sm[2] == "?" {
			return generatedEnv(sm[1])
		}
		return sm[3]
	})
}

func composeInvocations(t *testing.T, f composeFileT) []invocation {
	t.Helper()
	var out []invocation
	for name, s := range f.Services {
		if isViberqService(s) && len(s.Command) > 0 {
			out = append(out, invocation{where: composeFile + " service " + name, args: s.Command})
		}
	}
	return out
}

// flagValue returns the value of --name (or -name, or --name=v) in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		n := strings.TrimLeft(a, "-")
		if n == a {
			continue
		}
		if k, v, ok := strings.Cut(n, "="); ok && k == name {
			return v
		}
		if n == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestCompose(t *testing.T) {
	f := loadCompose(t)
	known := settings(t)

	// What each viberq service listens on, for the healthchecks and DT_BASE_URL.
	listen := map[string]int32{} // service -> port
	workers := 0
	var after []func() // checks that need every service's listener
	for name, s := range f.Services {
		where := composeFile + " service " + name
		env, err := s.environment()
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		vq := isViberqService(s)
		for k := range env {
			switch {
			case strings.HasPrefix(k, config.Prefix):
				if _, ok := known[k]; !ok {
					t.Errorf("%s: %s is not a variable config reads (config.Names)", where, k)
				}
			case vq:
				t.Errorf("%s: %s is set in a viberq service, which reads only %s variables", where, k, config.Prefix)
			}
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s: no healthcheck", where)
		}
		for dep, c := range s.DependsOn {
			ds, ok := f.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s: depends on %s, which is no service", where, dep)
			case !slices.Contains([]string{"service_started", "service_healthy", "service_completed_successfully"}, c.Condition):
				t.Errorf("%s: depends on %s with condition %q", where, dep, c.Condition)
			case c.Condition == "service_healthy" && ds.Healthcheck == nil:
				t.Errorf("%s: waits for %s to be healthy, which has no healthcheck", where, dep)
			}
		}
		if !vq {
			continue
		}

		// A viberq service.
		if s.Build == nil {
			continue
		}
		ctx := filepath.Join(".", s.Build.Context)
		if _, err := os.Stat(filepath.Join(ctx, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build dockerfile %s (context %s): %v", where, s.Build.Dockerfile, s.Build.Context, err)
		}
		if _, err := os.Stat(filepath.Join(ctx, "go.mod")); err != nil {
			t.Errorf("%s: build context %s is not the repository root: %v", where, s.Build.Context, err)
		}
		if len(s.Entrypoint) > 0 {
			t.Errorf("%s: overrides the image's ENTRYPOINT /viberq", where)
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command (subcommand)", where)
			continue
		}
		resolved := map[string]string{}
		for k, v := range env {
			resolved[k] = interpolate(v)
			// A credential has no default in the file (a default would be a
			// published secret): it is required, from deployments/.env.
			if known[k].Secret {
				if sm := composeVar.FindStringSubmatch(v); sm == nil || sm[0] != v || sm[2] != "?" {
					t.Errorf("%s: %s is %q; a credential must be ${%s:?...}, generated into deployments/.env", where, k, v, k)
				}
			}
		}
		cfg, err := config.Load(mapGetenv(resolved))
		if err != nil {
			t.Errorf("%s: its environment (with the ${VAR:-default} defaults) does not load: %v", where, err)
			continue
		}
		sub := s.Command[0]
		var port int32
		switch sub {
		case "worker":
			n := 1
			if s.Deploy != nil && s.Deploy.Replicas != nil {
				n = *s.Deploy.Replicas
			}
			workers += n
			if err := cfg.RequireAPIKey(); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			port = addrPort(t, where+" "+config.EnvMetricsAddr, cfg.Worker.MetricsAddr)
		case "api":
			for _, req := range []func() error{cfg.RequireAPITokens, cfg.RequireMonitoringPassword} {
				if err := req(); err != nil {
					t.Errorf("%s: %v", where, err)
				}
			}
			port = addrPort(t, where+" "+config.EnvHTTPAddr, cfg.API.Addr)
			if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+strconv.Itoa(int(port))) }) {
				t.Errorf("%s: ports %q do not publish the API port %d", where, s.Ports, port)
			}
		case "sim":
			addr := flagValue(s.Command, "addr")
			if addr == "" {
				t.Errorf("%s: sim without --addr", where)
				continue
			}
			port = addrPort(t, where+" --addr", addr)
			if h, _, _ := net.SplitHostPort(addr); h == "127.0.0.1" || h == "localhost" {
				t.Errorf("%s: --addr %s is unreachable from the other containers", where, addr)
			}
		}
		listen[name] = port
		if sub == "worker" || sub == "api" {
			grace, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil || grace <= cfg.Worker.ShutdownTimeout+shutdownMargin {
				t.Errorf("%s: stop_grace_period %q must be above %s (%s) + %s", where, s.StopGracePeriod, config.EnvShutdownTimeout, cfg.Worker.ShutdownTimeout, shutdownMargin)
			}
		}
		// The healthcheck probes the service's own listener, with the binary the image
		// ships (distroless has no shell, curl or wget).
		if s.Healthcheck != nil && port != 0 {
			hc := s.Healthcheck.Test
			if len(hc) != 3 || hc[0] != "CMD" || hc[1] != "/healthcheck" {
				t.Errorf("%s: healthcheck %q, want [CMD /healthcheck URL] (the image has no shell)", where, hc)
			} else if u, err := url.Parse(hc[2]); err != nil || u.Port() != strconv.Itoa(int(port)) {
				t.Errorf("%s: healthcheck %s does not reach the port %d the service listens on", where, hc[2], port)
			} else if sub != "sim" && u.Path != "/readyz" {
				t.Errorf("%s: healthcheck %s, want the /readyz endpoint", where, hc[2])
			}
		}
		// The provider and Redis URLs name services of this file, on their ports.
		if u, err := url.Parse(cfg.Provider.BaseURL); err == nil {
			if _, ok := f.Services[u.Hostname()]; ok {
				where, host, port := where, u.Hostname(), u.Port()
				after = append(after, func() {
					if strconv.Itoa(int(listen[host])) != port {
						t.Errorf("%s: %s points at %s:%s, but %s listens on %d", where, config.EnvDTBaseURL, host, port, host, listen[host])
					}
				})
			}
		}
		if host, _, _ := net.SplitHostPort(cfg.Redis.Addr); host != "" {
			if _, ok := f.Services[host]; !ok {
				t.Errorf("%s: %s host %s is no service", where, config.EnvRedisURL, host)
			}
		}
	}
	for _, f := range after {
		f()
	}
	if workers != 3 {
		t.Errorf("%s: %d worker containers, want 3", composeFile, workers)
	}

	// Redis: AOF on a named volume.
	r, ok := f.Services["redis"]
	if !ok {
		t.Fatalf("%s: no redis service", composeFile)
	}
	line := " " + strings.Join(r.Command, " ") + " "
	if !strings.Contains(line, " --appendonly yes ") || !strings.Contains(line, " --maxmemory-policy noeviction ") {
		t.Errorf("%s: redis command %q lacks --appendonly yes or --maxmemory-policy noeviction", composeFile, r.Command)
	}
	if !slices.ContainsFunc(r.Volumes, func(v string) bool {
		name, target, _ := strings.Cut(v, ":")
		_, declared := f.Volumes[name]
		return declared && strings.HasPrefix(target, "/data")
	}) {
		t.Errorf("%s: redis has no named volume on /data: %q", composeFile, r.Volumes)
	}
	for _, sub := range []string{"sim", "api"} {
		if !slices.ContainsFunc(composeInvocations(t, f), func(i invocation) bool { return i.args[0] == sub }) {
			t.Errorf("%s: no service runs `viberq %s`", composeFile, sub)
		}
	}
}
