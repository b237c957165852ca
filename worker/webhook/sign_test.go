package webhook_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/viberq/viberq/worker/webhook"
)

const testSecret = "whsec_0123456789abcdef"

// The vector was computed outside Go, with the README's shell recipe:
// printf '%s' '1700000000.{"event_id":"1-0"}' | openssl dgst -sha256 -hmac whsec_0123456789abcdef
func TestSignMatchesOpenSSL(t *testing.T) {
	t.Parallel()
	got := webhook.Sign(testSecret, 1700000000, []byte(`{"event_id":"1-0"}`))
	require.Equal(t, "72465c4598430c3c7a2c9231cad167a0fd5b4b3ed70c345d57baaff11148a66e", got)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	body := []byte(`{"event_id":"1-0","to":"delivered"}`)
	at := time.Unix(1700000000, 0)
	other := "another-secret-0123456789"
	hdr := webhook.SignatureValue([]string{other, testSecret}, at, body)
	require.True(t, strings.HasPrefix(hdr, "t=1700000000,v1="), hdr)
	require.Equal(t, 2, strings.Count(hdr, "v1="), "one v1 per secret")

	for _, tc := range []struct {
		desc   string
		header string
		body   []byte
		secret string
		now    time.Time
		want   error
	}{
		{"ValidWithEitherSecret", hdr, body, testSecret, at.Add(time.Minute), nil},
		{"ValidWithTheOldSecret", hdr, body, other, at, nil},
		{"TamperedBody", hdr, []byte(`{"event_id":"1-0","to":"undelivered"}`), testSecret, at, webhook.ErrBadSignature},
		{"WrongSecret", hdr, body, "not-the-secret-0123456", at, webhook.ErrBadSignature},
		{"Replayed", hdr, body, testSecret, at.Add(6 * time.Minute), webhook.ErrTooOld},
		{"FromTheFuture", hdr, body, testSecret, at.Add(-6 * time.Minute), webhook.ErrTooOld},
		{"NoTimestamp", "v1=" + webhook.Sign(testSecret, 1700000000, body), body, testSecret, at, webhook.ErrNoSignature},
		{"Empty", "", body, testSecret, at, webhook.ErrNoSignature},
		{"TimestampChanged", strings.Replace(hdr, "t=1700000000", "t=1700000001", 1), body, testSecret, at, webhook.ErrBadSignature},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			err := webhook.Verify(tc.header, tc.body, tc.secret, 0, tc.now)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.True(t, errors.Is(err, tc.want), "got %v, want %v", err, tc.want)
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1700000000,v1=abc", []byte("{}"))
	f.Add("t=,v1=", []byte(""))
	f.Add(",,,=,t=-1,v1=zz", []byte("x"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_ = webhook.Verify(header, body, testSecret, time.Minute, time.Unix(1700000000, 0))
	})
}
