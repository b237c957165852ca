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
