package dtsim

import (
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/viberq/viberq/provider"
)

// Profile names a preset Config (see ProfileConfig).
type Profile string

// Profiles.
const (
	// ProfileInstant delivers every message via Viber at once: no delays, no faults, no
	// rate limit, unlimited balance. For benchmarks and fast tests.
	ProfileInstant Profile = "instant"
	// ProfileRealistic delivers on a seconds scale (1–6 s), ~10% undelivered in Viber,
	// then an SMS leg for Viber + SMS (2–5 s, mostly delivered, ~3% expired, ~3%
	// undeliverable); a 100 rps send limit with Retry-After.
	ProfileRealistic Profile = "realistic"
	// ProfileChaos is realistic plus every fault at a modest share, 429 bursts, Viber
	// failures spread over statuses 2, 3 and 4, and X-Rate-Limit-* headers instead of
	// Retry-After.
	ProfileChaos Profile = "chaos"
)

// ErrorStyle selects how vendor errors travel (vendor notes: errors).
type ErrorStyle string

// Error styles.
const (
	// ErrorStyleStatus sends the error JSON with the matching HTTP status (429, 400, 500, 402).
	ErrorStyleStatus ErrorStyle = "status"
	// ErrorStyleBody200 sends the error JSON with HTTP 200, as the SDK tests do.
	ErrorStyleBody200 ErrorStyle = "body200"
)

// Shape selects whose answers the simulator gives where the vendor's page and the
// official SDKs differ.
type Shape string

// Shapes.
const (
	// ShapeSDK answers as the SDKs expect: error bodies {"name","message","code",
	// "status"} with the SDK READMEs' English texts; Viber status 0 (sent) before 5;
	// an SMS leg reporting 6 (accepted) and 1 (enroute) before its final 2, 3 or 5.
	ShapeSDK Shape = "sdk"
	// ShapeDoc answers exactly as the page ("Ошибки", "Статусы сообщений Вайбер",
	// "Статусы SMS сообщений") lists: error bodies {"message","code","status"} without
	// name, in the page's words; Viber statuses 5, then 1, 2, 3 or 4 (no 0); an SMS leg
	// reporting only its sms_message_id until final, then 3, 5 or SMSDeliveredCode (the
	// page lists no "delivered").
	ShapeDoc Shape = "doc"
)

// IDStyle selects how message ids are written (vendor notes: send answer).
type IDStyle string

// ID styles.
const (
	IDNumber IDStyle = "number" // {"message_id":429}
	IDString IDStyle = "string" // {"message_id":"429"}
)

// Unlimited is the Balance that never runs out.
const Unlimited int64 = -1

// Defaults used when the matching Config field is zero.
const (
	DefaultFirstMessageID      int64 = 100000
	DefaultFirstSMSMessageID   int64 = 500000000
	DefaultMaxMessages               = 1_000_000
	DefaultRecordRequests            = 256
	DefaultMaxBody                   = 64 << 10
	DefaultValidity                  = 24 * time.Hour // vendor notes: TTL: "up to 1 day" when absent
	DefaultStatusWindow              = 5 * 24 * time.Hour
	DefaultTimeoutHang               = 35 * time.Second // longer than the client's 30 s
	DefaultSMSDeliveredCode          = 2
	DefaultHugeBodySize              = 4 << 20
	DefaultCallbackWorkers           = 8
	DefaultCallbackTimeout           = 5 * time.Second
	DefaultCallbackRetryDelay        = time.Second
	DefaultMaxPendingCallbacks       = 100_000
)

