package provider

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func idp(v MessageID) *MessageID { return &v }

func TestParseStatusCallback(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body string
		want           StatusCallback
	}{
		{"JSONNumbers", "application/json", `{"message_id":429,"status":1}`, StatusCallback{MessageID: 429, Status: ViberDelivered}},
		{"JSONStrings", "application/json; charset=utf-8", `{"message_id":"429","status":"4","sms_message_id":"36478","sms_message_status":"3"}`,
			StatusCallback{MessageID: 429, Status: ViberUndelivered, SMSMessageID: idp(36478), SMSStatus: smsp(SMSExpired)}},
		{"JSONNullSMS", "application/json", `{"message_id":429,"status":5,"sms_message_id":null,"sms_message_status":null}`, StatusCallback{MessageID: 429, Status: ViberPending}},
		{"JSONExtraFields", "application/json", `{"message_id":429,"status":0,"foo":{"bar":[1,2,3]},"time":1700000000}`, StatusCallback{MessageID: 429, Status: ViberSent}},
		{"JSONUnknownStatus", "application/json", `{"message_id":429,"status":26}`, StatusCallback{MessageID: 429, Status: 26}},
		{"JSONBigID", "application/json", `{"message_id":9223372036854775807,"status":1}`, StatusCallback{MessageID: 9223372036854775807, Status: 1}},
		{"Form", "application/x-www-form-urlencoded", `message_id=429&status=2&sms_message_id=7&sms_message_status=2`,
			StatusCallback{MessageID: 429, Status: ViberError, SMSMessageID: idp(7), SMSStatus: smsp(SMSDelivered)}},
		{"FormEmptySMS", "application/x-www-form-urlencoded", `message_id=429&status=2&sms_message_id=&sms_message_status=`, StatusCallback{MessageID: 429, Status: ViberError}},
		{"SniffedJSON", "", ` {"message_id":429,"status":1}`, StatusCallback{MessageID: 429, Status: 1}},
		{"SniffedForm", "text/plain", `status=1&message_id=429`, StatusCallback{MessageID: 429, Status: 1}},
		{"VendorJSONType", "application/vnd.dt+json", `{"message_id":429,"status":1}`, StatusCallback{MessageID: 429, Status: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseStatusCallback(tt.ct, []byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.body, string(got.Raw))
			got.Raw = nil
			assert.Equal(t, tt.want, got)
		})
	}
	t.Run("Fixture", func(t *testing.T) {
		t.Parallel()
		got, err := ParseStatusCallback("application/json", readFixture(t, "status_callback_sms.json"))
		require.NoError(t, err)
		assert.Equal(t, OutcomeDeliveredSMS, got.Outcome(true))
	})
}

func TestParseStatusCallbackErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body, field, problem string
	}{
		{"Empty", "application/json", ``, "", "empty body"},
		{"NotJSON", "application/json", `message_id=1`, "", "not a JSON object"},
		{"Array", "application/json", `[{"message_id":1}]`, "", "not a JSON object"},
		{"Null", "application/json", `null`, "", "not a JSON object"},
		{"Trailing", "application/json", `{"message_id":1,"status":1} x`, "", "trailing"},
		{"MissingID", "application/json", `{"status":1}`, "message_id", "missing"},
		{"NullID", "application/json", `{"message_id":null,"status":1}`, "message_id", "missing"},
		{"ZeroID", "application/json", `{"message_id":0,"status":1}`, "message_id", "must be positive"},
		{"NegativeID", "application/json", `{"message_id":-4,"status":1}`, "message_id", "non-negative"},
		{"FloatID", "application/json", `{"message_id":4.5,"status":1}`, "message_id", "non-negative"},
		{"WordID", "application/json", `{"message_id":"abc","status":1}`, "message_id", "non-negative"},
		{"ObjectID", "application/json", `{"message_id":{"v":1},"status":1}`, "message_id", "number or a string"},
		{"MissingStatus", "application/json", `{"message_id":1}`, "status", "missing"},
		{"BadStatus", "application/json", `{"message_id":1,"status":"delivered"}`, "status", "non-negative integer"},
		{"NegativeStatus", "application/json", `{"message_id":1,"status":-1}`, "status", "non-negative integer"},
		{"BoolStatus", "application/json", `{"message_id":1,"status":true}`, "status", "number or a string"},
		{"BadSMSID", "application/json", `{"message_id":1,"status":1,"sms_message_id":"x"}`, "sms_message_id", "non-negative"},
		{"BadSMSStatus", "application/json", `{"message_id":1,"status":1,"sms_message_status":1.5}`, "sms_message_status", "non-negative integer"},
		{"FormMissingStatus", "application/x-www-form-urlencoded", `message_id=1`, "status", "missing"},
		{"FormBadEscape", "application/x-www-form-urlencoded", `message_id=%zz`, "", "neither JSON nor form"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseStatusCallback(tt.ct, []byte(tt.body))
			var ce *CallbackError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Contains(t, ce.Problem, tt.problem)
			assert.True(t, strings.HasPrefix(err.Error(), "status callback: "+tt.field), err.Error())
		})
	}
}

func TestParseReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body string
		want           Reply
	}{
		{"NestedUpstreamShape", "application/json",
			`{"message_token": 44444444444444, "phone_number": "972512222222", "time": 1457764197627, "message": {"text": "reply text", "tracking_data": "tracking_id:100035"}}`,
			Reply{MessageToken: "44444444444444", PhoneNumber: "972512222222", Time: time.UnixMilli(1457764197627).UTC(), Text: "reply text", TrackingData: "tracking_id:100035", TrackingID: "100035"}},
		{"TokenBeyond2to53", "application/json",
			`{"message_token":5741311803571721087,"phone_number":"380501234567","message":{"text":"x"}}`,
			Reply{MessageToken: "5741311803571721087", PhoneNumber: "380501234567", Text: "x"}},
		{"TokenBeyondInt64", "application/json",
			`{"message_token":123456789012345678901234567890,"phone_number":"1"}`,
			Reply{MessageToken: "123456789012345678901234567890", PhoneNumber: "1"}},
		{"TokenString", "application/json", `{"message_token":"abc-1","phone_number":"1"}`, Reply{MessageToken: "abc-1", PhoneNumber: "1"}},
		{"TimeSeconds", "application/json", `{"message_token":1,"phone_number":"1","time":1457764197}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Time: time.Unix(1457764197, 0).UTC()}},
		{"TimeJustAboveBoundaryIsMS", "application/json", `{"message_token":1,"phone_number":"1","time":1000000000001}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Time: time.UnixMilli(1000000000001).UTC()}},
		{"TimeString", "application/json", `{"message_token":1,"phone_number":"1","time":"1457764197"}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Time: time.Unix(1457764197, 0).UTC()}},
		{"TimeFraction", "application/json", `{"message_token":1,"phone_number":"1","time":1457764197.5}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Time: time.UnixMilli(1457764197500).UTC()}},
		{"TopLevelTracking", "application/json", `{"message_token":1,"phone_number":"1","message":{"text":"t"},"tracking_data":"tracking_id:77"}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Text: "t", TrackingData: "tracking_id:77", TrackingID: "77"}},
		{"NestedWinsOverTopLevel", "application/json", `{"message_token":1,"phone_number":"1","message":{"tracking_data":"tracking_id:1"},"tracking_data":"tracking_id:2"}`,
			Reply{MessageToken: "1", PhoneNumber: "1", TrackingData: "tracking_id:1", TrackingID: "1"}},
		{"TrackingIDField", "application/json", `{"message_token":1,"phone_number":"1","message":{"text":"t","tracking_id":429}}`,
			Reply{MessageToken: "1", PhoneNumber: "1", Text: "t", TrackingID: "429"}},
		{"TrackingDataWithoutID", "application/json", `{"message_token":1,"phone_number":"1","tracking_data":"campaign=5"}`,
			Reply{MessageToken: "1", PhoneNumber: "1", TrackingData: "campaign=5"}},
		{"TrackingDataInJSONText", "application/json", `{"message_token":1,"phone_number":"1","tracking_data":"{\"tracking_id\":5}"}`,
			Reply{MessageToken: "1", PhoneNumber: "1", TrackingData: `{"tracking_id":5}`, TrackingID: "5"}},
		{"TopLevelText", "application/json", `{"message_token":1,"phone_number":"1","text":"flat"}`, Reply{MessageToken: "1", PhoneNumber: "1", Text: "flat"}},
		{"MessageAsString", "application/json", `{"message_token":1,"phone_number":"1","message":"plain"}`, Reply{MessageToken: "1", PhoneNumber: "1", Text: "plain"}},
		{"PhoneAsNumber", "application/json", `{"message_token":1,"phone_number":972512222222}`, Reply{MessageToken: "1", PhoneNumber: "972512222222"}},
		{"Form", "application/x-www-form-urlencoded", `message_token=44444444444444&phone_number=972512222222&time=1457764197627&message%5Btext%5D=hi+there&message%5Btracking_data%5D=tracking_id%3A9`,
			Reply{MessageToken: "44444444444444", PhoneNumber: "972512222222", Time: time.UnixMilli(1457764197627).UTC(), Text: "hi there", TrackingData: "tracking_id:9", TrackingID: "9"}},
		{"FormDotted", "", `message_token=1&phone_number=2&message.text=a&tracking_id=5`, Reply{MessageToken: "1", PhoneNumber: "2", Text: "a", TrackingID: "5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseReply(tt.ct, []byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.True(t, IsReply([]byte(tt.body)))
		})
	}
	t.Run("Fixtures", func(t *testing.T) {
		t.Parallel()
		r, err := ParseReply("application/json", readFixture(t, "reply_nested.json"))
		require.NoError(t, err)
		assert.Equal(t, "44444444444444444444", r.MessageToken)
		assert.Equal(t, "100035", r.TrackingID)
		r, err = ParseReply("application/json", readFixture(t, "reply_flat.json"))
		require.NoError(t, err)
		assert.Equal(t, Reply{MessageToken: "5741311803571721087", PhoneNumber: "972512222222", Time: time.Unix(1457764197, 0).UTC(), Text: "hi", TrackingData: "tracking_id:429", TrackingID: "429"}, r)
	})
}

func TestParseReplyErrors(t *testing.T) {
	t.Parallel()
	// Refused: no usable message_token or phone_number (not a reply at all).
	tests := []struct{ name, body, field string }{
		{"Empty", ``, ""},
		{"NotObject", `[1]`, ""},
		{"MissingToken", `{"phone_number":"1"}`, "message_token"},
		{"EmptyToken", `{"message_token":"","phone_number":"1"}`, "message_token"},
		{"ObjectToken", `{"message_token":{},"phone_number":"1"}`, "message_token"},
		{"MissingPhone", `{"message_token":1}`, "phone_number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseReply("application/json", []byte(tt.body))
			var ce *CallbackError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, tt.field, ce.Field)
			assert.Equal(t, "reply", ce.Kind)
		})
	}
}

// TestParseReplyKeepsUnparsed: a reply with an unreadable part is kept, the part
// listed with its reason and the body kept raw; never refused.
func TestParseReplyKeepsUnparsed(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body, field, token string }{
		{"FloatToken", `{"message_token":4.4e13,"phone_number":"1"}`, "message_token", "4.4e13"},
		{"NegativeToken", `{"message_token":-5,"phone_number":"1"}`, "message_token", "-5"},
		{"BadTime", `{"message_token":1,"phone_number":"1","time":"yesterday"}`, "time", "1"},
		{"NegativeTime", `{"message_token":1,"phone_number":"1","time":-1}`, "time", "1"},
		{"BoundaryIsSecondsBeyondYear9999", `{"message_token":1,"phone_number":"1","time":1000000000000}`, "time", "1"},
		{"HugeTime", `{"message_token":1,"phone_number":"1","time":1e300}`, "time", "1"},
		{"HexTime", `{"message_token":1,"phone_number":"1","time":"0x10"}`, "time", "1"},
		{"ObjectTime", `{"message_token":1,"phone_number":"1","time":{"s":1}}`, "time", "1"},
		{"BadText", `{"message_token":1,"phone_number":"1","message":{"text":[1]}}`, "text", "1"},
		{"TrackingObjectWithoutID", `{"message_token":1,"phone_number":"1","message":{"tracking_data":{"x":1}}}`, "tracking_data", "1"},
		{"TrackingArray", `{"message_token":1,"phone_number":"1","tracking_data":[1]}`, "tracking_data", "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := ParseReply("application/json", []byte(tt.body))
			require.NoError(t, err)
			assert.Equal(t, tt.token, r.MessageToken)
			assert.Equal(t, "1", r.PhoneNumber)
			require.Len(t, r.Unparsed, 1, "%+v", r.Unparsed)
			assert.Equal(t, tt.field, r.Unparsed[0].Field)
			assert.NotEmpty(t, r.Unparsed[0].Rule)
			assert.Equal(t, tt.body, string(r.Raw))
		})
	}
	t.Run("Shapes", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name, body string
			want       Reply
		}{
			{"TrackingObject", `{"message_token":7,"phone_number":"380","time":1457764197,"message":{"text":"Да","tracking_data":{"tracking_id":100035}}}`,
				Reply{MessageToken: "7", PhoneNumber: "380", Time: time.Unix(1457764197, 0).UTC(), Text: "Да", TrackingData: `{"tracking_id":100035}`, TrackingID: "100035"}},
			{"TrackingObjectString", `{"message_token":7,"phone_number":"380","tracking_data":{"tracking_id":"100035"}}`,
				Reply{MessageToken: "7", PhoneNumber: "380", TrackingData: `{"tracking_id":"100035"}`, TrackingID: "100035"}},
			{"TimeRFC3339", `{"message_token":7,"phone_number":"380","time":"2026-12-02T10:00:00+02:00"}`,
				Reply{MessageToken: "7", PhoneNumber: "380", Time: time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)}},
			{"TimeDateTime", `{"message_token":7,"phone_number":"380","time":"2026-12-02 10:00:00"}`,
				Reply{MessageToken: "7", PhoneNumber: "380", Time: time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)}},
			{"TimeNumericString", `{"message_token":7,"phone_number":"380","time":"1457764197627"}`,
				Reply{MessageToken: "7", PhoneNumber: "380", Time: time.UnixMilli(1457764197627).UTC()}},
		} {
			r, err := ParseReply("application/json", []byte(tt.body))
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.want, r, tt.name)
		}
	})
}

func TestIsReply(t *testing.T) {
	t.Parallel()
	assert.True(t, IsReply([]byte(`{"message_token":1,"phone_number":"380"}`)))
	assert.True(t, IsReply([]byte(`message_token=1&phone_number=380`)))
	assert.False(t, IsReply([]byte(`{"message_id":1,"status":1}`)))
	assert.False(t, IsReply([]byte(`{"message_token":1}`)))
	assert.False(t, IsReply([]byte(`{"message_token":1,"phone_number":null}`)))
	assert.False(t, IsReply([]byte(`{"message_token":1,"phone_number":""}`)))
	assert.False(t, IsReply([]byte(`message_id=1&status=1`)))
	assert.False(t, IsReply(nil))
	assert.False(t, IsReply([]byte(`{bad json`)))
}

func TestStatusCallbackHandler(t *testing.T) {
	t.Parallel()
	var got []StatusCallback
	h := StatusCallbackHandler(64, func(_ *http.Request, cb StatusCallback) error {
		if cb.MessageID == 13 {
			return errors.New("store down: secret detail")
		}
		got = append(got, cb)
		return nil
	})
	do := func(method, ct, body, query string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/cb"+query, strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	assert.Equal(t, 200, do("POST", "application/json", `{"message_id":429,"status":1}`, "").Code)
	assert.Equal(t, 200, do("POST", "application/x-www-form-urlencoded", `message_id=430&status=2`, "").Code)
	assert.Equal(t, 200, do("GET", "", "", "?message_id=431&status=5").Code)
	w := do("POST", "application/json", `{"status":1}`, "")
	assert.Equal(t, 400, w.Code)
	assert.Contains(t, w.Body.String(), "message_id")
	assert.Equal(t, 413, do("POST", "application/json", `{"message_id":429,"status":1,"pad":"`+strings.Repeat("x", 64)+`"}`, "").Code)
	assert.Equal(t, 413, do("GET", "", "", "?message_id=1&status=1&pad="+strings.Repeat("x", 64)).Code)
	w = do("POST", "application/json", `{"message_id":13,"status":1}`, "")
	assert.Equal(t, 500, w.Code)
	assert.NotContains(t, w.Body.String(), "secret detail")
	w = do("DELETE", "", "", "")
	assert.Equal(t, 405, w.Code)
	assert.NotEmpty(t, w.Header().Get("Allow"))
	require.Len(t, got, 3)
	assert.Equal(t, []MessageID{429, 430, 431}, []MessageID{got[0].MessageID, got[1].MessageID, got[2].MessageID})

	// Exactly at the limit is accepted; nil fn and default limit work.
	body := `{"message_id":1,"status":1,"p":"` + strings.Repeat("y", 64-len(`{"message_id":1,"status":1,"p":""}`)) + `"}`
	require.Len(t, body, 64)
	assert.Equal(t, 200, do("POST", "application/json", body, "").Code)
	r := httptest.NewRequest("POST", "/", strings.NewReader(`{"message_id":1,"status":1}`))
	w = httptest.NewRecorder()
	StatusCallbackHandler(0, nil).ServeHTTP(w, r)
	assert.Equal(t, 200, w.Code)
}

func TestReplyHandler(t *testing.T) {
	t.Parallel()
	var got Reply
	h := ReplyHandler(1024, func(_ *http.Request, r Reply) error { got = r; return nil })
	r := httptest.NewRequest("POST", "/in", strings.NewReader(`{"message_token":1,"phone_number":"380501234567","message":{"text":"yes","tracking_data":"tracking_id:5"}}`))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, 200, w.Code)
	assert.Equal(t, "5", got.TrackingID)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/in", strings.NewReader(`{"phone_number":"1"}`)))
	assert.Equal(t, 400, w.Code)
	assert.Contains(t, w.Body.String(), "message_token")
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("POST", "/in", strings.NewReader(strings.Repeat("a", 2000))))
	assert.Equal(t, 413, w.Code)
}

func TestMaskPhone(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"380501234567":         "380*****4567",
		"972512222222":         "972*****2222",
		"1234567890":           "123***7890",
		"123456789":            "*******89",
		"12345":                "***45",
		"1234":                 "****",
		"":                     "",
		"+380501234567":        "+38******4567",
		"12345678901234567890": "123*************7890",
	}
	for in, want := range tests {
		got := MaskPhone(in)
		assert.Equal(t, want, got, in)
		assert.Equal(t, len([]rune(in)), len([]rune(got)))
		if len(in) >= 5 {
			assert.NotEqual(t, in, got)
		}
	}
}
