package provider

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMaskPhones(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"380501234567", "380*****4567"},
		{`{"contact":{"mobile":380501234567}}`, `{"contact":{"mobile":380*****4567}}`},
		{"call +380 50 123-45-67 now", "call +38**********5-67 now"},
		{"(050) 123 45 67", "(050*******5 67"},
		{"order 42, code 1234, 123456", "order 42, code 1234, 123456"},
		{"two: 380501234567 and 380671112233", "two: 380*****4567 and 380*****2233"},
		{"", ""},
	} {
		require.Equal(t, tt.want, MaskPhones(tt.in), tt.in)
	}
}

// FuzzMaskPhones: no run of 7 digits survives, whatever the input; lengths are kept
// for valid UTF-8.
func FuzzMaskPhones(f *testing.F) {
	for _, s := range []string{"380501234567", "+380 50 123 45 67", "x1234567y", "1-2-3-4-5-6-7-8", "é380501234567é"} {
		f.Add(s)
	}
	seven := regexp.MustCompile(`[0-9]{7}`)
	f.Fuzz(func(t *testing.T, s string) {
		got := MaskPhones(s)
		if seven.MatchString(got) {
			t.Fatalf("MaskPhones(%q) = %q keeps 7 digits in a row", s, got)
		}
		if strings.ToValidUTF8(s, "") == s && len([]rune(got)) != len([]rune(s)) {
			t.Fatalf("MaskPhones(%q) = %q changed the length", s, got)
		}
	})
}

func TestMaskID(t *testing.T) {
	t.Parallel()
	const gen = "01a243d9-69ff-7019-928e-92fdaf7e2594" // a UUIDv7; MaskPhones takes "7019-928" for a number
	for _, tt := range []struct{ in, want string }{
		{"order-42", "order-42"},
		{"otp-380501234567", "otp-380*****4567"},
		{gen, gen},
		{"poll:" + gen + ":3", "poll:" + gen + ":3"},
		{"/v1/messages/01A243D9-69FF-7019-928E-92FDAF7E2594", "/v1/messages/01A243D9-69FF-7019-928E-92FDAF7E2594"},
		{"webhook:1733358000000-0", "webhook:1733358000000-0"}, // a stream entry ID
		// The rest of the ID is masked around the UUID.
		{"380501234567-" + gen, MaskPhone("380501234567-01") + gen[2:]}, // the number's run takes the UUID's "01"
		{gen + ":380501234567", gen + ":380*****4567"},
		// A number that reaches into the UUID is masked whole, the UUID's part too.
		{"otp-38050-1234567a-69ff-7019-928e-92fdaf7e2594", "otp-" + MaskPhone("38050-1234567") + "a-69ff-7019-928e-92fdaf7e2594"},
		// UUID-shaped but all decimal, of no UUID version or variant, or not a word of
		// its own: masked as any text.
		{"38050123-4567-1234-5678-123456789012", MaskPhones("38050123-4567-1234-5678-123456789012")},
		{"38050123-4567-aaaa-aaaa-aaaaaaaaaaaa", MaskPhones("38050123-4567-aaaa-aaaa-aaaaaaaaaaaa")},
		{"38050123-4567-7aaa-caaa-aaaaaaaaaaaa", MaskPhones("38050123-4567-7aaa-caaa-aaaaaaaaaaaa")},
		{"x" + gen, MaskPhones("x" + gen)},
		// 13 digits led by something else than 1 may be a number.
		{"webhook:3805012345678-0", MaskPhones("webhook:3805012345678-0")},
	} {
		require.Equal(t, tt.want, MaskID(tt.in), tt.in)
	}
	require.NotEqual(t, gen, MaskPhones(gen), "the case MaskID exists for")
}

// FuzzMaskID: outside the UUIDs and stream entry IDs it leaves whole, no run of 7
// digits survives; lengths are kept for valid UTF-8.
func FuzzMaskID(f *testing.F) {
	for _, s := range []string{"otp-380501234567", "01a243d9-69ff-7019-928e-92fdaf7e2594", "poll:01a243d9-69ff-7019-928e-92fdaf7e2594:3",
		"38050-01a243d9-69ff-7019-928e-92fdaf7e2594-4567890", "12345678-1234-1234-1234-123456789012", "webhook:1733358000000-0"} {
		f.Add(s)
	}
	seven := regexp.MustCompile(`[0-9]{7}`)
	f.Fuzz(func(t *testing.T, s string) {
		got := MaskID(s)
		if len(got) != len(s) {
			t.Fatalf("MaskID(%q) = %q changed the length in bytes", s, got)
		}
		// Blank what the input shows whole (its UUIDs and stream IDs, found in the
		// input: a number masked into one leaves it no longer a UUID in the output).
		kept := []byte(got)
		blank := func(u []int) {
			for i := u[0]; i < u[1]; i++ {
				kept[i] = '-'
			}
		}
		for _, u := range uuidWordRe.FindAllStringIndex(s, -1) {
			if isUUID(s[u[0]:u[1]]) {
				blank(u)
			}
		}
		for _, u := range streamIDRe.FindAllStringIndex(s, -1) {
			blank(u)
		}
		if seven.Match(kept) {
			t.Fatalf("MaskID(%q) = %q keeps 7 digits in a row outside a UUID or stream ID", s, got)
		}
		if strings.ToValidUTF8(s, "") == s && len([]rune(got)) != len([]rune(s)) {
			t.Fatalf("MaskID(%q) = %q changed the length", s, got)
		}
	})
}

func BenchmarkMaskIDGenerated(b *testing.B) {
	for b.Loop() {
		_ = MaskID("01a243d9-69ff-7019-928e-92fdaf7e2594")
	}
}
