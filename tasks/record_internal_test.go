package tasks

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

// TestRecordAsWritten checks that the record createCall answers for a new message
// without reading it back is the record a read of its hash returns.
func TestRecordAsWritten(t *testing.T) {
	kyiv := time.FixedZone("Kyiv", 2*60*60)
	now := time.Date(2026, 12, 3, 9, 30, 15, 123_456_789, kyiv)
	sms := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Your code is 1234", TextSMS: "Code 1234", SourceType: provider.SourceTransactional}
	promo := provider.Message{SourceAddr: "Shop", DestinationAddr: "447700900123", MessageType: provider.TypeTextImageButton,
		Text: "Sale", Image: "https://example.com/a.png", ButtonCaption: "Go", ButtonAction: "https://example.com",
		SourceType: provider.SourcePromotional}
	for name, a := range map[string]SendArgs{
		"plain":     {ID: "a", Message: promo, EnqueuedAt: now, ExpiresAt: now.Add(time.Hour)},
		"sms":       {ID: "b", Message: sms, EnqueuedAt: now, ExpiresAt: now.Add(40 * time.Second)},
		"scheduled": {ID: "c", Message: sms, EnqueuedAt: now, SendAt: now.Add(time.Hour + 7*time.Nanosecond), ExpiresAt: now.Add(2 * time.Hour)},
		"batch and webhook": {ID: "d", Message: promo, EnqueuedAt: now, ExpiresAt: now.Add(time.Hour), BatchID: "camp-1",
			WebhookURL: "https://example.com/hook", WebhookEvents: WebhookAll},
		"before 1970":   {ID: "e", Message: promo, EnqueuedAt: time.Unix(-5, 999), ExpiresAt: time.Unix(-1, 0)},
		"millisecond 0": {ID: "f", Message: promo, EnqueuedAt: time.Unix(0, 999_999), ExpiresAt: time.Unix(3600, 0)},
	} {
		t.Run(name, func(t *testing.T) {
			rec := NewRecord(a, a.EnqueuedAt)
			rec.PayloadHash = "h"
			read, err := recordFromHash(rec.ID, fieldMap(rec.appendHashFields(nil)))
			require.NoError(t, err)
			require.Equal(t, read, rec.asWritten())
		})
	}
}

// FuzzMessageJSON checks that the message's JSON cut out of a send payload is the
// message's own JSON, whatever its strings hold.
func FuzzMessageJSON(f *testing.F) {
	f.Add("order-42", "Shop", "380501234567", "Your code is 1234", "Code 1234", "", 106)
	f.Add("a:b", `Sh"op`, "1", `,"expires_at":`, `"message":{`, "https://x/?a=<b>&c", 206)
	f.Add("x", "\u2028", "\xff", "привіт 👋", "\\", "\x00", 0)
	f.Fuzz(func(t *testing.T, id, src, dest, text, sms, callback string, mt int) {
		m := provider.Message{SourceAddr: src, DestinationAddr: dest, MessageType: provider.MessageType(mt), Text: text,
			TextSMS: sms, CallbackURL: callback, SourceType: provider.SourcePromotional}
		payload, err := json.Marshal(SendArgs{V: PayloadVersion, ID: id, Message: m, ExpiresAt: time.Unix(1, 0), EnqueuedAt: time.Unix(0, 5)})
		require.NoError(t, err)
		want, err := json.Marshal(m)
		require.NoError(t, err)
		require.Equal(t, string(want), string(messageJSON(payload)))
	})
}

// TestEnqueueFingerprint checks that the fingerprint the Enqueuer stores is
// requestHash of the request, with and without a default callback_url (which the
// payload carries and the fingerprint does not).
func TestEnqueueFingerprint(t *testing.T) {
	store := NewStore(nil, StoreOptions{})
	m := provider.Message{SourceAddr: "Shop", DestinationAddr: "380501234567", MessageType: provider.TypeText,
		Text: "Code <1234> & more", TextSMS: "Code 1234", SourceType: provider.SourceTransactional, ValidityPeriod: 40}
	sendAt := time.Now().Add(time.Hour)
	for _, callback := range []string{"", "https://example.com/cb"} {
		for _, req := range []EnqueueRequest{
			{Message: m},
			{Message: m, TTL: 90 * time.Second, SendAt: sendAt, BatchID: "b-1"},
		} {
			e := NewEnqueuer(nil, store, EnqueuerConfig{CallbackURL: callback})
			p, err := e.prepare(req)
			require.NoError(t, err)
			hashed := req.Message
			hashed.ValidityPeriod = 0
			ttl := req.TTL
			if ttl == 0 {
				ttl = time.Duration(req.Message.ValidityPeriod) * time.Second
			}
			require.Equal(t, requestHash(hashed, ttl, req.SendAt, req.BatchID), p.hash, "callback %q, request %+v", callback, req)
			if callback == "" {
				require.Equal(t, Fingerprint(p.args), p.hash, "the worker's fingerprint of the task agrees")
			}
		}
	}
}

// fieldMap converts HSET pairs (all strings) to a map.
func fieldMap(pairs []any) map[string]string {
	h := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		h[pairs[i].(string)] = pairs[i+1].(string)
	}
	return h
}