// Faults holds the fault-injection shares (each 0..1, the share of requests that get
// the fault). One uniform draw per request picks at most one fault, in the order of the
// fields; shares summing above 1 are cut at 1.
type Faults struct {
	// ServerError answers 500 / code 2 before accepting: nothing was sent.
	ServerError float64 `json:"server_error"`
	// ServerErrorAfterAccept accepts the send (ledger, balance, delivery plan) and then
	// answers 500 / code 2: the duplicate hazard. Send only; on a status query it acts
	// as ServerError.
	ServerErrorAfterAccept float64 `json:"server_error_after_accept"`
	// Slow delays the answer by a uniform draw in [SlowMin, SlowMax], then answers
	// normally. A client that gives up during the delay gets nothing accepted.
	Slow    float64       `json:"slow"`
	SlowMin time.Duration `json:"slow_min"`
	SlowMax time.Duration `json:"slow_max"`
	// Timeout hangs for TimeoutHang (default 35 s, longer than the client's 30 s), or
	// until the client goes away. A share TimeoutAccept of timed-out sends is accepted
	// when the request arrives (the answer is lost, the message goes out); after the
	// hang an accepted send answers normally and a not-accepted one 504 with an HTML body.
	Timeout       float64       `json:"timeout"`
	TimeoutHang   time.Duration `json:"timeout_hang"`
	TimeoutAccept float64       `json:"timeout_accept"`
	// DropBefore closes the connection (TCP reset) without accepting; DropAfter
	// accepts the send first.
	DropBefore float64 `json:"drop_before"`
	DropAfter  float64 `json:"drop_after"`
	// Garbage answers HTTP 200 with a broken body, one of GarbageKinds (all kinds when
	// empty) chosen uniformly. A send is accepted first (the answer is mangled, not the
	// work). GarbageHuge bodies are HugeBodySize bytes (default 4 MiB).
	Garbage      float64       `json:"garbage"`
	GarbageKinds []GarbageKind `json:"garbage_kinds,omitempty"`
	HugeBodySize int           `json:"huge_body_size"`
	// RateLimited answers 429 / code 0 at random, on top of the token bucket.
	RateLimited float64 `json:"rate_limited"`
}

// GarbageKind is one kind of broken answer.
type GarbageKind string

// Garbage kinds.
const (
	GarbageNonJSON    GarbageKind = "nonjson"    // an HTML page
	GarbageTruncated  GarbageKind = "truncated"  // {"message_id":12
	GarbageWrongTypes GarbageKind = "wrongtypes" // {"message_id":true} / {"message_id":"x","status":"delivered"}
	GarbageHuge       GarbageKind = "huge"       // valid JSON padded to HugeBodySize
)

var allGarbage = []GarbageKind{GarbageNonJSON, GarbageTruncated, GarbageWrongTypes, GarbageHuge}

