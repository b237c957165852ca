package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Header names of a webhook POST.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex>[,v1=<hex>...]".
	SignatureHeader = "Viberq-Signature"
	// EventIDHeader carries the event's ID, the same on every attempt.
	EventIDHeader = "Viberq-Event-Id"
	// DefaultTolerance is the signature age Verify accepts by default.
	DefaultTolerance = 5 * time.Minute
)

// Sign returns the hex HMAC-SHA256 of timestamp + "." + body under secret: the v1
// value of the signature header.
func Sign(secret string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// SignatureValue returns the SignatureHeader value for body signed at t with every
// secret: "t=<unix>,v1=<sig>" with one v1 per secret.
func SignatureValue(secrets []string, t time.Time, body []byte) string {
	ts := t.Unix()
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(ts, 10))
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(Sign(s, ts, body))
	}
	return b.String()
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("webhook signature: no t= or v1= in the header")
	ErrBadSignature = errors.New("webhook signature: no v1 matches")
	ErrTooOld       = errors.New("webhook signature: timestamp outside the tolerance")
)

// Verify checks a SignatureHeader value against body and secret: one of its v1 values
// must be Sign(secret, t, body) and t must lie within tolerance of now (a replayed
// old POST is refused). A tolerance ≤ 0 means DefaultTolerance. This is all a Go
// receiver needs; the README shows the same in shell and Python.
func Verify(header string, body []byte, secret string, tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var (
		ts   int64
		tsOK bool
		sigs []string
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			continue
		}
		switch k {
		case "t":
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				ts, tsOK = n, true
			}
		case "v1":
			sigs = append(sigs, v)
		}
	}
	if !tsOK || len(sigs) == 0 {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w (%s)", ErrTooOld, d.Round(time.Second))
	}
	want := []byte(Sign(secret, ts, body))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrBadSignature
}
