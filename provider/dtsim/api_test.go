package dtsim

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/provider"
)

func TestRoutes(t *testing.T) {
	t.Parallel()
	a := start(t, instant(t))
	body := wire(t, validMsg())

	for _, path := range []string{"/v1/api/send-viber", "/send-viber", "/v1/api/send-viber/", "/other/base/send-viber"} {
		r := a.post(path, body)
		require.Equal(t, http.StatusOK, r.status, path)
		id := messageID(t, r.body)
		for _, sp := range []string{"/v1/api/receive-viber", "/receive-viber"} {
			r := a.post(sp, fmt.Sprintf(`{"message_id":%d}`, id))
			require.Equal(t, http.StatusOK, r.status, sp)
			require.Equal(t, fmt.Sprintf(`{"message_id":%d,"status":1}`, id), r.body)
		}
	}

	r := a.post("/v1/api/send-sms", body)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, vendorJSON("Not Found", "Page not found.", 0, 404), r.body)

	r = a.do(http.MethodGet, "/v1/api/send-viber", testAuth, "")
	require.Equal(t, http.StatusMethodNotAllowed, r.status)
	require.Equal(t, http.MethodPost, r.header.Get("Allow"))

	st := a.sim.Stats()
	require.Equal(t, int64(4), st.Accepted)
	require.Equal(t, int64(8), st.StatusCalls)
	require.Equal(t, int64(1), st.Rejected[ReasonMethodNotAllowed])
	require.Equal(t, int64(5), st.Requests["send-viber"])
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	unauthorized := vendorJSON("Unauthorized", "Your request was made with invalid credentials.", 0, 401)

	cases := []struct {
		name    string
		key     string
		encoded bool
		auth    string
		ok      bool
	}{
		{"SDKStyle", testKey, false, "Basic " + b64(testKey), true},
		{"CurlStyleTrailingColon", testKey, false, "Basic " + b64(testKey+":"), true},
		{"SchemeCaseInsensitive", testKey, false, "basic " + b64(testKey), true},
		{"WrongKey", testKey, false, "Basic " + b64("other"), false},
		{"KeyWithPassword", testKey, false, "Basic " + b64(testKey+":x"), false},
		{"RawKeyNotEncoded", testKey, false, "Basic " + testKey, false},
		{"Bearer", testKey, false, "Bearer " + b64(testKey), false},
		{"NoHeader", testKey, false, "", false},
		{"EncodedKeyVerbatim", b64("raw-secret"), true, "Basic " + b64("raw-secret"), true},
		{"EncodedKeyWithColon", b64("raw-secret"), true, "Basic " + b64("raw-secret:"), true},
		{"EncodedKeyEncodedAgain", b64("raw-secret"), true, "Basic " + b64(b64("raw-secret")), false},
		{"EmptyKeyFailsClosed", "", false, "Basic ", false},
	}
	for _, style := range []ErrorStyle{ErrorStyleStatus, ErrorStyleBody200} {
		for _, tc := range cases {
			t.Run(string(style)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				cfg := instant(t)
				cfg.Key, cfg.EncodedKey, cfg.ErrorStyle = tc.key, tc.encoded, style
				a := start(t, cfg)
				for _, path := range []string{"/v1/api/send-viber", "/v1/api/receive-viber"} {
					r := a.do(http.MethodPost, path, tc.auth, wire(t, validMsg()))
					if tc.ok {
						require.NotEqual(t, http.StatusUnauthorized, r.status, r.body)
						continue
					}
					// 401 with the real status in both error styles (documented decision).
					require.Equal(t, http.StatusUnauthorized, r.status)
					require.Equal(t, unauthorized, r.body)
					require.Equal(t, `Basic realm="api"`, r.header.Get("WWW-Authenticate"))
				}
				st := a.sim.Stats()
				if !tc.ok {
					require.Zero(t, st.Accepted)
					require.Equal(t, int64(1), st.Rejected[ReasonUnauthorized])
					require.Equal(t, int64(1), st.StatusErrors[ReasonUnauthorized])
				} else {
					require.Equal(t, int64(1), st.Accepted)
				}
			})
		}
	}
}

