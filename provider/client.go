package provider

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// DefaultBaseURL is the provider's API base (vendor notes: endpoints).
const DefaultBaseURL = "https://web.it-decision.com/v1/api"

// Defaults of the Client.
const (
	// DefaultTimeout bounds one request. It is the vendor's own sample timeout
	// (CURLOPT_TIMEOUT 30 in the page's PHP example). A shorter one turns slow answers
	// into ambiguous sends: a request written and then abandoned may have been
	// accepted, so the message ends "unknown" instead of being followed to its end
	// (RELIABILITY.md, "The provider call timeout": with 15 s hangs in the chaos
	// profile, 135 unknown at 10 s, 94 at 30 s). 30 s still fits the task timeout (1 m)
	// with room for the limiter and the record writes. This package owns the value;
	// config mirrors it.
	DefaultTimeout   = 30 * time.Second
	DefaultUserAgent = "viberq"
	// MaxResponseBytes caps how much of a response body the client reads. The
	// provider's answers are a few dozen bytes; anything longer is not one of them.
	MaxResponseBytes = 64 << 10
)

// API paths under the base URL (vendor notes: endpoints).
const (
	PathSend   = "/send-viber"
	PathStatus = "/receive-viber"
)

// Client calls the DecisionTelecom Viber + SMS API. It is safe for concurrent use.
// It never retries and never logs: the queue is the retry loop.
//
// Formatting a Client with any fmt verb, or its String and GoString, shows the base
// URL only, never the access key.
type Client struct {
	base      *url.URL // without userinfo and fragment; a pointer so that printing a Client value shows no query
	hc        *http.Client
	timeout   time.Duration
	userAgent string
	encoded   bool
	// cred returns the credential. It is a func so that no fmt verb, not even a bad
	// one on a struct holding a Client value, can print the key: fmt prints a func as
	// its address.
	cred func() *credential
	now  func() time.Time
}

// credential holds the Authorization header value and every form of the key that must
// be redacted from vendor text.
type credential struct {
	header  string
	secrets []string
}

// String hides the credential.
func (*credential) String() string { return "[REDACTED]" }

// GoString hides the credential.
func (*credential) GoString() string { return "[REDACTED]" }

// redact replaces every occurrence of a secret in s by [REDACTED].
func (c *credential) redact(s string) string {
	if c == nil {
		return s
	}
	for _, sec := range c.secrets {
		if sec != "" && strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	return s
}

// Option configures a Client in New. Options validate their argument and make New
// fail on a bad one.
type Option func(*Client) error

// WithHTTPClient makes the client send through hc (proxy, TLS, transport tuning).
// hc's own Timeout, if any, applies in addition to WithTimeout. The default is a
// client on a clone of http.DefaultTransport that does not follow redirects (a
// redirected POST would lose its body).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) error {
		if hc == nil {
			return errors.New("provider: WithHTTPClient: nil client")
		}
		c.hc = hc
		return nil
	}
}

// WithTimeout bounds every request, from dial to the last body byte (default
// DefaultTimeout, 30s).
// 0 disables the client's own timeout, leaving only the context's deadline.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) error {
		if d < 0 {
			return fmt.Errorf("provider: WithTimeout: negative timeout %s", d)
		}
		c.timeout = d
		return nil
	}
}

// WithUserAgent sets the User-Agent header (default "viberq").
func WithUserAgent(ua string) Option {
	return func(c *Client) error {
		if ua == "" || strings.ContainsAny(ua, "\r\n") {
			return errors.New("provider: WithUserAgent: empty or multi-line user agent")
		}
		c.userAgent = ua
		return nil
	}
}

// WithEncodedKey declares that the access key is already Base64-encoded and goes into
// the header as given: "Authorization: Basic <key>" ("raw" mode, vendor notes: auth). Without it the
// header is "Basic base64(key)", as all official SDKs send it.
func WithEncodedKey() Option {
	return func(c *Client) error {
		c.encoded = true
		return nil
	}
}

