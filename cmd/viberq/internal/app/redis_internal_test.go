package app

import (
	"testing"

	"github.com/viberq/viberq/config"
)

// With TLS, a plain client checks the server's certificate against the URL's host;
// under Sentinel the one TLS config serves every sentinel and the master they name,
// so it names no host and each connection is checked against the host it dials.
func TestRedisTLSServerName(t *testing.T) {
	t.Parallel()
	plain, err := redisTLS(config.Redis{Addr: "cache.internal:6380", TLS: true})
	if err != nil || plain.ServerName != "cache.internal" {
		t.Fatalf("plain: ServerName %q, err %v", plain.ServerName, err)
	}
	sentinel, err := redisTLS(config.Redis{Addr: "127.0.0.1:6379", TLS: true,
		SentinelAddrs: []string{"s1.internal:26379", "s2.internal:26379"}, SentinelMaster: "mymaster"})
	if err != nil || sentinel.ServerName != "" {
		t.Fatalf("sentinel: ServerName %q, err %v", sentinel.ServerName, err)
	}
	if none, err := redisTLS(config.Redis{Addr: "cache:6379"}); none != nil || err != nil {
		t.Fatalf("without TLS: %v, %v", none, err)
	}
}
