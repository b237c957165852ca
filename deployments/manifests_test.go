package deployments

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/viberq/viberq/config"
)

// The names the manifests use for viberq's own objects.
const (
	viberqImage    = "ghcr.io/viberq/viberq" // repository of the viberq containers
	configMapName  = "viberq-config"
	secretName     = "viberq-secrets"
	k8sDir         = "k8s"
	baseDir        = "k8s/base"
	shutdownMargin = 5 * time.Second // grace period > shutdown timeout + preStop + this
)

// ---------------------------------------------------------------------------------
// The viberq binary, built once for the subcommand checks.

var binary struct {
	path string // set when the build succeeded
	skip string // set when there is no main package to build yet
	err  error  // set when the build failed
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "viberq-deployments-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		buildBinary(dir)
		return m.Run()
	}())
}

func buildBinary(dir string) {
	if _, err := os.Stat("../cmd/viberq/main.go"); errors.Is(err, fs.ErrNotExist) {
		binary.skip = "cmd/viberq/main.go does not exist yet: the subcommand checks need the viberq binary"
		return
	}
	out := filepath.Join(dir, "viberq")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "../cmd/viberq")
	if msg, err := cmd.CombinedOutput(); err != nil {
		binary.err = fmt.Errorf("go build ../cmd/viberq: %v\n%s", err, msg)
		return
	}
	binary.path = out
}

// invocation is one way a deployment file runs the binary: viberq <args...>.
type invocation struct {
	where string   // file and object, for messages
	args  []string // args[0] is the subcommand
}

// helpOutput runs `viberq args... --help` with an empty environment (no VIBERQ_
// variable may be needed for --help) and returns its exit code and output.
func helpOutput(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary.path, append(args, "--help")...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("viberq %s --help did not return within 30s (does --help start the command?)", strings.Join(args, " "))
	}
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run viberq %s --help: %v", strings.Join(args, " "), err)
	}
	return code, out.String()
}

// TestCommandsExist runs `viberq <sub> --help` for every subcommand a deployment file
// (Kubernetes, compose, Taskfile) runs, and checks every flag it passes is in the help.
func TestCommandsExist(t *testing.T) {
	invs := allInvocations(t)
	if len(invs) == 0 {
		t.Fatal("no invocation of the binary found in the deployment files")
	}
	switch {
	case binary.skip != "":
		t.Skip(binary.skip)
	case binary.err != nil:
		t.Fatalf("cmd/viberq exists but does not build, so the commands the deployments run cannot be checked:\n%v", binary.err)
	}

	// Control: an unknown subcommand must fail, or the checks below prove nothing.
	if code, out := helpOutput(t, "no-such-subcommand"); code == 0 {
		t.Fatalf("viberq no-such-subcommand --help exits 0, so --help cannot tell which subcommands exist:\n%s", out)
	}

	type result struct {
		code int
		out  string
	}
	seen := map[string]result{}
	for _, inv := range invs {
		sub := inv.args[0]
		r, ok := seen[sub]
		if !ok {
			r.code, r.out = helpOutput(t, sub)
			seen[sub] = r
		}
		if r.code != 0 {
			t.Errorf("%s runs `viberq %s`, but `viberq %s --help` exits %d:\n%s", inv.where, sub, sub, r.code, r.out)
			continue
		}
		if !strings.Contains(r.out, "viberq "+sub) {
			t.Errorf("%s runs `viberq %s`, but its --help does not mention \"viberq %s\":\n%s", inv.where, sub, sub, r.out)
			continue
		}
		for _, a := range inv.args[1:] {
			if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !regexp.MustCompile(`(?m)^\s*--?` + regexp.QuoteMeta(name) + `\b`).MatchString(r.out) {
				t.Errorf("%s passes %s to `viberq %s`, which its --help does not list:\n%s", inv.where, a, sub, r.out)
			}
		}
	}
	subs := make([]string, 0, len(seen))
	for s := range seen {
		subs = append(subs, s)
	}
	sort.Strings(subs)
	t.Logf("checked subcommands: %s", strings.Join(subs, ", "))
}

func allInvocations(t *testing.T) []invocation {
	t.Helper()
	var invs []invocation
	set := loadK8s(t)
	for _, d := range set.docs {
		if set.role[d.file] != roleResource {
			continue
		}
		invs = append(invs, k8sInvocations(d)...)
	}
	invs = append(invs, composeInvocations(t, loadCompose(t))...)
	invs = append(invs, taskfileInvocations(t, loadTaskfile(t))...)
	return invs
}

// ---------------------------------------------------------------------------------
// Strict decoding of the Kubernetes manifests.

// kustomization is the part of kustomize's Kustomization the manifests use. Unknown
// fields fail the test: extend this struct when a kustomization needs more.
type kustomization struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace,omitempty"`
	Resources  []string           `json:"resources,omitempty"`
	Labels     []kustomizeLabel   `json:"labels,omitempty"`
	Images     []kustomizeImage   `json:"images,omitempty"`
	Replicas   []kustomizeReplica `json:"replicas,omitempty"`
	Patches    []kustomizePatch   `json:"patches,omitempty"`
}

type kustomizeLabel struct {
	Pairs            map[string]string `json:"pairs"`
	IncludeSelectors bool              `json:"includeSelectors,omitempty"`
	IncludeTemplates bool              `json:"includeTemplates,omitempty"`
}