// TestErrorRows checks every row of the error table in both transports (vendor notes: errors).
func TestErrorRows(t *testing.T) {
	t.Parallel()
	rows := []struct {
		name   string
		setup  func(*Config)
		before func(*Sim)
		msg    func() provider.Message // nil: validMsg
		want   string
		status int
	}{
		{
			name:   "RateLimited",
			setup:  func(c *Config) { c.RatePerSec, c.Burst, c.Now = 1, 1, newClock().Now },
			want:   vendorJSON("Too Many Requests", "Rate limit exceeded", 0, 429),
			status: 429,
		},
		{
			name: "InvalidParameter",
			msg:  func() provider.Message { m := validMsg(); m.SourceAddr = ""; return m },
			want: vendorJSON("Invalid Parameter: source_addr", "Empty parameter or parameter validation error", 1, 400), status: 400,
		},
		{
			name:   "ServerError",
			before: func(s *Sim) { require.NoError(t, s.InjectFault(EndpointSend, FaultServerError, 1)) },
			want:   vendorJSON("Internal server error", "The server encountered an unexpected condition which prevented it from fulfilling the request", 2, 500),
			status: 500,
		},
		{
			name:   "Balance",
			setup:  func(c *Config) { c.Balance = 0 },
			want:   vendorJSON("Topup balance is required", "User balance is empty", 3, 402),
			status: 402,
		},
	}
	for _, style := range []ErrorStyle{ErrorStyleStatus, ErrorStyleBody200} {
		for _, row := range rows {
			t.Run(string(style)+"/"+row.name, func(t *testing.T) {
				t.Parallel()
				cfg := instant(t)
				cfg.ErrorStyle = style
				if row.setup != nil {
					row.setup(&cfg)
				}
				a := start(t, cfg)
				msg := validMsg()
				if row.msg != nil {
					msg = row.msg()
				}
				if row.name == "RateLimited" {
					a.sendOK(msg) // uses the only token; the clock never refills it
				}
				if row.before != nil {
					row.before(a.sim)
				}
				r := a.send(msg)
				wantHTTP := row.status
				if style == ErrorStyleBody200 {
					wantHTTP = http.StatusOK
				}
				require.Equal(t, wantHTTP, r.status)
				require.Equal(t, row.want, r.body)
				require.Equal(t, "application/json; charset=UTF-8", r.header.Get("Content-Type"))
			})
		}
	}
}

func TestIDStyles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		style IDStyle
		send  string
		stat  string
	}{
		{IDNumber, `{"message_id":100000}`, `{"message_id":100000,"status":4,"sms_message_id":500000000,"sms_message_status":2}`},
		{IDString, `{"message_id":"100000"}`, `{"message_id":"100000","status":4,"sms_message_id":"500000000","sms_message_status":2}`},
	} {
		t.Run(string(tc.style), func(t *testing.T) {
			t.Parallel()
			cfg := instant(t)
			cfg.IDStyle = tc.style
			cfg.ViberFailShare = 1
			a := start(t, cfg)
			r := a.send(smsMsg())
			require.Equal(t, tc.send, r.body)
			// The client sends the id back as a number; a numeric string is accepted too.
			require.Equal(t, tc.stat, a.post("/v1/api/receive-viber", `{"message_id":100000}`).body)
			require.Equal(t, tc.stat, a.post("/v1/api/receive-viber", `{"message_id":"100000"}`).body)
		})
	}
}