// Config configures a Sim. The zero value (plus a Key and Balance) behaves like
// ProfileInstant: zero delays deliver at once, zero shares inject nothing, a zero rate
// is unlimited. Note that Balance 0 means an empty balance: use Unlimited (-1).
type Config struct {
	// Key is the access key clients must present (vendor notes: auth): accepted as
	// "Basic base64(Key)" and "Basic base64(Key+":")". With EncodedKey, Key is already
	// Base64 and the header token must equal it (or its decoded value plus ":", encoded).
	// An empty Key fails every request with 401.
	Key        string `json:"-"`
	EncodedKey bool   `json:"encoded_key"`

	Profile    Profile    `json:"profile,omitempty"` // informative; set by ProfileConfig
	ErrorStyle ErrorStyle `json:"error_style"`       // default ErrorStyleStatus
	IDStyle    IDStyle    `json:"id_style"`          // default IDNumber
	Shape      Shape      `json:"shape"`             // default ShapeSDK
	// SMSDeliveredCode is the sms_message_status of a delivered SMS leg (default 2, the
	// SDKs' code; the page lists none). Set it to an unlisted code to check that a
	// client does not end such a message.
	SMSDeliveredCode int `json:"sms_delivered_code"`

	// FirstMessageID is the first message_id handed out (default 100000); ids grow by
	// one per accepted send and survive Reset. SMS leg ids start at FirstSMSMessageID
	// (default 500000000).
	FirstMessageID    int64 `json:"first_message_id"`
	FirstSMSMessageID int64 `json:"first_sms_message_id"`

	// RatePerSec and Burst are the token bucket for send-viber (0 = unlimited; Burst
	// defaults to max(1, ceil(RatePerSec))). StatusRatePerSec and StatusBurst are a
	// separate bucket for receive-viber. A limited request answers 429 / code 0.
	RatePerSec       float64 `json:"rate_per_sec"`
	Burst            int     `json:"burst"`
	StatusRatePerSec float64 `json:"status_rate_per_sec"`
	StatusBurst      int     `json:"status_burst"`
	// RetryAfter adds "Retry-After: <seconds>" to 429 answers; RateLimitHeaders adds
	// Yii2's X-Rate-Limit-Limit, -Remaining and -Reset (seconds to wait).
	RetryAfter       bool `json:"retry_after"`
	RateLimitHeaders bool `json:"rate_limit_headers"`
	// ThrottleEvery and ThrottleFor make 429 bursts: during the last ThrottleFor of
	// every ThrottleEvery period (counted from New) every send and status query is
	// rate limited.
	ThrottleEvery time.Duration `json:"throttle_every"`
	ThrottleFor   time.Duration `json:"throttle_for"`

	// Balance is the number of sends left; each accepted send takes one, and at 0 a
	// send answers 402 / code 3. Unlimited (-1, any negative) never runs out.
	Balance int64 `json:"balance"`

	// Delivery timeline, offsets from the accept time. A message is "sent" (0) until
	// PendingAfter, "pending" (5) until its Viber outcome, drawn uniformly in
	// [DeliverMin, DeliverMax]. A share ViberFailShare ends in a failure status picked
	// uniformly from ViberFailCodes (default {4}); a delivery drawn past the message's
	// validity_period (Validity when absent, default 1 day) becomes 4 at the deadline.
	PendingAfter   time.Duration          `json:"pending_after"`
	DeliverMin     time.Duration          `json:"deliver_min"`
	DeliverMax     time.Duration          `json:"deliver_max"`
	ViberFailShare float64                `json:"viber_fail_share"`
	ViberFailCodes []provider.ViberStatus `json:"viber_fail_codes,omitempty"`
	Validity       time.Duration          `json:"validity"`

	// SMS leg of a Viber + SMS message (one with text_sms) whose Viber leg failed:
	// sms_message_id appears at the Viber failure with status 6 (accepted), turns 1
	// (enroute) halfway, and ends after a uniform draw in [SMSDelayMin, SMSDelayMax]:
	// 3 (expired) with share SMSExpiredShare, 5 (undeliverable) with share
	// SMSUndeliverableShare, otherwise 2 (delivered).
	SMSDelayMin           time.Duration `json:"sms_delay_min"`
	SMSDelayMax           time.Duration `json:"sms_delay_max"`
	SMSExpiredShare       float64       `json:"sms_expired_share"`
	SMSUndeliverableShare float64       `json:"sms_undeliverable_share"`
	// SMSFieldsNull writes "sms_message_id":null,"sms_message_status":null for a Viber
	// + SMS message that has no SMS leg (yet); by default the fields are omitted.
	SMSFieldsNull bool `json:"sms_fields_null"`

	// StatusWindow is how long a message can be queried (default 5 days, vendor notes: endpoints).
	StatusWindow time.Duration `json:"status_window"`

	// Callbacks: a message with callback_url gets a POST of
	// {"message_id":N,"status":S[,"sms_message_id":M,"sms_message_status":T]} at its
	// final state, and at every intermediate change too with CallbackIntermediate.
	// Failed posts (non-2xx or transport error) are retried CallbackRetries times,
	// CallbackRetryDelay doubling. At most MaxPendingCallbacks posts wait; more are
	// dropped and counted.
	CallbackIntermediate bool          `json:"callback_intermediate"`
	CallbackRetries      int           `json:"callback_retries"`
	CallbackRetryDelay   time.Duration `json:"callback_retry_delay"`
	CallbackWorkers      int           `json:"callback_workers"`
	CallbackTimeout      time.Duration `json:"callback_timeout"`
	MaxPendingCallbacks  int           `json:"max_pending_callbacks"`

	// Two-way replies: a delivered 206/208 message gets, with share ReplyShare, a user
	// reply POSTed to ReplyURL (vendor notes: two-way replies; tracking_data "tracking_id:<id>")
	// after a uniform draw in [ReplyDelayMin, ReplyDelayMax] from its delivery.
	ReplyURL      string        `json:"reply_url,omitempty"`
	ReplyShare    float64       `json:"reply_share"`
	ReplyDelayMin time.Duration `json:"reply_delay_min"`
	ReplyDelayMax time.Duration `json:"reply_delay_max"`

	Faults Faults `json:"faults"`

	// MaxMessages bounds the ledger and the status store (default 1e6; about 150 bytes
	// per message, so ~150 MB when full); older messages are forgotten, and duplicates
	// are detected within this window.
	MaxMessages int `json:"max_messages"`
	// RecordRequests is how many recent requests Requests keeps (default 256; negative
	// keeps none). MaxBody caps a request body (default 64 KiB).
	RecordRequests int   `json:"record_requests"`
	MaxBody        int64 `json:"max_body"`

	// Seed makes every draw reproducible: a message's plan depends only on Seed and its
	// id; fault draws follow the order of requests.
	Seed int64 `json:"seed"`
	// Now is the clock (default time.Now). Waiting (slow, timeout, callback timers)
	// uses real time; what is due is decided on this clock.
	Now func() time.Time `json:"-"`
	// HTTPClient posts callbacks and replies (default: a client with CallbackTimeout).
	HTTPClient Doer `json:"-"`
	// Logf receives the simulator's notes: each silent case of the vendor's page it
	// accepted, once per kind (default log.Printf; dtsimtest.NewServer uses tb.Logf).
	Logf func(format string, args ...any) `json:"-"`
}

