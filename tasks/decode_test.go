package tasks_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
	"github.com/viberq/viberq/tasks"
)

func validMessage() provider.Message {
	return provider.Message{
		SourceAddr:      "Shop",
		DestinationAddr: "380501234567",
		MessageType:     provider.TypeText,
		Text:            "Your code is 1234",
		TextSMS:         "Code 1234",
		SourceType:      provider.SourceTransactional,
	}
}

func fieldsOf(t *testing.T, err error) map[string]string {
	t.Helper()
	var ve *provider.ValidationError
	require.ErrorAs(t, err, &ve)
	out := map[string]string{}
	for _, f := range ve.Fields {
		_, dup := out[f.Field]
		require.False(t, dup, "field %s reported twice", f.Field)
		out[f.Field] = f.Rule
	}
	return out
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()

	t.Run("AllFields", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeJSON([]byte(`{"id":"order-42","ttl":"90s","source_addr":"Shop",
			"destination_addr":"380501234567","message_type":106,"source_type":2,
			"text":"Your code is 1234","text_sms":"Code 1234","callback_url":"https://cb.example.com/x"}`))
		require.NoError(t, err)
		want := validMessage()
		want.CallbackURL = "https://cb.example.com/x"
		require.Equal(t, tasks.EnqueueRequest{ID: "order-42", TTL: 90 * time.Second, Message: want}, req)
	})

	t.Run("Webhook", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeJSON([]byte(`{"source_addr":"Shop","destination_addr":"380501234567",
			"message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234",
			"webhook_url":"https://app.example.com/hooks","webhook_events":"all"}`))
		require.NoError(t, err)
		require.Equal(t, "https://app.example.com/hooks", req.WebhookURL)
		require.Equal(t, tasks.WebhookAll, req.WebhookEvents)

		_, err = tasks.DecodeJSON([]byte(`{"text":5,"webhook_url":"ftp://x/y","webhook_events":"some"}`))
		got := fieldsOf(t, err)
		require.Equal(t, "must use http or https, got ftp", got["webhook_url"])
		require.Contains(t, got["webhook_events"], `got "some"`)
	})

	t.Run("SendAtAndBatch", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeJSON([]byte(`{"source_addr":"Shop","destination_addr":"380501234567",
			"message_type":106,"source_type":1,"text":"Sale","send_at":"2026-12-24T10:00:00+02:00","batch_id":"xmas"}`))
		require.NoError(t, err)
		require.True(t, req.SendAt.Equal(time.Date(2026, 12, 24, 8, 0, 0, 0, time.UTC)), req.SendAt)
		require.Equal(t, "xmas", req.BatchID)

		req, err = tasks.DecodeFields(map[string]any{"source_addr": "Shop", "destination_addr": "380501234567",
			"message_type": "106", "source_type": "1", "text": "Sale", "send_at": "2026-12-24T08:00:00Z", "batch_id": "xmas"})
		require.NoError(t, err)
		require.Equal(t, "xmas", req.BatchID)
		require.False(t, req.SendAt.IsZero())

		_, err = tasks.DecodeJSON([]byte(`{"text":"a","send_at":"tomorrow"}`))
		require.Contains(t, fieldsOf(t, err)["send_at"], "RFC 3339")
		_, err = tasks.DecodeJSON([]byte(`{"text":"a","send_at":1766563200}`))
		require.Contains(t, fieldsOf(t, err)["send_at"], "RFC 3339")
	})

	t.Run("LenientNumbersAndNulls", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeJSON([]byte(`{"destination_addr":380501234567,"message_type":"106",
			"source_type":"2","ttl":120,"image":null,"source_addr":"Shop","text":"hi"}`))
		require.NoError(t, err)
		require.Equal(t, "380501234567", req.Message.DestinationAddr)
		require.Equal(t, provider.TypeText, req.Message.MessageType)
		require.Equal(t, provider.SourceTransactional, req.Message.SourceType)
		require.Equal(t, 120*time.Second, req.TTL)
		require.Empty(t, req.Message.Image)
	})

	t.Run("TTLForms", func(t *testing.T) {
		t.Parallel()
		for in, want := range map[string]time.Duration{
			`"1h"`: time.Hour, `"90"`: 90 * time.Second, `45`: 45 * time.Second,
			`"1m30s"`: 90 * time.Second, `40.5`: 40500 * time.Millisecond,
		} {
			req, err := tasks.DecodeJSON([]byte(`{"ttl":` + in + `}`))
			require.NoError(t, err, in)
			require.Equal(t, want, req.TTL, in)
		}
	})

	t.Run("Malformed", func(t *testing.T) {
		t.Parallel()
		for _, in := range []string{``, `  `, `{"text":`, `[1,2]`, `"x"`, `null`, `{"text":"a"} {}`, `{"text":"a",}`} {
			_, err := tasks.DecodeJSON([]byte(in))
			var de *tasks.DecodeError
			require.ErrorAs(t, err, &de, "input %q", in)
			require.NotEmpty(t, de.Problem, "input %q", in)
			require.True(t, tasks.Permanent(err))
		}
	})

	t.Run("UnknownFieldsNamed", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeJSON([]byte(`{"text":"a","phone":"380501234567","Colour":"red"}`))
		var de *tasks.DecodeError
		require.ErrorAs(t, err, &de)
		require.Equal(t, []string{"Colour", "phone"}, de.Unknown)
		require.Contains(t, err.Error(), `"phone"`)
		require.NotContains(t, err.Error(), "380501234567")
	})

	// A number where a field name belongs is named masked, wherever the name shows:
	// unknown, given twice, in the JSON document or among an outbox entry's fields.
	t.Run("PhoneLikeFieldNamesMasked", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			err  error
			want []provider.FieldError
		}{
			{decodeErr(tasks.DecodeJSON([]byte(`{"text":"a","380501234567":1}`))),
				[]provider.FieldError{{Field: "380*****4567", Rule: "unknown field"}}},
			{decodeErr(tasks.DecodeJSON([]byte(`{"0000000000":0,"0000000000":1}`))),
				[]provider.FieldError{{Field: "000***0000", Rule: "unknown field"}, {Field: "000***0000", Rule: "given more than once"}}},
			{decodeErr(tasks.DecodeFields(map[string]any{"text": "a", "+380 50 123 45 67": "x"})),
				[]provider.FieldError{{Field: "+38**********5 67", Rule: "unknown field"}}},
			{decodeErr(tasks.DecodeFields(map[string]any{"message": "{}", "380501234567": "x"})),
				[]provider.FieldError{{Field: "380*****4567", Rule: "unknown field"}}},
		} {
			require.Equal(t, c.want, tasks.Reasons(c.err))
			for _, raw := range []string{"380501234567", "0000000000", "123 45 67"} {
				require.NotContains(t, c.err.Error(), raw)
			}
		}
	})

	// A number the producer put where a value belongs is shown masked by every rule that
	// shows the value: the vendor's fields, the webhook's, the TTL.
	t.Run("PhoneLikeValuesMaskedInRules", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeJSON([]byte(`{"text":5,"source_addr":"Shop","destination_addr":"380501234567",
			"message_type":1234567890,"source_type":1234567890,"validity_period":1234567890,
			"webhook_events":"380501234567","webhook_url":"a380501234567://x","ttl":"6h0m0.380501234s"}`))
		got := fieldsOf(t, err)
		for _, f := range []string{"message_type", "source_type", "webhook_events", "webhook_url", "ttl"} {
			require.Contains(t, got, f)
		}
		require.NotContains(t, got, "validity_period", "ignored beside a ttl, as Enqueue ignores it")
		require.Contains(t, got["message_type"], "got 123***7890")
		require.Contains(t, got["source_type"], "got 123***7890")
		_, verr := tasks.DecodeJSON([]byte(`{"text":5,"validity_period":1234567890}`))
		require.Equal(t, "must be between 40 and 21600 seconds, got 123***7890", fieldsOf(t, verr)["validity_period"])
		require.Contains(t, got["webhook_events"], `got "380*****4567"`)
		require.Contains(t, got["webhook_url"], "got a380*****4567")
		require.Contains(t, got["ttl"], "got 6h0m0.3****1234s")
		for _, r := range tasks.Reasons(err) {
			for _, raw := range []string{"0501234", "4567890", "1234567"} {
				require.NotContains(t, r.Rule, raw, r.Field)
			}
		}
		require.NotContains(t, err.Error(), "0501234")
	})

	// A TTL given as 0 is refused, not taken for none (the default): in JSON, as a
	// number or a string, and among an outbox entry's fields.
	t.Run("ZeroTTLRefused", func(t *testing.T) {
		t.Parallel()
		const rule = "must be between 1s and 6h0m0s, got 0s (leave ttl out for the default)"
		for _, ttl := range []string{`0`, `"0s"`, `"0"`, `"0.0000000001"`} {
			_, err := tasks.DecodeJSON([]byte(`{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,` +
				`"source_type":2,"text":"a","ttl":` + ttl + `}`))
			require.Equal(t, rule, fieldsOf(t, err)["ttl"], ttl)
		}
		_, err := tasks.DecodeFields(map[string]any{"source_addr": "Shop", "destination_addr": "380501234567",
			"message_type": "106", "source_type": "2", "text": "a", "ttl": "0"})
		require.Equal(t, rule, fieldsOf(t, err)["ttl"])
	})

	t.Run("WrongTypesListedWithEveryOtherViolation", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeJSON([]byte(`{"message_type":"text","source_type":true,"text":5,
			"ttl":"soon","destination_addr":"+380","image":"https://x/y.png"}`))
		got := fieldsOf(t, err)
		require.Contains(t, got, "message_type")
		require.Contains(t, got, "source_type")
		require.Equal(t, "must be a string", got["text"])
		require.Contains(t, got, "ttl")
		require.Contains(t, got, "destination_addr") // not digits: from Validate
		require.Contains(t, got, "source_addr")      // missing: from Validate
		require.NotContains(t, got["text"], "required")
	})
}

