package faulttest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/tasks"
)

// TestLeakScannerFindsLeaks is the control of the leak scan: it must find the key, its
// Base64 forms and a full phone number, and nothing in masked text.
func TestLeakScannerFindsLeaks(t *testing.T) {
	phones := map[string]bool{"380501234567": true}
	clean := map[string][]byte{"clean": []byte(`{"dest":"380*****4567","id":"3805012345678","n":1380501234567}` + "\nkey [REDACTED]\n")}
	if f, _ := leakFindings(clean, leakSecrets(), phones); len(f) != 0 {
		t.Errorf("false positives: %v", f)
	}
	for name, src := range map[string]string{
		"raw key":          "auth with " + testKey,
		"base64 key":       "Authorization: Basic " + leakSecrets()[1],
		"base64 key+colon": "Authorization: Basic " + leakSecrets()[2],
		"webhook token":    "POST http://127.0.0.1/alert/hook-token-abc123",
		"phone in JSON":    `{"destination_addr":"380501234567"}`,
		"phone in text":    "sent to 380501234567 ok",
	} {
		f, _ := leakFindings(map[string][]byte{name: []byte(src)}, leakSecrets(), phones)
		if len(f) != 1 {
			t.Errorf("%s: findings %v, want exactly one", name, f)
		}
		if len(f) == 1 && (strings.Contains(f[0], testKey) || strings.Contains(f[0], "380501234567")) {
			t.Errorf("%s: the finding repeats the secret: %s", name, f[0])
		}
	}
}

// TestSecurityAPIBinary: `viberq api` (the real binary, on a miniredis) refuses every
// request without credentials, answers oversized bodies 413, hides the callbacks
// behind their token, and does not start without its own credentials.
func TestSecurityAPIBinary(t *testing.T) {
	t.Parallel()
	e := newMiniEnv(t)
	bin := viberqBin(t)
	dir := t.TempDir()
	redisURL := "redis://" + e.mr.Addr() + "/0"

	// Missing credentials: refused at start with the variable named, never served.
	for _, c := range []struct{ name, missing string }{
		{"VIBERQ_API_TOKENS", "VIBERQ_MONITORING_PASSWORD=" + monPass},
		{"VIBERQ_MONITORING_PASSWORD", "VIBERQ_API_TOKENS=" + apiTok},
	} {
		env := baseEnv("VIBERQ_REDIS_URL="+redisURL, "VIBERQ_HTTP_ADDR="+hostPort(freePort(t)), c.missing)
		_, stderr, code := runCmd(t, env, nil, 30*time.Second, bin, "api")
		if code == 0 || !strings.Contains(stderr, c.name) {
			t.Errorf("api without %s: exit %d, stderr %q", c.name, code, stderr)
		}
	}
	// The worker refuses to start without the provider key.
	_, stderr, code := runCmd(t, baseEnv("VIBERQ_REDIS_URL="+redisURL, "VIBERQ_METRICS_ADDR=off"), nil, 30*time.Second, bin, "worker")
	if code == 0 || !strings.Contains(stderr, "VIBERQ_DT_API_KEY") {
		t.Errorf("worker without a key: exit %d, stderr %q", code, stderr)
	}

	port := freePort(t)
	base := "http://" + hostPort(port)
	env := baseEnv("VIBERQ_REDIS_URL="+redisURL, "VIBERQ_LOG_FORMAT=json", "VIBERQ_HTTP_ADDR="+hostPort(port),
		"VIBERQ_API_TOKENS="+apiTok, "VIBERQ_MONITORING_PASSWORD="+monPass, "VIBERQ_MAX_BODY_BYTES=4096",
		"VIBERQ_CALLBACK_URL=https://viberq.example.com/callbacks/status", "VIBERQ_CALLBACK_TOKEN="+cbTok,
		"VIBERQ_DT_API_KEY="+testKey)
	p := startProc(t, dir, "api", env, bin, "api")
	if err := p.waitLog(`"api listening"`, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	req := func(method, path, ctype string, body []byte, hdr map[string]string) int {
		r, _ := http.NewRequest(method, base+path, bytes.NewReader(body))
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Errorf("%s %s: %v", method, path, err)
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	msg := []byte(jsonMsg(`"id":"sec-1"`))
	wrongBasic := map[string]string{"Authorization": "Basic YWRtaW46d3Jvbmc="} // admin:wrong
	for _, c := range []struct {
		name, method, path, ctype string
		body                      []byte
		hdr                       map[string]string
		want                      int
	}{
		{"POST /v1/messages without a token", "POST", "/v1/messages", "application/json", msg, nil, 401},
		{"POST /v1/messages with a wrong token", "POST", "/v1/messages", "application/json", msg, map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 26)}, 401},
		{"GET /v1/messages/{id} without a token", "GET", "/v1/messages/sec-1", "", nil, nil, 401},
		{"GET /monitoring/ without a password", "GET", "/monitoring/", "", nil, nil, 401},
		{"GET /monitoring/api/queues without a password", "GET", "/monitoring/api/queues", "", nil, nil, 401},
		{"GET /monitoring/api/queues with a wrong password", "GET", "/monitoring/api/queues", "", nil, wrongBasic, 401},
		{"POST pause a queue without a password", "POST", "/monitoring/api/queues/critical:pause", "", nil, nil, 401},
		{"DELETE a queue without a password", "DELETE", "/monitoring/api/queues/critical", "", nil, nil, 401},
		{"status callback without the token", "POST", "/callbacks/status", "application/json", []byte(`{"message_id":1,"status":1}`), nil, 404},
		{"status callback with a wrong token", "POST", "/callbacks/status/" + strings.Repeat("y", 26), "application/json", []byte(`{"message_id":1,"status":1}`), nil, 404},
		{"oversized message", "POST", "/v1/messages", "application/json", append(append([]byte(`{"text":"`), bytes.Repeat([]byte("x"), 5000)...), `"}`...), map[string]string{"Authorization": "Bearer " + apiTok}, 413},
		{"oversized callback", "POST", "/callbacks/status/" + cbTok, "application/json", append(append([]byte(`{"message_id":1,"x":"`), bytes.Repeat([]byte("x"), 5000)...), `"}`...), nil, 413},
		{"GET /monitoring/api/queues with the password", "GET", "/monitoring/api/queues", "", nil, map[string]string{"Authorization": "Basic " + basicToken("admin", monPass)}, 200},
		{"POST /v1/messages with the token", "POST", "/v1/messages", "application/json", msg, map[string]string{"Authorization": "Bearer " + apiTok}, 202},
	} {
		if got := req(c.method, c.path, c.ctype, c.body, c.hdr); got != c.want {
			t.Errorf("%s: HTTP %d, want %d", c.name, got, c.want)
		}
	}
	if _, err := p.stop(20 * time.Second); err != nil {
		t.Errorf("api stop: %v", err)
	}
	scanSources(t, map[string][]byte{"api log": []byte(p.log())},
		[]string{apiTok, monPass, cbTok, testKey, basicToken("admin", monPass)}, map[string]bool{badPhone: true})
}

