package provider

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// secretForms are the spellings of a key that must never show up.
func secretForms(key string, encoded bool) []string {
	if encoded {
		raw, err := base64.StdEncoding.DecodeString(key)
		forms := []string{key}
		if err == nil {
			forms = append(forms, string(raw), strings.TrimSuffix(string(raw), ":"))
		}
		return forms
	}
	return []string{key, base64.StdEncoding.EncodeToString([]byte(key)), base64.StdEncoding.EncodeToString([]byte(key + ":"))}
}

// renderings returns every way a value is commonly printed, plus the texts along an
// error's Unwrap chain and the fields of an embedded APIError.
func renderings(v any) []string {
	out := []string{fmt.Sprintf("%v", v), fmt.Sprintf("%+v", v), fmt.Sprintf("%#v", v), fmt.Sprintf("%s", v), fmt.Sprint(v)}
	if err, ok := v.(error); ok {
		for e := err; e != nil; e = errors.Unwrap(e) {
			out = append(out, e.Error(), fmt.Sprintf("%#v", e))
		}
		var api *APIError
		if errors.As(err, &api) {
			out = append(out, fmt.Sprintf("%#v", *api))
		}
	}
	return out
}

func assertNoLeak(t *testing.T, what string, v any, secrets []string) {
	t.Helper()
	for _, r := range renderings(v) {
		for _, s := range secrets {
			if strings.Contains(r, s) {
				t.Errorf("%s leaks the key (%q) in %q", what, s, r)
			}
		}
	}
}

// TestKeyNeverLeaks formats the client and every error this package returns with
// %v, %+v, %#v and %s, including responses that echo the key and the Authorization
// header back, and checks no form of the key appears.
func TestKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name    string
		key     string
		encoded bool
	}{
		{"RawKey", "LeakyKey-XYZ 123456", false},
		{"EncodedKey", base64.StdEncoding.EncodeToString([]byte("LeakyKey-XYZ-123456:")), true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			secrets := secretForms(mode.key, mode.encoded)
			var opts []Option
			if mode.encoded {
				opts = append(opts, WithEncodedKey())
			}
			// echo builds a response whose every text repeats the credentials it received.
			echo := func(status int, shape string) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					auth := r.Header.Get("Authorization")
					b64 := strings.TrimPrefix(auth, "Basic ")
					rawKey, _ := base64.StdEncoding.DecodeString(b64)
					all := auth + " | " + b64 + " | " + string(rawKey) + " | " + strings.TrimSuffix(string(rawKey), ":")
					w.Header().Set("Retry-After", all)
					w.WriteHeader(status)
					switch shape {
					case "vendor":
						fmt.Fprintf(w, `{"name":"Invalid Parameter: %s","message":%q,"code":1,"status":400}`, string(rawKey), all)
					case "vendor429":
						fmt.Fprintf(w, `{"name":%q,"message":%q,"code":0,"status":429}`, all, all)
					case "id":
						fmt.Fprintf(w, `{"message_id":%q}`, b64)
					case "spaced":
						// Whitespace the sanitizer collapses must not reassemble a key with a space.
						fmt.Fprintf(w, "%s", strings.ReplaceAll(all, " ", "\n\t "))
					default:
						_, _ = io.WriteString(w, "echo: "+all)
					}
				}
			}
			cases := []struct {
				name string
				h    http.HandlerFunc
			}{
				{"VendorBody200", echo(200, "vendor")},
				{"VendorStatus", echo(400, "vendor")},
				{"RateLimit", echo(429, "vendor429")},
				{"Unauthorized", echo(401, "text")},
				{"ServerText", echo(502, "text")},
				{"NotFoundText", echo(404, "text")},
				{"Garbage200", echo(200, "text")},
				{"Spaced200", echo(200, "spaced")},
				{"Spaced500", echo(500, "spaced")},
				{"KeyAsMessageID", echo(200, "id")},
				{"Timeout", blockUntilGone},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					ts := newTestServer(t, tc.h)
					c, err := New(ts.URL+"/v1/api", mode.key, append(opts, WithTimeout(200*time.Millisecond))...)
					require.NoError(t, err)
					for _, op := range []string{OpSend, OpStatus} {
						err := sendOrStatus(c, op)
						require.Error(t, err)
						assertNoLeak(t, tc.name+"/"+op, err, secrets)
					}
					assertNoLeak(t, "client", c, secrets)
					assertNoLeak(t, "client value", *c, secrets)
				})
			}
			t.Run("TransportAndContext", func(t *testing.T) {
				t.Parallel()
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				addr := ln.Addr().String()
				require.NoError(t, ln.Close())
				c, err := New("http://"+addr, mode.key, opts...)
				require.NoError(t, err)
				assertNoLeak(t, "refused", sendOrStatus(c, OpSend), secrets)
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				_, err = c.Send(ctx, validText())
				assertNoLeak(t, "cancelled", err, secrets)
				// A custom transport that quotes the request's header in its error.
				rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
					return nil, fmt.Errorf("proxy refused %s", r.Header.Get("Authorization"))
				})
				c, err = New("http://"+addr, mode.key, append(opts, WithHTTPClient(&http.Client{Transport: rt}))...)
				require.NoError(t, err)
				assertNoLeak(t, "custom transport", sendOrStatus(c, OpSend), secrets)
			})
			t.Run("BadOptions", func(t *testing.T) {
				t.Parallel()
				_, err := New("ftp://x", mode.key, opts...)
				assertNoLeak(t, "bad base", err, secrets)
				_, err = New("http://x", mode.key+"\n", opts...)
				assertNoLeak(t, "bad key", err, secrets)
			})
		})
	}
}