func TestDecodeFields(t *testing.T) {
	t.Parallel()

	t.Run("Flat", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeFields(map[string]any{
			"id": "a-1", "ttl": "60", "source_addr": "Shop", "destination_addr": "380501234567",
			"message_type": "106", "source_type": "2", "text": "Your code is 1234", "text_sms": "Code 1234",
			"image": "",
		})
		require.NoError(t, err)
		require.Equal(t, tasks.EnqueueRequest{ID: "a-1", TTL: time.Minute, Message: validMessage()}, req)
	})

	t.Run("FlatBadNumber", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeFields(map[string]any{"message_type": "10x6", "text": "hi"})
		got := fieldsOf(t, err)
		require.Equal(t, "must be an integer", got["message_type"])
		require.Contains(t, got, "destination_addr")
	})

	t.Run("FlatUnknown", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeFields(map[string]any{"text": "hi", "to": "380501234567"})
		var de *tasks.DecodeError
		require.ErrorAs(t, err, &de)
		require.Equal(t, []string{"to"}, de.Unknown)
	})

	t.Run("MessageWithIDBeside", func(t *testing.T) {
		t.Parallel()
		req, err := tasks.DecodeFields(map[string]any{
			"message": `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"source_type":2,"text":"Your code is 1234","text_sms":"Code 1234"}`,
			"id":      "beside-1", "ttl": "2m",
		})
		require.NoError(t, err)
		require.Equal(t, tasks.EnqueueRequest{ID: "beside-1", TTL: 2 * time.Minute, Message: validMessage()}, req)
	})

	t.Run("MessageIDConflict", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeFields(map[string]any{"message": `{"id":"a","text":"x"}`, "id": "b"})
		got := fieldsOf(t, err)
		require.Contains(t, got["id"], "differs")
	})

	t.Run("MessageWithFlatFieldIsUnknown", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeFields(map[string]any{"message": `{"text":"x"}`, "text": "y"})
		var de *tasks.DecodeError
		require.ErrorAs(t, err, &de)
		require.Equal(t, []string{"text"}, de.Unknown)
	})

	t.Run("MessageMalformed", func(t *testing.T) {
		t.Parallel()
		_, err := tasks.DecodeFields(map[string]any{"message": `{"text":`})
		reasons := tasks.Reasons(err)
		require.Len(t, reasons, 1)
		require.Equal(t, "message", reasons[0].Field)
		require.Contains(t, reasons[0].Rule, "malformed")
	})
}

