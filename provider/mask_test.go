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
	for _, tt := range []struct{ in, want string }{
		{"order-42", "order-42"},
		{"otp-380501234567", "otp-380*****4567"},
		// A generated ID: MaskPhones would take "7019-928" for a number.
		{"01a243d9-69ff-7019-928e-92fdaf7e2594", "01a243d9-69ff-7019-928e-92fdaf7e2594"},
		{"poll:01a243d9-69ff-7019-928e-92fdaf7e2594:3", "poll:01a243d9-69ff-7019-928e-92fdaf7e2594:3"},
		{"/v1/messages/01A243D9-69FF-7019-928E-92FDAF7E2594", "/v1/messages/01A243D9-69FF-7019-928E-92FDAF7E2594"},
		// The rest of the ID is masked around the UUID.
		{"380501234567-01a243d9-69ff-7019-928e-92fdaf7e2594", "380*****4567-01a243d9-69ff-7019-928e-92fdaf7e2594"},
		{"01a243d9-69ff-7019-928e-92fdaf7e2594:380501234567", "01a243d9-69ff-7019-928e-92fdaf7e2594:380*****4567"},
		// UUID-shaped but all decimal, or not a word of its own: masked as any text.
		{"38050123-4567-1234-5678-123456789012", MaskPhones("38050123-4567-1234-5678-123456789012")},
		{"x01a243d9-69ff-7019-928e-92fdaf7e2594", MaskPhones("x01a243d9-69ff-7019-928e-92fdaf7e2594")},
	} {
		require.Equal(t, tt.want, MaskID(tt.in), tt.in)
	}
}

// FuzzMaskID: outside the UUIDs it leaves whole, no run of 7 digits survives; lengths
// are kept for valid UTF-8.
func FuzzMaskID(f *testing.F) {
	for _, s := range []string{"otp-380501234567", "01a243d9-69ff-7019-928e-92fdaf7e2594", "poll:01a243d9-69ff-7019-928e-92fdaf7e2594:3",
		"38050-01a243d9-69ff-7019-928e-92fdaf7e2594-4567890", "12345678-1234-1234-1234-123456789012"} {
		f.Add(s)
	}
	seven := regexp.MustCompile(`[0-9]{7}`)
	f.Fuzz(func(t *testing.T, s string) {
		got := MaskID(s)
		kept := uuidWordRe.ReplaceAllStringFunc(got, func(u string) string {
			if strings.ContainsAny(u, "abcdefABCDEF") {
				return "-"
			}
			return u
		})
		if seven.MatchString(kept) {
			t.Fatalf("MaskID(%q) = %q keeps 7 digits in a row outside a UUID", s, got)
		}
		if strings.ToValidUTF8(s, "") == s && len([]rune(got)) != len([]rune(s)) {
			t.Fatalf("MaskID(%q) = %q changed the length", s, got)
		}
	})
}

// TestIsUUIDAgreesWithTheRegexp: MaskID's fast path takes a whole string for a UUID
// exactly when uuidWordRe and the letter rule would.
func TestIsUUIDAgreesWithTheRegexp(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"01a243d9-69ff-7019-928e-92fdaf7e2594", "01A243D9-69FF-7019-928E-92FDAF7E2594",
		"12345678-1234-1234-1234-123456789012", "01a243d9-69ff-7019-928e-92fdaf7e259", "01a243d9-69ff-7019-928e-92fdaf7e25945",
		"01a243d9x69ff-7019-928e-92fdaf7e2594", "01a243d9-69ff-7019-928e-92fdaf7e259g", "", "order-42"} {
		want := uuidWordRe.FindString(s) == s && strings.ContainsAny(s, "abcdefABCDEF")
		require.Equal(t, want, isUUID(s), s)
	}
}

func BenchmarkMaskIDGenerated(b *testing.B) {
	for b.Loop() {
		_ = MaskID("01a243d9-69ff-7019-928e-92fdaf7e2594")
	}
}
