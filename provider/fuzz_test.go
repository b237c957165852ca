package provider

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const fuzzKey = "FuzzKey-Secret"

// FuzzDecodeResponse drives the response funnel (send and status decoding) with any
// HTTP status, body and Retry-After: it must never panic, must return exactly one of
// the typed errors or a sane result, and must never let the key through.
func FuzzDecodeResponse(f *testing.F) {
	seeds := []struct {
		status int
		body   string
		ra     string
	}{
		{200, `{"message_id":429}`, ""},
		{200, `{"message_id":"429"}`, ""},
		{200, `{"message_id":429,"status":1,"sms_message_id":36478,"sms_message_status":2}`, ""},
		{200, `{"message_id":"429","status":"4","sms_message_id":null,"sms_message_status":""}`, ""},
		{200, `{"name":"Too Many Requests","message":"Rate limit exceeded","code":0,"status":429}`, "5"},
		{429, `{"name":"Too Many Requests","message":"Rate limit exceeded","code":0,"status":429}`, "Wed, 21 Oct 2015 07:28:00 GMT"},
		{400, `{"name":"Invalid Parameter: source_addr","message":"Empty parameter or parameter validation error","code":1,"status":400}`, ""},
		{200, `{"name":"Internal server error","message":"x","code":2,"status":500}`, ""},
		{402, `{"name":"Topup balance is required","message":"User balance is empty","code":3,"status":402}`, ""},
		{401, `Unauthorized`, ""},
		{502, `<html>bad gateway</html>`, ""},
		{200, `{"message_id":4.2}`, ""},
		{200, `{"message_id":-1}`, ""},
		{200, ``, ""},
		{200, `{"name":"` + fuzzKey + `","message":"` + base64.StdEncoding.EncodeToString([]byte(fuzzKey)) + `","code":1,"status":400}`, ""},
		{200, "\xff\xfe{", ""},
	}
	for _, s := range seeds {
		f.Add(s.status, []byte(s.body), s.ra, false)
		f.Add(s.status, []byte(s.body), s.ra, true)
	}
	cred, err := newCredential(fuzzKey, false)
	if err != nil {
		f.Fatal(err)
	}
	secrets := secretForms(fuzzKey, false)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, status int, body []byte, ra string, isStatus bool) {
		if status < 0 {
			status = -status
		}
		status = 100 + status%500
		if len(body) > MaxResponseBytes {
			body = body[:MaxResponseBytes]
		}
		h := http.Header{}
		h.Set("Retry-After", ra)
		h.Set("X-Rate-Limit-Reset", ra)
		r := rawResponse{op: OpSend, url: "https://example.com/v1/api/send-viber", status: status, header: h, body: body}
		var (
			sd  sendDecoder
			std = statusDecoder{want: 429}
			v   responseDecoder
		)
		v = &sd
		if isStatus {
			r.op = OpStatus
			v = &std
		}
		err := decodeResponse(r, cred, now, v)
		is2xx := status >= 200 && status <= 299
		if err == nil {
			if !is2xx {
				t.Fatalf("HTTP %d accepted", status)
			}
			if isStatus {
				if std.res.MessageID != 429 || std.res.Status < 0 {
					t.Fatalf("bad status result %+v", std.res)
				}
				if std.res.SMSStatus != nil && *std.res.SMSStatus < 0 {
					t.Fatalf("negative sms status")
				}
			} else if sd.res.MessageID <= 0 {
				t.Fatalf("non-positive message id %d", sd.res.MessageID)
			}
			return
		}
		msg := err.Error()
		for _, s := range secrets {
			if strings.Contains(msg, s) {
				t.Fatalf("key leaked: %q", msg)
			}
		}
		if !utf8.ValidString(msg) {
			t.Fatalf("invalid UTF-8 in error %q", msg)
		}
		var (
			api  *APIError
			resp *ResponseError
		)
		switch {
		case errors.As(err, &api):
			if api.HTTPStatus != status {
				t.Fatalf("status %d != %d", api.HTTPStatus, status)
			}
			var rl *RateLimitError
			if errors.As(err, &rl) && (rl.RetryAfter < 0 || rl.RetryAfter > maxRetryAfter) {
				t.Fatalf("retry after %s", rl.RetryAfter)
			}
			if MaybeSent(err) {
				t.Fatal("provider answer reported as maybe sent")
			}
			if status == 401 || status == 403 {
				var ue *UnauthorizedError
				if !errors.As(err, &ue) {
					t.Fatalf("HTTP %d is %T", status, err)
				}
			}
		case errors.As(err, &resp):
			if !is2xx {
				t.Fatalf("ResponseError on HTTP %d", status)
			}
			if !MaybeSent(err) {
				t.Fatal("2xx ResponseError not maybe-sent")
			}
		default:
			t.Fatalf("untyped error %T: %v", err, err)
		}
	})
}