// New returns a Client for the API at baseURL ("" means DefaultBaseURL), e.g.
// "https://web.it-decision.com/v1/api"; requests go to baseURL + "/send-viber" and
// baseURL + "/receive-viber". The base URL must be absolute http or https; userinfo
// in it is dropped (the access key is the only credential). The access key must be
// non-empty and have no surrounding whitespace or control characters. Errors never
// contain the key.
func New(baseURL, accessKey string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		return nil, errors.New("provider: base URL must be an absolute http or https URL")
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	c := &Client{
		base:      u,
		timeout:   DefaultTimeout,
		userAgent: DefaultUserAgent,
		now:       time.Now,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(c); err != nil {
			return nil, err
		}
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		c.hc = &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	cred, err := newCredential(accessKey, c.encoded)
	if err != nil {
		return nil, err
	}
	c.cred = func() *credential { return cred }
	return c, nil
}

func newCredential(key string, encoded bool) (*credential, error) {
	if key == "" {
		return nil, errors.New("provider: empty access key")
	}
	if strings.TrimSpace(key) != key {
		return nil, errors.New("provider: access key has leading or trailing whitespace")
	}
	for _, r := range key {
		if r < 0x20 || r == 0x7f {
			return nil, errors.New("provider: access key contains control characters")
		}
	}
	cr := &credential{}
	if encoded {
		if strings.ContainsAny(key, " \t") {
			return nil, errors.New("provider: encoded access key contains spaces")
		}
		cr.header = "Basic " + key
		cr.secrets = append(cr.secrets, key)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if raw, err := enc.DecodeString(key); err == nil && len(raw) > 0 {
				s := string(raw)
				cr.secrets = append(cr.secrets, s, strings.TrimSuffix(s, ":"))
				break
			}
		}
	} else {
		enc := base64.StdEncoding.EncodeToString([]byte(key))
		cr.header = "Basic " + enc
		cr.secrets = append(cr.secrets, key, enc, base64.StdEncoding.EncodeToString([]byte(key+":")),
			base64.RawStdEncoding.EncodeToString([]byte(key)), base64.URLEncoding.EncodeToString([]byte(key)))
	}
	// Longest first, so a secret containing another is replaced whole.
	for i := 1; i < len(cr.secrets); i++ {
		for j := i; j > 0 && len(cr.secrets[j]) > len(cr.secrets[j-1]); j-- {
			cr.secrets[j], cr.secrets[j-1] = cr.secrets[j-1], cr.secrets[j]
		}
	}
	return cr, nil
}

// BaseURL returns the base URL the client sends to (without userinfo).
func (c *Client) BaseURL() string { return c.base.String() }

// String returns "provider.Client{base: <url>}"; never the key. The printing methods
// have value receivers so that a Client value prints the same way as a *Client.
func (c Client) String() string {
	if c.base == nil || c.cred == nil {
		return "provider.Client{}"
	}
	return "provider.Client{base: " + c.cred().redact(redactURL(c.base)) + "}"
}

// GoString is String: %#v never shows the key.
func (c Client) GoString() string { return c.String() }

