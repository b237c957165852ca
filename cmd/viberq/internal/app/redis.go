package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/viberq/viberq/config"
)

// NewRedis builds the one Redis client a process shares between asynq (through the
// *FromRedisClient constructors), the message store, the limiter and the outbox:
// redis:// or rediss:// (TLS), a password, or Sentinel. It pings Redis so that a wrong
// address fails at start with a clear line rather than in the first task.
func NewRedis(ctx context.Context, cfg config.Redis) (redis.UniversalClient, error) {
	tlsCfg, err := redisTLS(cfg)
	if err != nil {
		return nil, err
	}
	var c redis.UniversalClient
	if cfg.Sentinel() {
		c = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       cfg.SentinelMaster,
			SentinelAddrs:    cfg.SentinelAddrs,
			SentinelPassword: cfg.SentinelPassword.Reveal(),
			Username:         cfg.Username,
			Password:         cfg.Password.Reveal(),
			DB:               cfg.DB,
			TLSConfig:        tlsCfg,
		})
	} else {
		opt, err := redis.ParseURL(cfg.RevealURL())
		if err != nil {
			// The URL was validated by config; this is a belt, and it must not echo
			// the URL (it holds the password).
			return nil, fmt.Errorf("VIBERQ_REDIS_URL: cannot be parsed")
		}
		if tlsCfg != nil {
			opt.TLSConfig = tlsCfg
		}
		c = redis.NewClient(opt)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s unreachable: %w", redisWhere(cfg), err)
	}
	return c, nil
}

// redisWhere names the Redis for error lines without any credential.
func redisWhere(cfg config.Redis) string {
	if cfg.Sentinel() {
		return fmt.Sprintf("sentinel %v (master %s)", cfg.SentinelAddrs, cfg.SentinelMaster)
	}
	return cfg.URL
}

// redisTLS is the TLS config of cfg's connections, nil without TLS.
func redisTLS(cfg config.Redis) (*tls.Config, error) {
	if !cfg.TLS {
		return nil, nil
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		host = cfg.Addr
	}
	if cfg.Sentinel() {
		// go-redis dials every sentinel and the master they name with this one
		// config; with no ServerName, tls.DialWithDialer checks each against the host
		// it dials (the URL's host is not used under Sentinel).
		host = ""
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host, InsecureSkipVerify: cfg.TLSInsecure} //nolint:gosec // opt-in, documented as tests only
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("VIBERQ_REDIS_TLS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("VIBERQ_REDIS_TLS_CA_FILE: no PEM certificate in %s", cfg.TLSCAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return tlsCfg, nil
}