// FuzzParseStatusCallback: never panics; a parsed callback is sane and survives a
// round trip through JSON.
func FuzzParseStatusCallback(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"message_id":429,"status":1}`},
		{"application/json", `{"message_id":"429","status":"4","sms_message_id":"36478","sms_message_status":3}`},
		{"application/x-www-form-urlencoded", `message_id=429&status=2&sms_message_status=5`},
		{"", `{"message_id":429,"status":1,"x":{"y":[null,true]}}`},
		{"", `message_id=1&status=0`},
		{"text/plain", `{"message_id":1e3,"status":1}`},
		{"application/json", `{"message_id":429,"status":1} {}`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		cb, err := ParseStatusCallback(ct, body)
		if err != nil {
			var ce *CallbackError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if cb.MessageID <= 0 || cb.Status < 0 || string(cb.Raw) != string(body) {
			t.Fatalf("bad callback %+v", cb)
		}
		if (cb.SMSMessageID != nil && *cb.SMSMessageID <= 0) || (cb.SMSStatus != nil && *cb.SMSStatus < 0) {
			t.Fatalf("bad sms fields %+v", cb)
		}
		m := map[string]any{"message_id": cb.MessageID, "status": cb.Status}
		if cb.SMSMessageID != nil {
			m["sms_message_id"] = *cb.SMSMessageID
		}
		if cb.SMSStatus != nil {
			m["sms_message_status"] = int(*cb.SMSStatus)
		}
		b, _ := json.Marshal(m)
		back, err := ParseStatusCallback("application/json", b)
		if err != nil {
			t.Fatalf("round trip of %s: %v", b, err)
		}
		back.Raw, cb.Raw = nil, nil
		if back.MessageID != cb.MessageID || back.Status != cb.Status ||
			(back.SMSMessageID == nil) != (cb.SMSMessageID == nil) || (back.SMSStatus == nil) != (cb.SMSStatus == nil) {
			t.Fatalf("round trip %+v != %+v", back, cb)
		}
	})
}

// FuzzParseReply: never panics; a parsed reply has its required fields, a digit-only
// TrackingID and a time within range.
func FuzzParseReply(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/json", `{"message_token": 44444444444444, "phone_number": "972512222222", "time": 1457764197627, "message": {"text": "reply text", "tracking_data": "tracking_id:100035"}}`},
		{"application/json", `{"message_token":"5741311803571721087","phone_number":972512222222,"time":1457764197,"text":"hi","tracking_data":"tracking_id:429"}`},
		{"application/x-www-form-urlencoded", `message_token=1&phone_number=2&message%5Btext%5D=a&message%5Btracking_data%5D=tracking_id%3A9`},
		{"", `{"message_token":1,"phone_number":"1","message":"plain","tracking_id":"12"}`},
		{"", `{"message_token":1.5,"phone_number":"1","time":-1}`},
		{"", `{"message_token":1,"phone_number":"1","time":1e300,"tracking_data":"tracking_id:99999999999999999999999"}`},
		{"", `{"message_token":1,"phone_number":"1","time":"2016-03-12 06:29:57","message":{"tracking_data":{"tracking_id":100035}}}`},
		{"", `{"message_token":1,"phone_number":"1","time":"0001-01-01T00:00:00Z","tracking_data":"{\"tracking_id\":\"7\"}"}`},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		rp, err := ParseReply(ct, body)
		if err != nil {
			var ce *CallbackError
			if !errors.As(err, &ce) {
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		if rp.MessageToken == "" || rp.PhoneNumber == "" {
			t.Fatalf("missing required field: %+v", rp)
		}
		if rp.TrackingID != "" && (!allDigits(rp.TrackingID) || len(rp.TrackingID) > 19) {
			t.Fatalf("bad tracking id %q", rp.TrackingID)
		}
		if !rp.Time.IsZero() && (rp.Time.Year() < 1970 || rp.Time.Year() > 9999) {
			t.Fatalf("time out of range: %v", rp.Time)
		}
		if (len(rp.Unparsed) > 0) != (rp.Raw != nil) {
			t.Fatalf("Raw kept iff something is unparsed: %+v", rp)
		}
		if ct == "" && !IsReply(body) {
			t.Fatalf("ParseReply accepted what IsReply rejects: %q", body)
		}
		_ = MaskPhone(rp.PhoneNumber)
	})
}