func TestReasonsAndPermanent(t *testing.T) {
	t.Parallel()
	conflict := errors.Join(errors.New("enqueue x"), tasks.ErrIdempotencyConflict)
	require.True(t, tasks.Permanent(conflict))
	require.Equal(t, "id", tasks.Reasons(conflict)[0].Field)
	transient := errors.New("dial tcp: connection refused")
	require.False(t, tasks.Permanent(transient))
	require.Nil(t, tasks.Reasons(nil))
}

// Invalid UTF-8 and lone surrogate escapes are refused naming the field, not turned
// into U+FFFD; a field given twice is refused naming it, not "last one wins".
func TestDecodeJSONStrictText(t *testing.T) {
	t.Parallel()
	base := `"destination_addr":"380501234567","source_addr":"Shop","message_type":106,"source_type":2`
	for _, tc := range []struct {
		name, doc, field, rule string
	}{
		{"invalid byte", "{" + base + ",\"text\":\"Hi \xff there\"}", "text", "UTF-8"},
		{"truncated sequence", "{" + base + ",\"text\":\"Hi \xe2\x82\"}", "text", "UTF-8"},
		{"lone high surrogate", "{" + base + `,"text":"Hi \ud83d there"}`, "text", "UTF-8"},
		{"lone low surrogate", "{" + base + `,"text_sms":"x\udc00"}`, "text_sms", "UTF-8"},
		{"high then non-low", "{" + base + `,"text":"\ud83d\u0041"}`, "text", "UTF-8"},
		{"surrogate in id", "{" + base + `,"text":"t","id":"a\ud800"}`, "id", "UTF-8"},
		{"duplicate text", "{" + base + `,"text":"first","text":"second"}`, "text", "given more than once"},
		{"duplicate destination", "{" + base + `,"text":"t","destination_addr":"380509999999"}`, "destination_addr", "given more than once"},
	} {
		_, err := tasks.DecodeJSON([]byte(tc.doc))
		if err == nil {
			t.Errorf("%s: accepted", tc.name)
			continue
		}
		found := false
		for _, r := range tasks.Reasons(err) {
			if r.Field == tc.field && strings.Contains(r.Rule, tc.rule) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: reasons %v do not name %s (%s)", tc.name, tasks.Reasons(err), tc.field, tc.rule)
		}
	}
	// Valid escapes pass: a surrogate pair, an escaped backslash before a 'u'.
	for _, text := range []string{`Hi \ud83d\ude00`, `C:\\udcxx path`, `tab\tand \"quote\" \u00e9`} {
		req, err := tasks.DecodeJSON([]byte("{" + base + `,"text":"` + text + `"}`))
		if err != nil {
			t.Errorf("text %s: %v", text, err)
			continue
		}
		if strings.ContainsRune(req.Message.Text, utf8.RuneError) {
			t.Errorf("text %s decoded with U+FFFD: %q", text, req.Message.Text)
		}
	}
	// A field name that is not UTF-8 makes the document malformed.
	if _, err := tasks.DecodeJSON([]byte("{\"te\xffxt\":\"x\"}")); err == nil {
		t.Error("invalid UTF-8 in a field name accepted")
	}
}

// decodeErr is the error of a decode.
func decodeErr(_ tasks.EnqueueRequest, err error) error { return err }