// Doer sends an HTTP request; *http.Client is one.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// ProfileConfig returns the preset for p with an unlimited balance and no key: set
// Key (and anything else) before New.
func ProfileConfig(p Profile) (Config, error) {
	c := Config{
		Profile:    p,
		ErrorStyle: ErrorStyleStatus,
		IDStyle:    IDNumber,
		Shape:      ShapeSDK,
		Balance:    Unlimited,
	}
	switch p {
	case ProfileInstant:
		return c, nil
	case ProfileRealistic, ProfileChaos:
		c.RatePerSec, c.Burst = 100, 100
		c.RetryAfter = true
		c.PendingAfter = 500 * time.Millisecond
		c.DeliverMin, c.DeliverMax = time.Second, 6*time.Second
		c.ViberFailShare = 0.10
		c.SMSDelayMin, c.SMSDelayMax = 2*time.Second, 5*time.Second
		c.SMSExpiredShare, c.SMSUndeliverableShare = 0.03, 0.03
		c.CallbackRetries = 3
		c.ReplyShare = 0.2
		c.ReplyDelayMin, c.ReplyDelayMax = time.Second, 5*time.Second
		if p == ProfileRealistic {
			return c, nil
		}
		c.RatePerSec, c.Burst = 50, 20
		c.RetryAfter, c.RateLimitHeaders = false, true
		c.ThrottleEvery, c.ThrottleFor = 30*time.Second, 3*time.Second
		c.ViberFailShare = 0.15
		c.ViberFailCodes = []provider.ViberStatus{provider.ViberUndelivered, provider.ViberUndelivered, provider.ViberError, provider.ViberRejected}
		c.SMSExpiredShare, c.SMSUndeliverableShare = 0.05, 0.05
		c.Faults = Faults{
			ServerError:            0.02,
			ServerErrorAfterAccept: 0.01,
			Slow:                   0.05,
			SlowMin:                500 * time.Millisecond,
			SlowMax:                3 * time.Second,
			Timeout:                0.01,
			TimeoutAccept:          0.5,
			DropBefore:             0.01,
			DropAfter:              0.01,
			Garbage:                0.01,
			RateLimited:            0.02,
		}
		return c, nil
	}
	return Config{}, fmt.Errorf("dtsim: unknown profile %q (want instant, realistic or chaos)", p)
}

// Validate reports the first setting New would have to correct or ignore.
func (c Config) Validate() error {
	var errs []error
	if c.Key == "" {
		errs = append(errs, errors.New("key is required"))
	}
	switch c.ErrorStyle {
	case "", ErrorStyleStatus, ErrorStyleBody200:
	default:
		errs = append(errs, fmt.Errorf("error style %q: want status or body200", c.ErrorStyle))
	}
	switch c.IDStyle {
	case "", IDNumber, IDString:
	default:
		errs = append(errs, fmt.Errorf("id style %q: want number or string", c.IDStyle))
	}
	switch c.Shape {
	case "", ShapeSDK, ShapeDoc:
	default:
		errs = append(errs, fmt.Errorf("shape %q: want sdk or doc", c.Shape))
	}
	if c.RatePerSec < 0 || c.StatusRatePerSec < 0 || c.Burst < 0 || c.StatusBurst < 0 {
		errs = append(errs, errors.New("rate and burst must not be negative"))
	}
	if c.DeliverMax < c.DeliverMin || c.SMSDelayMax < c.SMSDelayMin || c.ReplyDelayMax < c.ReplyDelayMin || c.Faults.SlowMax < c.Faults.SlowMin {
		errs = append(errs, errors.New("a delay range has max < min"))
	}
	if c.PendingAfter < 0 || c.DeliverMin < 0 || c.SMSDelayMin < 0 || c.ReplyDelayMin < 0 || c.Faults.SlowMin < 0 || c.Validity < 0 {
		errs = append(errs, errors.New("delays must not be negative"))
	}
	f := c.Faults
	for name, v := range map[string]float64{
		"viber fail share": c.ViberFailShare, "sms expired share": c.SMSExpiredShare,
		"sms undeliverable share": c.SMSUndeliverableShare, "reply share": c.ReplyShare,
		"server error": f.ServerError, "server error after accept": f.ServerErrorAfterAccept,
		"slow": f.Slow, "timeout": f.Timeout, "timeout accept": f.TimeoutAccept,
		"drop before": f.DropBefore, "drop after": f.DropAfter, "garbage": f.Garbage,
		"rate limited": f.RateLimited,
	} {
		if v < 0 || v > 1 || v != v {
			errs = append(errs, fmt.Errorf("%s %v: want a share in 0..1", name, v))
		}
	}
	for _, k := range f.GarbageKinds {
		if !validGarbage(k) {
			errs = append(errs, fmt.Errorf("garbage kind %q: want nonjson, truncated, wrongtypes or huge", k))
		}
	}
	return errors.Join(errs...)
}