func TestValidation(t *testing.T) {
	t.Parallel()
	a := start(t, instant(t))
	base := validMsg()
	mod := func(f func(*provider.Message)) string {
		m := base
		f(&m)
		return wire(t, m)
	}
	long := func(n int) string { return strings.Repeat("a", n) }
	cases := []struct {
		name  string
		body  string
		field string // "" = accepted
	}{
		{"Valid", wire(t, base), ""},
		{"DestinationAsNumber", `{"source_addr":"Shop","destination_addr":380501234567,"message_type":106,"text":"hi","source_type":2}`, ""},
		{"UnknownFieldIgnored", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"hi","source_type":2,"extra":[1]}`, ""},
		{"NullIsAbsent", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"hi","source_type":2,"text_sms":null}`, ""},
		{"NotJSON", `source_addr=Shop`, "body"},
		{"Array", `[]`, "body"},
		{"Null", `null`, "body"},
		{"Empty", ``, "body"},
		{"EmptyObject", `{}`, "source_addr"},
		{"SourceAddrMissing", mod(func(m *provider.Message) { m.SourceAddr = "" }), "source_addr"},
		{"SourceAddr21", mod(func(m *provider.Message) { m.SourceAddr = long(21) }), "source_addr"},
		{"SourceAddr20", mod(func(m *provider.Message) { m.SourceAddr = long(20) }), ""},
		{"SourceAddrNumber", `{"source_addr":5,"destination_addr":"380501234567","message_type":106,"text":"hi","source_type":2}`, "source_addr"},
		// The page is silent on the characters: accepted, counted in Stats.Lenient.
		{"DestinationPlusLenient", mod(func(m *provider.Message) { m.DestinationAddr = "+380501234567" }), ""},
		{"Destination21", mod(func(m *provider.Message) { m.DestinationAddr = strings.Repeat("1", 21) }), "destination_addr"},
		{"DestinationFloat", `{"source_addr":"Shop","destination_addr":3.8e11,"message_type":106,"text":"hi","source_type":2}`, "destination_addr"},
		{"DestinationNegative", `{"source_addr":"Shop","destination_addr":-380,"message_type":106,"text":"hi","source_type":2}`, "destination_addr"},
		{"DestinationBool", `{"source_addr":"Shop","destination_addr":true,"message_type":106,"text":"hi","source_type":2}`, "destination_addr"},
		{"MessageType225", mod(func(m *provider.Message) { m.MessageType = 225 }), "message_type"},
		{"MessageTypeStringLenient", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":"106","text":"hi","source_type":2}`, ""},
		{"MessageTypeWord", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":"text","text":"hi","source_type":2}`, "message_type"},
		{"MessageTypeFraction", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106.5,"text":"hi","source_type":2}`, "message_type"},
		{"TextMissing", mod(func(m *provider.Message) { m.Text = "" }), "text"},
		{"Text1001", mod(func(m *provider.Message) { m.Text = long(1001) }), "text"},
		{"Text1000", mod(func(m *provider.Message) { m.Text = long(1000) }), ""},
		{"TextSMSPromotional", mod(func(m *provider.Message) { m.TextSMS = "x"; m.SourceType = provider.SourcePromotional }), "text_sms"},
		{"TextSMS161", mod(func(m *provider.Message) { m.TextSMS = long(161) }), "text_sms"},
		{"TextSMS160", mod(func(m *provider.Message) { m.TextSMS = long(160) }), ""},
		{"ImageMissingFor108Lenient", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.ButtonCaption, m.ButtonAction = 108, 1, "Go", "https://x.example/a"
		}), ""},
		{"Transactional108", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.Image, m.ButtonCaption, m.ButtonAction = 108, 2, "https://x.example/a.png", "Go", "https://x.example/a"
		}), "source_type"},
		{"ImageNotPicture", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.Image, m.ButtonCaption, m.ButtonAction = 108, 1, "https://x.example/a.gif", "Go", "https://x.example/a"
		}), "image"},
		{"Caption31", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.Image, m.ButtonCaption, m.ButtonAction = 108, 1, "https://x.example/a.png", long(31), "https://x.example/a"
		}), "button_caption"},
		{"ButtonActionRelative", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.Image, m.ButtonCaption, m.ButtonAction = 108, 1, "https://x.example/a.png", "Go", "/join"
		}), "button_action"},
		{"Valid108", mod(func(m *provider.Message) {
			m.MessageType, m.SourceType, m.Image, m.ButtonCaption, m.ButtonAction = 108, 1, "https://x.example/a.png", long(30), "https://x.example/a"
		}), ""},
		{"SourceType3", mod(func(m *provider.Message) { m.SourceType = 3 }), "source_type"},
		{"CallbackRelative", mod(func(m *provider.Message) { m.CallbackURL = "cb" }), "callback_url"},
		{"Validity39", mod(func(m *provider.Message) { m.ValidityPeriod = 39 }), "validity_period"},
		{"Validity40", mod(func(m *provider.Message) { m.ValidityPeriod = 40 }), ""},
		{"Validity21601", mod(func(m *provider.Message) { m.ValidityPeriod = 21601 }), "validity_period"},
		{"ValidityStringLenient", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"hi","source_type":2,"validity_period":"40"}`, ""},
		{"ValidityWord", `{"source_addr":"Shop","destination_addr":"380501234567","message_type":106,"text":"hi","source_type":2,"validity_period":"soon"}`, "validity_period"},
		{"TextSMSValidity3600", mod(func(m *provider.Message) { m.TextSMS = "x"; m.ValidityPeriod = 3600 }), "validity_period"},
		{"TextSMSValidity40", mod(func(m *provider.Message) { m.TextSMS = "x"; m.ValidityPeriod = 40 }), ""},
		{"FirstFieldWins", mod(func(m *provider.Message) { m.Text = ""; m.SourceType = 9; m.ValidityPeriod = 1 }), "text"},
	}
	accepted := 0
	for _, tc := range cases {
		r := a.post("/v1/api/send-viber", tc.body)
		if tc.field == "" {
			require.Equal(t, http.StatusOK, r.status, "%s: %s", tc.name, r.body)
			accepted++
			continue
		}
		require.Equal(t, http.StatusBadRequest, r.status, tc.name)
		require.Equal(t, vendorJSON("Invalid Parameter: "+tc.field, "Empty parameter or parameter validation error", 1, 400), r.body, tc.name)
	}
	st := a.sim.Stats()
	require.Equal(t, int64(accepted), st.Accepted)
	require.Equal(t, int64(len(cases)-accepted), st.Rejected[ReasonInvalidParameter])
	require.Equal(t, map[string]int64{silentDestNotDigits: 1, silentIntAsString: 2, silentImageButtonParts: 1}, st.Lenient)

	// receive-viber
	id := a.sendOK(base)
	for _, body := range []string{`{}`, `{"message_id":null}`, `{"message_id":"abc"}`, `{"message_id":-1}`, `{"message_id":1.5}`, `nope`, `{"message_id":999999999}`, `{"message_id":0}`} {
		r := a.post("/v1/api/receive-viber", body)
		require.Equal(t, http.StatusBadRequest, r.status, body)
		require.Equal(t, vendorJSON("Invalid Parameter: message_id", "Empty parameter or parameter validation error", 1, 400), r.body, body)
	}
	require.Equal(t, http.StatusOK, a.status(id).status)
}

func TestBodyTooLarge(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.MaxBody = 128
	a := start(t, cfg)
	m := validMsg()
	m.Text = strings.Repeat("a", 200)
	r := a.send(m)
	require.Equal(t, http.StatusBadRequest, r.status)
	require.Contains(t, r.body, `"Invalid Parameter: body"`)
}

// TestWithRecorder drives the handler directly, as an in-process fake.
func TestWithRecorder(t *testing.T) {
	t.Parallel()
	s := New(instant(t))
	defer s.Close()
	req := httptest.NewRequest(http.MethodPost, "/v1/api/send-viber", strings.NewReader(wire(t, validMsg())))
	req.Header.Set("Authorization", testAuth)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, `{"message_id":100000}`, rec.Body.String())

	// A dropped connection writes nothing (and does not panic) outside a server.
	require.NoError(t, s.InjectFault(EndpointSend, FaultDropAfter, 1))
	req = httptest.NewRequest(http.MethodPost, "/v1/api/send-viber", strings.NewReader(wire(t, validMsg())))
	req.Header.Set("Authorization", testAuth)
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	require.Empty(t, rec.Body.String())
	require.Len(t, s.Ledger(), 2)

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, http.MethodPost, reqs[0].Method)
	require.Equal(t, testAuth, reqs[0].Header.Get("Authorization"))
	require.JSONEq(t, wire(t, validMsg()), string(reqs[0].Body))
}

func TestRequestsRing(t *testing.T) {
	t.Parallel()
	cfg := instant(t)
	cfg.RecordRequests = 3
	a := start(t, cfg)
	for i := range 5 {
		a.post("/v1/api/receive-viber", fmt.Sprintf(`{"message_id":%d}`, i+1))
	}
	reqs := a.sim.Requests()
	require.Len(t, reqs, 3)
	for i, r := range reqs {
		require.Equal(t, fmt.Sprintf(`{"message_id":%d}`, i+3), string(r.Body))
	}
}

// TestProviderClient runs the real client against the simulator: the two sides of
// the boundary agree on the happy path and on the typed errors.
func TestProviderClient(t *testing.T) {
	t.Parallel()
	for _, style := range []ErrorStyle{ErrorStyleStatus, ErrorStyleBody200} {
		for _, ids := range []IDStyle{IDNumber, IDString} {
			t.Run(string(style)+"/"+string(ids), func(t *testing.T) {
				t.Parallel()
				cfg := instant(t)
				cfg.ErrorStyle, cfg.IDStyle, cfg.Balance = style, ids, 1
				a := start(t, cfg)
				c, err := provider.New(a.srv.URL+BasePath, testKey, provider.WithHTTPClient(a.srv.Client()))
				require.NoError(t, err)
				ctx := t.Context()

				res, err := c.Send(ctx, smsMsg())
				require.NoError(t, err)
				st, err := c.Status(ctx, res.MessageID)
				require.NoError(t, err)
				require.Equal(t, provider.ViberDelivered, st.Status)

				_, err = c.Send(ctx, validMsg())
				var be *provider.BalanceError
				require.ErrorAs(t, err, &be)

				a.sim.SetBalance(Unlimited)
				require.NoError(t, a.sim.InjectFault(EndpointSend, FaultServerError, 1))
				_, err = c.Send(ctx, validMsg())
				var se *provider.ServerError
				require.ErrorAs(t, err, &se)

				_, err = c.Status(ctx, 42)
				var ie *provider.InvalidParameterError
				require.ErrorAs(t, err, &ie)
				require.Equal(t, "message_id", ie.Param)

				bad, err := provider.New(a.srv.URL+BasePath, "wrong", provider.WithHTTPClient(a.srv.Client()))
				require.NoError(t, err)
				_, err = bad.Send(ctx, validMsg())
				var ue *provider.UnauthorizedError
				require.ErrorAs(t, err, &ue)
			})
		}
	}
}
