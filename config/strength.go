package config

import (
	"errors"
	"fmt"
	"strings"
)

// Secrets that everybody knows. A deployment started with one of them (an example
// manifest applied unedited, a tutorial value) is as open as one without a secret, so
// Load refuses them for every secret setting, and the start-up fails naming the
// variable. The rule is deliberately simple: the value, lower-cased, equals one of
// knownPlaceholders or contains one of placeholderMarkers. A randomly generated
// secret (openssl rand -hex 32) never matches.
var (
	knownPlaceholders = []string{
		"admin", "password", "passw0rd", "secret", "changeit", "letmein", "test",
		"default", "token", "apikey", "api-key", "12345678", "123456789", "1234567890",
		"0123456789abcdef", "qwertyuiop",
	}
	placeholderMarkers = []string{
		"replace-me", "replace_me", "replaceme", "change-me", "change_me", "changeme",
		"placeholder", "example", "your-", "your_", "<", ">", "xxxxxxxx",
	}
)

// errPlaceholder is the rule of a secret that is a known placeholder.
var errPlaceholder = errors.New("is a placeholder or a publicly known value: generate one, e.g. `openssl rand -hex 32`")

// checkSecret refuses a set secret that is a known placeholder; its error never
// quotes v.
func checkSecret(v string) error {
	if v == "" {
		return nil
	}
	if isPlaceholder(v) {
		return errPlaceholder
	}
	return nil
}

// isPlaceholder reports whether v is a well-known or placeholder secret.
func isPlaceholder(v string) bool {
	l := strings.ToLower(strings.TrimSpace(v))
	for _, p := range knownPlaceholders {
		if l == p {
			return true
		}
	}
	for _, m := range placeholderMarkers {
		if strings.Contains(l, m) {
			return true
		}
	}
	return false
}

// checkPassword is the rule of the /monitoring password: a human-facing basic-auth
// password guarded only by the slow-down of repeated failures (package api), so it
// must be long (minSecretLength) and not a placeholder. Its error never quotes v.
func checkPassword(v string) error {
	if v == "" {
		return nil
	}
	if n := len([]rune(v)); n < minSecretLength {
		return fmt.Errorf("must be at least %d characters, got %d", minSecretLength, n)
	}
	return checkSecret(v)
}