type kustomizeImage struct {
	Name    string `json:"name"`
	NewName string `json:"newName,omitempty"`
	NewTag  string `json:"newTag,omitempty"`
	Digest  string `json:"digest,omitempty"`
}

type kustomizeReplica struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

type kustomizePatch struct {
	Path   string           `json:"path,omitempty"`
	Target *kustomizeTarget `json:"target,omitempty"`
}

type kustomizeTarget struct {
	Group   string `json:"group,omitempty"`
	Version string `json:"version,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Name    string `json:"name,omitempty"`
}

// newObject returns the Go type a document of apiVersion/kind decodes into.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "v1 Namespace":
		return &corev1.Namespace{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "kustomize.config.k8s.io/v1beta1 Kustomization":
		return &kustomization{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion %q kind %q: the test decodes only the types it knows (add it to newObject)", apiVersion, kind)
}

// k8sDoc is one decoded YAML document.
type k8sDoc struct {
	file string // path relative to the deployments directory
	kind string
	name string
	obj  any // *corev1.ConfigMap, *appsv1.Deployment, *kustomization, ...
}

func (d k8sDoc) String() string { return fmt.Sprintf("%s (%s %s)", d.file, d.kind, d.name) }

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// decodeYAMLDocs splits a multi-document YAML file and decodes every non-empty
// document strictly into its Kubernetes type.
func decodeYAMLDocs(file string, data []byte) ([]k8sDoc, error) {
	var docs []k8sDoc
	for i, part := range docSeparator.Split(string(data), -1) {
		js, err := yaml.YAMLToJSONStrict([]byte(part))
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		if s := strings.TrimSpace(string(js)); s == "null" || s == "" {
			continue // empty or comments only
		}
		d, err := decodeK8sJSON(file, js)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %v", file, i, err)
		}
		docs = append(docs, d)
	}
	return docs, nil
}

func decodeK8sJSON(file string, js []byte) (k8sDoc, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(js, &meta); err != nil {
		return k8sDoc{}, fmt.Errorf("not an object: %v", err)
	}
	obj, err := newObject(meta.APIVersion, meta.Kind)
	if err != nil {
		return k8sDoc{}, err
	}
	if err := decodeStrict(js, obj); err != nil {
		return k8sDoc{}, fmt.Errorf("%s %s: %v", meta.Kind, meta.Metadata.Name, err)
	}
	if meta.Kind != "Kustomization" && meta.Metadata.Name == "" {
		return k8sDoc{}, fmt.Errorf("%s without metadata.name", meta.Kind)
	}
	return k8sDoc{file: file, kind: meta.Kind, name: meta.Metadata.Name, obj: obj}, nil
}

// decodeStrict decodes js into obj, refusing unknown fields and trailing data, then
// checks that every non-empty input key survives a round trip through obj:
// encoding/json matches field names case-insensitively, Kubernetes does not.
func decodeStrict(js []byte, obj any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(obj); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the object")
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	var in, back any
	if err := json.Unmarshal(js, &in); err != nil {
		return err
	}
	if err := json.Unmarshal(out, &back); err != nil {
		return err
	}
	return sameKeys(in, back, "")
}

func sameKeys(in, back any, at string) error {
	switch v := in.(type) {
	case map[string]any:
		bm, _ := back.(map[string]any)
		for k, iv := range v {
			bv, ok := bm[k]
			if !ok {
				if isZeroJSON(iv) {
					continue
				}
				return fmt.Errorf("%s.%s: not a field of the type (check its spelling and case)", at, k)
			}
			if err := sameKeys(iv, bv, at+"."+k); err != nil {
				return err
			}
		}
	case []any:
		bl, _ := back.([]any)
		if len(bl) != len(v) {
			return fmt.Errorf("%s: %d items decoded from %d", at, len(bl), len(v))
		}
		for i := range v {
			if err := sameKeys(v[i], bl[i], fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func isZeroJSON(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case bool:
		return !x
	case float64:
		return x == 0
	case string:
		return x == ""
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}

// The role a file under k8s/ plays in its kustomization.
const (
	roleKustomization = "kustomization"
	roleResource      = "resource"
	rolePatch         = "patch"
)

type k8sSet struct {
	docs  []k8sDoc
	role  map[string]string         // file -> role
	kusts map[string]*kustomization // directory -> its kustomization
}

func loadK8s(t *testing.T) k8sSet {
	t.Helper()
	set := k8sSet{role: map[string]string{}, kusts: map[string]*kustomization{}}
	err := filepath.WalkDir(k8sDir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if ext := filepath.Ext(p); ext != ".yaml" && ext != ".yml" {
			return fmt.Errorf("%s: only YAML files belong under %s", p, k8sDir)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		docs, err := decodeYAMLDocs(filepath.ToSlash(p), data)
		if err != nil {
			return err
		}
		set.docs = append(set.docs, docs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range set.docs {
		if k, ok := d.obj.(*kustomization); ok {
			if path.Base(d.file) != "kustomization.yaml" {
				t.Fatalf("%s: a Kustomization must be in a file named kustomization.yaml", d.file)
			}
			set.kusts[path.Dir(d.file)] = k
			set.role[d.file] = roleKustomization
		}
	}
	if len(set.kusts) < 2 {
		t.Fatalf("found %d kustomizations under %s, want the base and at least one overlay", len(set.kusts), k8sDir)
	}
	// Every other file is a resource or a patch of some kustomization.
	for dir, k := range set.kusts {
		for _, r := range k.Resources {
			p := path.Join(dir, r)
			if _, ok := set.kusts[p]; ok {
				continue
			}
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s/kustomization.yaml: resource %s: %v", dir, r, err)
				continue
			}
			set.role[p] = roleResource
		}
		for _, pt := range k.Patches {
			if pt.Path == "" {
				t.Errorf("%s/kustomization.yaml: only patches from files (path:) are supported by this test", dir)
				continue
			}
			p := path.Join(dir, pt.Path)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s/kustomization.yaml: patch %s: %v", dir, pt.Path, err)
				continue
			}
			set.role[p] = rolePatch
		}
	}
	for _, d := range set.docs {
		if set.role[d.file] == "" {
			t.Errorf("%s is in no kustomization's resources or patches", d.file)
		}
	}
	return set
}

// objects returns the complete objects (resources, not patches) a kustomization
// directory builds on, following resource directories.
func (s k8sSet) objects(dir string) []k8sDoc {
	var out []k8sDoc
	k := s.kusts[dir]
	for _, r := range k.Resources {
		p := path.Join(dir, r)
		if _, ok := s.kusts[p]; ok {
			out = append(out, s.objects(p)...)
			continue
		}
		for _, d := range s.docs {
			if d.file == p {
				out = append(out, d)
			}
		}
	}
	return out
}

// TestManifestsDecodeStrictly is the decoding above plus the layout rules of the base.
func TestManifestsDecodeStrictly(t *testing.T) {
	set := loadK8s(t)
	if _, ok := set.kusts[baseDir]; !ok {
		t.Fatalf("no %s/kustomization.yaml", baseDir)
	}
	kinds := map[string]int{}
	for _, d := range set.docs {
		kinds[d.kind]++
	}
	for _, k := range []string{"ConfigMap", "Secret", "Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s under %s", k, k8sDir)
		}
	}
	t.Logf("decoded %d documents: %v", len(set.docs), kinds)

	// The base is namespace-free: the overlay chooses the namespace.
	if ns := set.kusts[baseDir].Namespace; ns != "" {
		t.Errorf("%s/kustomization.yaml sets namespace %q; the base must be namespace-free", baseDir, ns)
	}
	for _, d := range set.objects(baseDir) {
		if ns := objectMeta(d).Namespace; ns != "" {
			t.Errorf("%s sets metadata.namespace %q; the base must be namespace-free", d, ns)
		}
	}
	// Each overlay sets a namespace and pins the image.
	for dir, k := range set.kusts {
		if dir == baseDir {
			continue
		}
		if k.Namespace == "" {
			t.Errorf("%s/kustomization.yaml sets no namespace", dir)
		}
		if !slices.ContainsFunc(k.Images, func(i kustomizeImage) bool { return i.Name == viberqImage && (i.NewTag != "" || i.Digest != "") }) {
			t.Errorf("%s/kustomization.yaml does not pin the %s image (images: newTag or digest)", dir, viberqImage)
		}
	}
}

func objectMeta(d k8sDoc) *metaFields {
	switch o := d.obj.(type) {
	case *corev1.ConfigMap:
		return &metaFields{o.Namespace, o.Labels}
	case *corev1.Secret:
		return &metaFields{o.Namespace, o.Labels}
	case *corev1.Service:
		return &metaFields{o.Namespace, o.Labels}
	case *corev1.Namespace:
		return &metaFields{o.Namespace, o.Labels}
	case *appsv1.Deployment:
		return &metaFields{o.Namespace, o.Labels}
	case *appsv1.StatefulSet:
		return &metaFields{o.Namespace, o.Labels}
	case *autoscalingv2.HorizontalPodAutoscaler:
		return &metaFields{o.Namespace, o.Labels}
	case *policyv1.PodDisruptionBudget:
		return &metaFields{o.Namespace, o.Labels}
	}
	return &metaFields{}
}

type metaFields struct {
	Namespace string
	Labels    map[string]string
}

// ---------------------------------------------------------------------------------
// Cross-references within a set of complete objects.

// TestBaseCrossReferences checks the objects of the base.
func TestBaseCrossReferences(t *testing.T) {
	set := loadK8s(t)
	checkObjects(t, baseDir, set.objects(baseDir))
}

// TestOverlays checks each overlay against its base: patch targets, images and
// replicas name existing things, and the settings it produces load. When kubectl is
// installed, each overlay is also rendered and the result checked like the base.
func TestOverlays(t *testing.T) {
	set := loadK8s(t)
	kubectl, kerr := exec.LookPath("kubectl")
	for dir, k := range set.kusts {
		t.Run(dir, func(t *testing.T) {
			objs := set.objects(dir)
			for _, pt := range k.Patches {
				p := path.Join(dir, pt.Path)
				for _, d := range set.docs {
					if d.file != p {
						continue
					}
					if !slices.ContainsFunc(objs, func(o k8sDoc) bool { return o.kind == d.kind && o.name == d.name }) {
						t.Errorf("%s patches %s %s, which the resources do not define", d.file, d.kind, d.name)
					}
					if cm, ok := d.obj.(*corev1.ConfigMap); ok {
						checkConfigMapKeys(t, d.String(), cm)
					}
				}
			}
			for _, img := range k.Images {
				if !slices.ContainsFunc(objs, func(o k8sDoc) bool {
					return slices.ContainsFunc(podContainers(o), func(c corev1.Container) bool { return imageRepo(c.Image) == img.Name })
				}) {
					t.Errorf("%s/kustomization.yaml: image %s is used by no container", dir, img.Name)
				}
			}
			for _, r := range k.Replicas {
				if !slices.ContainsFunc(objs, func(o k8sDoc) bool { return (o.kind == "Deployment" || o.kind == "StatefulSet") && o.name == r.Name }) {
					t.Errorf("%s/kustomization.yaml: replicas of %s, which is no Deployment or StatefulSet", dir, r.Name)
				}
			}
			// The settings after the ConfigMap patches load.
			env := asDeployed(t, dir, mergedConfigEnv(t, set, dir))
			if _, err := config.Load(mapGetenv(env)); err != nil {
				t.Errorf("%s: the ConfigMap and Secret (with this overlay's patches) do not load: %v", dir, err)
			}

			if kerr != nil {
				t.Logf("kubectl not installed: %s not rendered, checked through its files only", dir)
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					err = fmt.Errorf("%v: %s", err, ee.Stderr)
				}
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			rendered, err := decodeYAMLDocs("kubectl kustomize "+dir, out)
			if err != nil {
				t.Fatalf("rendered output does not decode strictly: %v", err)
			}
			for _, d := range rendered {
				if ns := objectMeta(d).Namespace; d.kind != "Namespace" && ns != k.Namespace {
					t.Errorf("rendered %s %s has namespace %q, want %q", d.kind, d.name, ns, k.Namespace)
				}
			}
			checkObjects(t, "kubectl kustomize "+dir, rendered)
		})
	}
}

// mergedConfigEnv is the ConfigMap and Secret data of dir's resources, with the data of
// dir's ConfigMap and Secret patches applied over them (a strategic merge of maps).
func mergedConfigEnv(t *testing.T, set k8sSet, dir string) map[string]string {
	t.Helper()
	env := map[string]string{}
	add := func(d k8sDoc) {
		switch o := d.obj.(type) {
		case *corev1.ConfigMap:
			if o.Name == configMapName {
				for k, v := range o.Data {
					env[k] = v
				}
			}
		case *corev1.Secret:
			if o.Name == secretName {
				for k, v := range secretData(o) {
					env[k] = v
				}
			}
		}
	}
	for _, d := range set.objects(dir) {
		add(d)
	}
	for _, pt := range set.kusts[dir].Patches {
		for _, d := range set.docs {
			if d.file == path.Join(dir, pt.Path) {
				add(d)
			}
		}
	}
	return env
}

func secretData(s *corev1.Secret) map[string]string {
	out := map[string]string{}
	for k, v := range s.Data {
		out[k] = string(v)
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

func mapGetenv(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// settings returns config.Describe() by name; it fails the test when config reads no
// variable at all (every name check would pass vacuously).
func settings(t *testing.T) map[string]config.Setting {
	t.Helper()
	out := map[string]config.Setting{}
	for _, s := range config.Describe() {
		out[s.Name] = s
	}
	for _, n := range config.Names() {
		if _, ok := out[n]; !ok {
			t.Fatalf("config.Names() has %s, config.Describe() does not", n)
		}
	}
	if len(out) < 10 {
		t.Fatalf("config describes only %d settings", len(out))
	}
	return out
}

// checkEnvName reports a VIBERQ_ name config does not read, and any other name in a
// viberq container (viberq reads nothing else).
func checkEnvName(t *testing.T, where, name string, viberqContainer bool) {
	t.Helper()
	known := settings(t)
	switch {
	case strings.HasPrefix(name, config.Prefix):
		if _, ok := known[name]; !ok {
			t.Errorf("%s: %s is not a variable config reads (config.Names)", where, name)
		}
	case viberqContainer:
		t.Errorf("%s: %s is set in a viberq container, which reads only %s variables", where, name, config.Prefix)
	}
}

func checkConfigMapKeys(t *testing.T, where string, cm *corev1.ConfigMap) {
	t.Helper()
	known := settings(t)
	for k := range cm.Data {
		checkEnvName(t, where, k, true)
		if known[k].Secret {
			t.Errorf("%s: %s is a credential (config.Describe: Secret) and belongs in the Secret, not a ConfigMap", where, k)
		}
	}
	for k := range cm.BinaryData {
		t.Errorf("%s: binaryData %s cannot be an environment variable", where, k)
	}
}

// objIndex finds objects by kind and name.
type objIndex map[string]k8sDoc

func indexObjects(objs []k8sDoc) objIndex {
	idx := objIndex{}
	for _, d := range objs {
		idx[d.kind+"/"+d.name] = d
	}
	return idx
}

// workload is a Deployment or StatefulSet.
type workload struct {
	doc      k8sDoc
	selector *selectorInfo
	template corev1.PodTemplateSpec
}

type selectorInfo struct {
	MatchLabels      map[string]string
	MatchExpressions int
}

func workloads(objs []k8sDoc) []workload {
	var out []workload
	for _, d := range objs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{d, labelSelector(o.Spec.Selector.MatchLabels, len(o.Spec.Selector.MatchExpressions)), o.Spec.Template})
		case *appsv1.StatefulSet:
			out = append(out, workload{d, labelSelector(o.Spec.Selector.MatchLabels, len(o.Spec.Selector.MatchExpressions)), o.Spec.Template})
		}
	}
	return out
}

func labelSelector(m map[string]string, exprs int) *selectorInfo {
	return &selectorInfo{MatchLabels: m, MatchExpressions: exprs}
}

func podContainers(d k8sDoc) []corev1.Container {
	switch o := d.obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Spec.Containers
	case *appsv1.StatefulSet:
		return o.Spec.Template.Spec.Containers
	}
	return nil
}

// selects reports whether matchLabels m selects labels (an empty selector selects
// nothing here: the manifests never mean "everything").
func selects(m, labels map[string]string) bool {
	if len(m) == 0 {
		return false
	}
	for k, v := range m {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// imageRepo strips the tag and digest of an image reference.
func imageRepo(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

func isViberq(c corev1.Container) bool { return imageRepo(c.Image) == viberqImage }

// subcommand returns what a viberq container runs: the image's ENTRYPOINT is /viberq,
// so args[0] is the subcommand (command, when set, must be /viberq).
func subcommand(c corev1.Container) (string, error) {
	if len(c.Command) > 0 && !slices.Equal(c.Command, []string{"/viberq"}) {
		return "", fmt.Errorf("command %q: viberq containers keep the image's ENTRYPOINT /viberq and pass the subcommand in args", c.Command)
	}
	if len(c.Args) == 0 || strings.HasPrefix(c.Args[0], "-") {
		return "", fmt.Errorf("args %q do not start with a subcommand", c.Args)
	}
	return c.Args[0], nil
}

func k8sInvocations(d k8sDoc) []invocation {
	var out []invocation
	for _, c := range podContainers(d) {
		if !isViberq(c) {
			continue
		}
		if _, err := subcommand(c); err == nil {
			out = append(out, invocation{where: fmt.Sprintf("%s container %s", d, c.Name), args: c.Args})
		}
	}
	return out
}

// containerEnv resolves a container's environment as the kubelet would (envFrom in
// order, then env), reporting references to missing ConfigMaps, Secrets or keys.
func containerEnv(t *testing.T, where string, idx objIndex, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			d, ok := idx["ConfigMap/"+ef.ConfigMapRef.Name]
			if !ok {
				if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
					t.Errorf("%s: envFrom ConfigMap %s does not exist", where, ef.ConfigMapRef.Name)
				}
				continue
			}
			for k, v := range d.obj.(*corev1.ConfigMap).Data {
				env[ef.Prefix+k] = v
			}
		case ef.SecretRef != nil:
			d, ok := idx["Secret/"+ef.SecretRef.Name]
			if !ok {
				if ef.SecretRef.Optional == nil || !*ef.SecretRef.Optional {
					t.Errorf("%s: envFrom Secret %s does not exist", where, ef.SecretRef.Name)
				}
				continue
			}
			for k, v := range secretData(d.obj.(*corev1.Secret)) {
				env[ef.Prefix+k] = v
			}
		default:
			t.Errorf("%s: envFrom entry without configMapRef or secretRef", where)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			r := e.ValueFrom.ConfigMapKeyRef
			d, ok := idx["ConfigMap/"+r.Name]
			v, has := "", false
			if ok {
				v, has = d.obj.(*corev1.ConfigMap).Data[r.Key]
			}
			if !has {
				t.Errorf("%s: env %s: ConfigMap %s has no key %s", where, e.Name, r.Name, r.Key)
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			r := e.ValueFrom.SecretKeyRef
			d, ok := idx["Secret/"+r.Name]
			v, has := "", false
			if ok {
				v, has = secretData(d.obj.(*corev1.Secret))[r.Key]
			}
			if !has {
				t.Errorf("%s: env %s: Secret %s has no key %s", where, e.Name, r.Name, r.Key)
			}
			env[e.Name] = v
		default:
			env[e.Name] = "(from the downward API)"
		}
	}
	return env
}

// portNumber finds the container port a probe or Service port refers to, by number or
// by name; 0 when it matches none.
func portNumber(ports []corev1.ContainerPort, name string, number int32) int32 {
	for _, p := range ports {
		if (name != "" && p.Name == name) || (name == "" && p.ContainerPort == number) {
			return p.ContainerPort
		}
	}
	return 0
}

// addrPort returns the port of a listen address like ":8080".
func addrPort(t *testing.T, where, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	n, err2 := strconv.Atoi(p)
	if err != nil || err2 != nil || n <= 0 {
		t.Errorf("%s: listen address %q has no fixed port", where, addr)
		return 0
	}
	return int32(n)
}

// probe describes a probe for the checks: the port it reaches and its HTTP path.
func probePort(p *corev1.Probe) (name string, number int32, httpPath string, ok bool) {
	switch {
	case p.HTTPGet != nil:
		return p.HTTPGet.Port.StrVal, p.HTTPGet.Port.IntVal, p.HTTPGet.Path, true
	case p.TCPSocket != nil:
		return p.TCPSocket.Port.StrVal, p.TCPSocket.Port.IntVal, "", true
	case p.GRPC != nil:
		return "", p.GRPC.Port, "", true
	}
	return "", 0, "", false
}

var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkObjects runs every cross-reference check on a set of complete objects.
func checkObjects(t *testing.T, where string, objs []k8sDoc) {
	t.Helper()
	idx := indexObjects(objs)
	// ConfigMap and Secret: the names config reads, credentials only in the Secret.
	cmDoc, ok := idx["ConfigMap/"+configMapName]
	if !ok {
		t.Fatalf("%s: no ConfigMap %s", where, configMapName)
	}
	secDoc, ok := idx["Secret/"+secretName]
	if !ok {
		t.Fatalf("%s: no Secret %s", where, secretName)
	}
	cm := cmDoc.obj.(*corev1.ConfigMap)
	checkConfigMapKeys(t, cmDoc.String(), cm)
	sec := secretData(secDoc.obj.(*corev1.Secret))
	for k := range sec {
		checkEnvName(t, secDoc.String(), k, true)
		if _, dup := cm.Data[k]; dup {
			t.Errorf("%s: %s is in both %s and %s", where, k, configMapName, secretName)
		}
	}
	for _, n := range []string{config.EnvDTAPIKey, config.EnvAPITokens, config.EnvMonitoringPassword} {
		if _, ok := sec[n]; !ok {
			t.Errorf("%s: %s has no %s", secDoc, secretName, n)
		}
	}
	if _, ok := cm.Data[config.EnvShutdownTimeout]; !ok {
		t.Errorf("%s: %s does not set %s: the grace periods depend on it, keep it explicit", cmDoc, configMapName, config.EnvShutdownTimeout)
	}

	wls := workloads(objs)
	roles := map[string]workload{} // viberq subcommand -> its workload
	for _, w := range wls {
		spec := w.template.Spec
		wn := w.doc.String()
		if w.selector.MatchExpressions > 0 {
			t.Errorf("%s: matchExpressions are not supported by this test", wn)
		}
		if !selects(w.selector.MatchLabels, w.template.Labels) {
			t.Errorf("%s: selector %v does not match the pod template labels %v", wn, w.selector.MatchLabels, w.template.Labels)
		}
		for _, o := range wls {
			if o.doc.String() != wn && selects(w.selector.MatchLabels, o.template.Labels) {
				t.Errorf("%s: selector %v also selects the pods of %s", wn, w.selector.MatchLabels, o.doc)
			}
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken should be false (viberq does not call the Kubernetes API)", wn)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
		}
		if ss, ok := w.doc.obj.(*appsv1.StatefulSet); ok {
			for _, v := range ss.Spec.VolumeClaimTemplates {
				volumes[v.Name] = true
			}
			svc, ok := idx["Service/"+ss.Spec.ServiceName]
			if !ok {
				t.Errorf("%s: serviceName %s is no Service", wn, ss.Spec.ServiceName)
			} else if svc.obj.(*corev1.Service).Spec.ClusterIP != corev1.ClusterIPNone {
				t.Errorf("%s: its governing Service %s is not headless (clusterIP: None)", wn, ss.Spec.ServiceName)
			}
		}
		podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot

		for _, c := range spec.Containers {
			cw := fmt.Sprintf("%s container %s", wn, c.Name)
			vq := isViberq(c)
			env := containerEnv(t, cw, idx, c)
			for _, e := range c.Env {
				checkEnvName(t, cw, e.Name, vq)
			}
			for k := range env {
				if strings.HasPrefix(k, config.Prefix) {
					checkEnvName(t, cw, k, vq)
				}
			}
			for _, a := range slices.Concat(c.Command, c.Args) {
				for _, m := range envRef.FindAllStringSubmatch(a, -1) {
					if _, ok := env[m[1]]; !ok {
						t.Errorf("%s: $(%s) in command/args is not an env var of the container", cw, m[1])
					}
				}
			}

			// Ports and probes.
			names := map[string]bool{}
			for _, p := range c.Ports {
				if p.Name != "" && names[p.Name] {
					t.Errorf("%s: port name %s declared twice", cw, p.Name)
				}
				names[p.Name] = true
			}
			for pn, p := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
				if p == nil {
					continue
				}
				name, num, _, ok := probePort(p)
				if !ok {
					continue // exec probe
				}
				if portNumber(c.Ports, name, num) == 0 {
					t.Errorf("%s: %s port %q/%d is not a declared container port", cw, pn, name, num)
				}
			}
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s: needs a liveness and a readiness probe", cw)
			}
			for _, m := range c.VolumeMounts {
				if !volumes[m.Name] {
					t.Errorf("%s: volumeMount %s is no volume of the pod", cw, m.Name)
				}
			}

			// Resources and security.
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", cw, r)
				}
			}
			if _, ok := c.Resources.Limits[corev1.ResourceMemory]; !ok {
				t.Errorf("%s: no memory limit", cw)
			}
			sc := c.SecurityContext
			nonRoot := podNonRoot || (sc != nil && sc.RunAsNonRoot != nil && *sc.RunAsNonRoot)
			switch {
			case !nonRoot:
				t.Errorf("%s: runAsNonRoot is not set", cw)
			case sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
				t.Errorf("%s: readOnlyRootFilesystem is not set", cw)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
				t.Errorf("%s: allowPrivilegeEscalation is not false", cw)
			case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
				t.Errorf("%s: capabilities do not drop ALL", cw)
			}

			if !vq {
				continue
			}
			// A viberq container: its subcommand, settings, ports and grace period.
			sub, err := subcommand(c)
			if err != nil {
				t.Errorf("%s: %v", cw, err)
				continue
			}
			if _, dup := roles[sub]; dup {
				t.Errorf("%s: a second workload runs `viberq %s`", cw, sub)
			}
			roles[sub] = w
			cfg, err := config.Load(mapGetenv(asDeployed(t, cw, env)))
			if err != nil {
				t.Errorf("%s: its environment does not load: %v", cw, err)
				continue
			}
			switch sub {
			case "worker":
				if err := cfg.RequireAPIKey(); err != nil {
					t.Errorf("%s: %v", cw, err)
				}
				checkListener(t, cw, c, "metrics", addrPort(t, cw+" "+config.EnvMetricsAddr, cfg.Worker.MetricsAddr))
			case "api":
				for _, req := range []func() error{cfg.RequireAPITokens, cfg.RequireMonitoringPassword} {
					if err := req(); err != nil {
						t.Errorf("%s: %v", cw, err)
					}
				}
				checkListener(t, cw, c, "http", addrPort(t, cw+" "+config.EnvHTTPAddr, cfg.API.Addr))
			}
			grace := time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
			if spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
			}
			var preStop time.Duration
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
				preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
			}
			if need := cfg.Worker.ShutdownTimeout + preStop + shutdownMargin; grace <= need {
				t.Errorf("%s: terminationGracePeriodSeconds %s is not above %s (%s) + preStop %s + %s",
					cw, grace, config.EnvShutdownTimeout, cfg.Worker.ShutdownTimeout, preStop, shutdownMargin)
			}
		}
	}
	for _, sub := range []string{"worker", "api"} {
		if _, ok := roles[sub]; !ok {
			t.Errorf("%s: no workload runs `viberq %s`", where, sub)
		}
	}

	// Services: select exactly one workload, target one of its ports.
	for _, d := range objs {
		svc, ok := d.obj.(*corev1.Service)
		if !ok {
			continue
		}
		var target *workload
		for i, w := range wls {
			if selects(svc.Spec.Selector, w.template.Labels) {
				if target != nil {
					t.Errorf("%s: selects the pods of both %s and %s", d, target.doc, w.doc)
				}
				target = &wls[i]
			}
		}
		if target == nil {
			t.Errorf("%s: selector %v selects no workload", d, svc.Spec.Selector)
			continue
		}
		for _, p := range svc.Spec.Ports {
			tp := p.TargetPort
			if tp.StrVal == "" && tp.IntVal == 0 {
				tp.IntVal = p.Port
			}
			found := false
			for _, c := range target.template.Spec.Containers {
				if portNumber(c.Ports, tp.StrVal, tp.IntVal) != 0 {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: port %d targetPort %s is no container port of %s", d, p.Port, tp.String(), target.doc)
			}
		}
	}
	if w, ok := roles["api"]; ok {
		if !slices.ContainsFunc(objs, func(d k8sDoc) bool {
			s, ok := d.obj.(*corev1.Service)
			return ok && selects(s.Spec.Selector, w.template.Labels) && slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
				return p.Port == 80 && p.TargetPort.StrVal == "http"
			})
		}) {
			t.Errorf("%s: no Service exposes the API on port 80 -> targetPort http", where)
		}
	}

	// HPA and PDB of the worker.
	worker, hasWorker := roles["worker"]
	var hpas, pdbs int
	for _, d := range objs {
		switch o := d.obj.(type) {
		case *autoscalingv2.HorizontalPodAutoscaler:
			hpas++
			ref := o.Spec.ScaleTargetRef
			if !hasWorker || ref.APIVersion != "apps/v1" || ref.Kind != worker.doc.kind || ref.Name != worker.doc.name {
				t.Errorf("%s: scaleTargetRef %s %s/%s is not the worker Deployment", d, ref.APIVersion, ref.Kind, ref.Name)
				continue
			}
			if o.Spec.MinReplicas == nil || *o.Spec.MinReplicas < 2 || *o.Spec.MinReplicas > o.Spec.MaxReplicas {
				t.Errorf("%s: want 2 <= minReplicas <= maxReplicas, got %v..%d", d, o.Spec.MinReplicas, o.Spec.MaxReplicas)
			}
			if !slices.ContainsFunc(o.Spec.Metrics, func(m autoscalingv2.MetricSpec) bool {
				return m.Resource != nil && m.Resource.Name == corev1.ResourceCPU
			}) {
				t.Errorf("%s: does not scale on CPU", d)
			}
			if dep, ok := worker.doc.obj.(*appsv1.Deployment); ok && dep.Spec.Replicas != nil {
				t.Errorf("%s sets spec.replicas although %s scales it: every apply would reset the count", worker.doc, d)
			}
		case *policyv1.PodDisruptionBudget:
			pdbs++
			if o.Spec.Selector == nil || !hasWorker || !selects(o.Spec.Selector.MatchLabels, worker.template.Labels) {
				t.Errorf("%s: selector does not select the worker pods", d)
				continue
			}
			for _, w := range wls {
				if w.doc.String() != worker.doc.String() && selects(o.Spec.Selector.MatchLabels, w.template.Labels) {
					t.Errorf("%s: selector also selects the pods of %s", d, w.doc)
				}
			}
			if (o.Spec.MaxUnavailable == nil) == (o.Spec.MinAvailable == nil) {
				t.Errorf("%s: set exactly one of maxUnavailable and minAvailable", d)
			}
		}
	}
	if hpas != 1 || pdbs != 1 {
		t.Errorf("%s: want one HorizontalPodAutoscaler and one PodDisruptionBudget (for the worker), got %d and %d", where, hpas, pdbs)
	}

	// Redis: persistent, with AOF, and where VIBERQ_REDIS_URL points (unless external).
	checkRedis(t, where, objs, cm.Data[config.EnvRedisURL])
}

// checkListener checks that container c declares port name with the port number of
// the address the program listens on, and that the HTTP probes reach it on
// /healthz (liveness) and /readyz (readiness).
func checkListener(t *testing.T, where string, c corev1.Container, name string, want int32) {
	t.Helper()
	got := portNumber(c.Ports, name, 0)
	if got == 0 {
		t.Errorf("%s: no container port named %q", where, name)
		return
	}
	if want != 0 && got != want {
		t.Errorf("%s: port %s is %d but the program listens on %d", where, name, got, want)
	}
	for _, pc := range []struct {
		kind, path string
		p          *corev1.Probe
	}{{"livenessProbe", "/healthz", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		if pc.p == nil || pc.p.HTTPGet == nil {
			t.Errorf("%s: %s is not an httpGet probe", where, pc.kind)
			continue
		}
		if n := portNumber(c.Ports, pc.p.HTTPGet.Port.StrVal, pc.p.HTTPGet.Port.IntVal); n != got || pc.p.HTTPGet.Path != pc.path {
			t.Errorf("%s: %s is %s on port %s, want %s on %s (%d)", where, pc.kind, pc.p.HTTPGet.Path, pc.p.HTTPGet.Port.String(), pc.path, name, got)
		}
	}
}

func checkRedis(t *testing.T, where string, objs []k8sDoc, redisURL string) {
	t.Helper()
	var ss *appsv1.StatefulSet
	for _, d := range objs {
		if o, ok := d.obj.(*appsv1.StatefulSet); ok && slices.ContainsFunc(o.Spec.Template.Spec.Containers, func(c corev1.Container) bool {
			return strings.HasPrefix(imageRepo(c.Image), "redis")
		}) {
			ss = o
		}
	}
	if ss == nil {
		t.Errorf("%s: no Redis StatefulSet", where)
		return
	}
	if len(ss.Spec.VolumeClaimTemplates) == 0 {
		t.Errorf("%s: Redis StatefulSet %s has no volumeClaimTemplates", where, ss.Name)
	}
	c := ss.Spec.Template.Spec.Containers[0]
	line := " " + strings.Join(slices.Concat(c.Command, c.Args), " ") + " "
	if !strings.Contains(line, " redis-server ") || !strings.Contains(line, " --appendonly yes ") {
		t.Errorf("%s: Redis does not run `redis-server --appendonly yes`: %q", where, line)
	}
	if !strings.Contains(line, " --maxmemory-policy noeviction ") {
		t.Errorf("%s: Redis must run with --maxmemory-policy noeviction (asynq loses evicted tasks): %q", where, line)
	}
	// VIBERQ_REDIS_URL names the Redis Service and its port.
	u, err := url.Parse(redisURL)
	if err != nil || u.Hostname() == "" {
		t.Errorf("%s: %s %q has no host", where, config.EnvRedisURL, redisURL)
		return
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = config.DefaultRedisPort
	}
	svc, ok := indexObjects(objs)["Service/"+host]
	if !ok {
		t.Errorf("%s: %s points at %s, which is no Service", where, config.EnvRedisURL, host)
		return
	}
	if !selects(svc.obj.(*corev1.Service).Spec.Selector, ss.Spec.Template.Labels) {
		t.Errorf("%s: %s points at Service %s, which does not select Redis", where, config.EnvRedisURL, host)
	}
	if !slices.ContainsFunc(svc.obj.(*corev1.Service).Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		t.Errorf("%s: %s uses port %s, which Service %s does not expose", where, config.EnvRedisURL, port, host)
	}
}

// asDeployed checks that every credential the manifests carry is a placeholder that
// viberq refuses at start (so that applying them unedited cannot run with a known
// secret), and returns env with each replaced by a generated value, as
// deployments/scripts/gen-secrets.sh k8s makes them, for the checks that need a
// loading configuration.
func asDeployed(t *testing.T, where string, env map[string]string) map[string]string {
	t.Helper()
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	for _, s := range config.Describe() {
		v, ok := env[s.Name]
		if !s.Secret || !ok || v == "" {
			continue
		}
		if _, err := config.Load(mapGetenv(map[string]string{s.Name: v})); err == nil {
			t.Errorf("%s: %s holds a value viberq accepts: a published secret; keep a placeholder (refused at start)", where, s.Name)
		}
		out[s.Name] = fmt.Sprintf("%x", sha256.Sum256([]byte("generated-"+s.Name)))
	}
	return out
}