// Format makes every fmt verb print String.
func (c Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// Send validates m and sends it: POST {base}/send-viber with m.WireJSON (vendor notes: fields and limits).
// A validation failure returns the *ValidationError and sends nothing. On success the
// result carries the provider's message_id (number or numeric string, vendor notes: send answer). Errors are
// the typed errors of this package; see MaybeSent for the ambiguous ones.
func (c *Client) Send(ctx context.Context, m Message) (SendResult, error) {
	if err := m.Validate(); err != nil {
		return SendResult{}, err
	}
	body, err := m.WireJSON()
	if err != nil {
		return SendResult{}, err
	}
	var d sendDecoder
	if err := c.do(ctx, OpSend, PathSend, body, &d); err != nil {
		return SendResult{}, err
	}
	return d.res, nil
}

// Status queries a message's state: POST {base}/receive-viber with {"message_id":N}
// (vendor notes: endpoints; messages of the last 5 days only). The SMS fields are nil when the
// provider does not report them.
func (c *Client) Status(ctx context.Context, id MessageID) (StatusResult, error) {
	if id <= 0 {
		return StatusResult{}, fmt.Errorf("%s: message id must be positive, got %d", OpStatus, int64(id))
	}
	body, _ := json.Marshal(struct {
		MessageID MessageID `json:"message_id"`
	}{id})
	d := statusDecoder{want: id}
	if err := c.do(ctx, OpStatus, PathStatus, body, &d); err != nil {
		return StatusResult{}, err
	}
	return d.res, nil
}

// do is the one funnel for every request: it sends body, reads the response through
// a size cap, parses it on every HTTP status (vendor notes: errors), maps errors to the typed errors and
// decodes a success into v. Endpoint methods never look at status codes.
func (c *Client) do(ctx context.Context, op, path string, body []byte, v responseDecoder) error {
	u := *c.base
	u.Path = c.base.Path + path
	cred := c.cred()
	shownURL := cred.redact(redactURL(&u))
	if ctx == nil {
		return &TransportError{Op: op, URL: shownURL, Err: errors.New("nil context")}
	}
	if err := ctx.Err(); err != nil {
		return &TransportError{Op: op, URL: shownURL, Err: err}
	}
	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.timeout > 0 {
		reqCtx, cancel = context.WithTimeoutCause(ctx, c.timeout, errClientTimeout)
	}
	defer cancel()

	// Progress of the exchange, reported by transports that honour httptrace (the
	// standard one does). The callbacks run on the transport's goroutines and may lag
	// behind the error, so the checks below only ever conclude "not sent" from a
	// positive sign: no connection was obtained, or the write itself failed.
	var traced, gotConn, writeFailed atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn: func(string) { traced.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { gotConn.Store(true) },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err != nil {
				writeFailed.Store(true)
			}
		},
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(reqCtx, trace), http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return &TransportError{Op: op, URL: shownURL, Err: errors.New("cannot build request")}
	}
	req.Header.Set("Authorization", cred.header)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)

	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, which may carry a query
		}
		// Not sent: the dial failed (refused, DNS), no connection was obtained (e.g.
		// the TLS handshake failed), or writing the request failed (the provider
		// cannot act on a request body it did not receive in full: Content-Length).
		// Anything else after a connection, including a failure whose write result
		// has not been reported yet, may have been sent.
		maybe := !isDialError(err) && !(traced.Load() && !gotConn.Load()) && !writeFailed.Load()
		return &TransportError{Op: op, URL: shownURL, MaybeSent: maybe, Err: c.ctxErr(ctx, reqCtx, err)}
	}
	defer resp.Body.Close()

	data, readErr := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if readErr != nil && (reqCtx.Err() != nil || (resp.StatusCode >= 200 && resp.StatusCode <= 299)) {
		// The answer broke off (timeout, reset, EOF) after the request was written. On a
		// non-2xx status the status alone still classifies it (decodeResponse).
		return &TransportError{Op: op, URL: shownURL, MaybeSent: true, Err: c.ctxErr(ctx, reqCtx, readErr)}
	}
	tooLarge := len(data) > MaxResponseBytes
	if tooLarge {
		data = data[:MaxResponseBytes]
	}
	r := rawResponse{
		op: op, url: shownURL, status: resp.StatusCode, header: resp.Header,
		body: data, tooLarge: tooLarge, readErr: readErr,
	}
	return decodeResponse(r, cred, c.now(), v)
}

// ctxErr makes sure a failure caused by the context wraps the context's error.
func (c *Client) ctxErr(parent, reqCtx context.Context, err error) error {
	if parent.Err() != nil {
		if errors.Is(err, parent.Err()) {
			return c.redactErr(err)
		}
		return fmt.Errorf("%w (%v)", parent.Err(), c.redactErr(err))
	}
	if reqCtx.Err() != nil && errors.Is(context.Cause(reqCtx), errClientTimeout) {
		return fmt.Errorf("client timeout after %s: %w", c.timeout, context.DeadlineExceeded)
	}
	return c.redactErr(err)
}

// redactErr hides the access key should an underlying error ever quote it (e.g. a
// custom RoundTripper echoing headers).
func (c *Client) redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := c.cred().redact(msg)
	if red == msg {
		return err
	}
	re := &redactedError{msg: red}
	for _, target := range []error{context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, target) {
			re.err = target
		}
	}
	var ne net.Error
	re.timeout = errors.As(err, &ne) && ne.Timeout()
	return re
}

// redactedError replaces an error whose text quoted a secret. It does not unwrap to
// the original (whose text still holds the secret), only to a context error it wrapped.
type redactedError struct {
	msg     string
	err     error
	timeout bool
}

// Error returns the redacted text.
func (e *redactedError) Error() string { return e.msg }

// Unwrap returns the context error the original wrapped, if any.
func (e *redactedError) Unwrap() error { return e.err }

// Timeout reports whether the original was a net timeout (net.Error).
func (e *redactedError) Timeout() bool { return e.timeout }

// Temporary is required by net.Error; always false.
func (e *redactedError) Temporary() bool { return false }

// isDialError reports whether err happened before any byte of the request was sent:
// a dial failure (refused, unreachable, DNS).
func isDialError(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		return opErr.Op == "dial"
	}
	return false
}

// redactURL returns u without userinfo, query and fragment.
func redactURL(u *url.URL) string {
	v := *u
	v.User = nil
	v.RawQuery, v.ForceQuery = "", false
	v.Fragment, v.RawFragment = "", ""
	return v.String()
}