func basicToken(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// quickRun enqueues n messages through a harness whose Redis and workers are set up,
// against an instant simulator, and checks that all are delivered.
func quickRun(h *harness, n int, code int) {
	h.t.Helper()
	sim := startSimProc(h.t, h.dir, testKey, "instant")
	h.track(sim.p)
	h.sim = sim
	h.setSpecs(genSpecs(h.name, code, n, 30*time.Minute))
	h.startWorkers(2)
	h.enqueue(h.specs)
	h.waitFinal(2 * time.Minute)
}

// TestSecurityRedisPassword: Redis with requirepass works end to end (enqueue →
// workers → delivered); a wrong password stops the worker at start with a line that
// does not show it; the password appears in no log.
func TestSecurityRedisPassword(t *testing.T) {
	needRedis(t)
	needRedisServer(t)
	t.Parallel()
	const pass = "redis-pass-Hk29sQ0x"
	logs := logDir(t, "redis-password")
	rs := startRedisServer(t, logs, false, "--requirepass", pass)
	url := "redis://:" + pass + "@" + rs.addr() + "/0"
	h := newHarness(t, "redis-password", url)
	h.dir = logs
	h.track(rs.p)
	h.secrets = []string{pass}
	f := Figures{Title: "Redis with a password", Fault: "redis-server --requirepass; 2 workers, instant simulator"}
	defer h.finish(&f)

	// A wrong password: the worker stops at start and says why, without the password.
	bad := baseEnv("VIBERQ_REDIS_URL=redis://:wrong-"+pass+"@"+rs.addr()+"/0", "VIBERQ_DT_API_KEY="+testKey, "VIBERQ_METRICS_ADDR=off")
	_, stderr, code := runCmd(t, bad, nil, 30*time.Second, viberqBin(t), "worker")
	if code == 0 || !strings.Contains(stderr, "redis") {
		t.Errorf("worker with a wrong Redis password: exit %d, stderr %q", code, stderr)
	}
	if strings.Contains(stderr, pass) {
		t.Errorf("the wrong password is printed: %s", stderr)
	}
	// The password from its own variable instead of the URL.
	h.env = []string{"VIBERQ_REDIS_URL=redis://" + rs.addr() + "/0", "VIBERQ_REDIS_PASSWORD=" + pass}
	quickRun(h, pick(50, 500), 21)
	h.conclude(&f, verifyOpts{allowed: []tasks.State{tasks.StateDelivered}, maxUnknown: 0}, map[string][]byte{"wrong-password stderr": []byte(stderr)})
}

// TestSecurityRedisTLS: Redis over TLS (rediss://, a private CA given by
// VIBERQ_REDIS_TLS_CA_FILE, plus a password) works end to end; without the CA the
// worker refuses the server's certificate at start.
func TestSecurityRedisTLS(t *testing.T) {
	needRedis(t)
	needRedisServer(t)
	t.Parallel()
	const pass = "tls-pass-Jd83nB1q"
	logs := logDir(t, "redis-tls")
	certDir := t.TempDir()
	caPEM, certFile, keyFile, caFile := makeCerts(t, certDir)
	rs := startRedisServer(t, logs, true, "--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no", "--requirepass", pass)
	url := "rediss://:" + pass + "@" + rs.addr() + "/0"
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "127.0.0.1"}
	h := newHarnessOpt(t, "redis-tls", url, opt)
	h.dir = logs
	h.track(rs.p)
	h.secrets = []string{pass}
	f := Figures{Title: "Redis over TLS (rediss://, private CA, password)", Fault: "redis-server --tls-port with a test CA; 2 workers, instant simulator"}
	defer h.finish(&f)
	if err := waitPing(h.rdb, 10*time.Second); err != nil {
		t.Fatalf("TLS ping from the test: %v", err)
	}

	// Without the CA file the server's certificate is refused, at start.
	noCA := baseEnv("VIBERQ_REDIS_URL="+url, "VIBERQ_DT_API_KEY="+testKey, "VIBERQ_METRICS_ADDR=off")
	_, stderr, code := runCmd(t, noCA, nil, 30*time.Second, viberqBin(t), "worker")
	if code == 0 || !strings.Contains(stderr, "certificate") {
		t.Errorf("worker without the CA: exit %d, stderr %q", code, stderr)
	}
	// Plain TCP to the TLS port fails too.
	plain := baseEnv("VIBERQ_REDIS_URL=redis://:"+pass+"@"+rs.addr()+"/0", "VIBERQ_DT_API_KEY="+testKey, "VIBERQ_METRICS_ADDR=off")
	if _, stderr2, code := runCmd(t, plain, nil, 30*time.Second, viberqBin(t), "worker"); code == 0 {
		t.Errorf("worker over plain TCP to the TLS port started: %q", stderr2)
	}

	h.env = []string{"VIBERQ_REDIS_TLS_CA_FILE=" + caFile}
	quickRun(h, pick(50, 500), 22)
	// The CLI over TLS too.
	cli := baseEnv("VIBERQ_REDIS_URL="+url, "VIBERQ_REDIS_TLS_CA_FILE="+caFile)
	out, errOut, code := runCmd(t, cli, nil, 30*time.Second, viberqBin(t), "queues", "--json")
	if code != 0 || !strings.Contains(out, `"queue":"critical"`) {
		t.Errorf("viberq queues over TLS: exit %d\n%s%s", code, out, errOut)
	}
	h.conclude(&f, verifyOpts{allowed: []tasks.State{tasks.StateDelivered}, maxUnknown: 0},
		map[string][]byte{"no-CA stderr": []byte(stderr), "queues output": []byte(out + errOut)})
}

// makeCerts writes a test CA and a server certificate for 127.0.0.1 signed by it.
func makeCerts(t *testing.T, dir string) (caPEM []byte, certFile, keyFile, caFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "viberq test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	caFile = filepath.Join(dir, "ca.pem")
	certFile = filepath.Join(dir, "server.pem")
	keyFile = filepath.Join(dir, "server-key.pem")
	for path, b := range map[string][]byte{
		caFile:   caPEM,
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return caPEM, certFile, keyFile, caFile
}