func validGarbage(k GarbageKind) bool {
	for _, g := range allGarbage {
		if g == k {
			return true
		}
	}
	return false
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.ErrorStyle != ErrorStyleBody200 {
		c.ErrorStyle = ErrorStyleStatus
	}
	if c.IDStyle != IDString {
		c.IDStyle = IDNumber
	}
	if c.Shape != ShapeDoc {
		c.Shape = ShapeSDK
	}
	if c.SMSDeliveredCode <= 0 {
		c.SMSDeliveredCode = DefaultSMSDeliveredCode
	}
	if c.Logf == nil {
		c.Logf = log.Printf
	}
	if c.FirstMessageID <= 0 {
		c.FirstMessageID = DefaultFirstMessageID
	}
	if c.FirstSMSMessageID <= 0 {
		c.FirstSMSMessageID = DefaultFirstSMSMessageID
	}
	if c.MaxMessages <= 0 {
		c.MaxMessages = DefaultMaxMessages
	}
	if c.RecordRequests == 0 {
		c.RecordRequests = DefaultRecordRequests
	}
	if c.MaxBody <= 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Validity <= 0 {
		c.Validity = DefaultValidity
	}
	if c.StatusWindow <= 0 {
		c.StatusWindow = DefaultStatusWindow
	}
	if c.DeliverMax < c.DeliverMin {
		c.DeliverMax = c.DeliverMin
	}
	if c.SMSDelayMax < c.SMSDelayMin {
		c.SMSDelayMax = c.SMSDelayMin
	}
	if c.ReplyDelayMax < c.ReplyDelayMin {
		c.ReplyDelayMax = c.ReplyDelayMin
	}
	if c.Faults.SlowMax < c.Faults.SlowMin {
		c.Faults.SlowMax = c.Faults.SlowMin
	}
	if len(c.ViberFailCodes) == 0 {
		c.ViberFailCodes = []provider.ViberStatus{provider.ViberUndelivered}
	}
	if c.Faults.TimeoutHang <= 0 {
		c.Faults.TimeoutHang = DefaultTimeoutHang
	}
	if c.Faults.HugeBodySize <= 0 {
		c.Faults.HugeBodySize = DefaultHugeBodySize
	}
	kinds := c.Faults.GarbageKinds[:0:0]
	for _, k := range c.Faults.GarbageKinds {
		if validGarbage(k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		kinds = allGarbage
	}
	c.Faults.GarbageKinds = kinds
	if c.CallbackRetries < 0 {
		c.CallbackRetries = 0
	}
	if c.CallbackRetryDelay <= 0 {
		c.CallbackRetryDelay = DefaultCallbackRetryDelay
	}
	if c.CallbackWorkers <= 0 {
		c.CallbackWorkers = DefaultCallbackWorkers
	}
	if c.CallbackTimeout <= 0 {
		c.CallbackTimeout = DefaultCallbackTimeout
	}
	if c.MaxPendingCallbacks <= 0 {
		c.MaxPendingCallbacks = DefaultMaxPendingCallbacks
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// String describes the configuration without the key, so %v and %+v never print it.
func (c Config) String() string {
	key := "unset"
	if c.Key != "" {
		key = "[REDACTED]"
	}
	return fmt.Sprintf("dtsim.Config{Profile:%q Key:%s ErrorStyle:%q IDStyle:%q Shape:%q RatePerSec:%g Burst:%d Balance:%d Seed:%d}",
		c.Profile, key, c.ErrorStyle, c.IDStyle, c.Shape, c.RatePerSec, c.Burst, c.Balance, c.Seed)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }
